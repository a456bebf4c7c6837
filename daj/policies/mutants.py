"""The `mutants` backend: plausible wrong candidates made by AST mutations of a reference solution.

Only the body of the entry-point function is mutated (never its signature, decorators or
docstring, nor the code around it), one mutation per candidate:

  off_by_one        range() bounds, subscript indices and slice bounds moved by +-1
  comparison        <  <=  >  >=  ==  !=  in  not in  is  is not  swapped for a neighbour
  arithmetic        + - * / // % ** swapped (also in augmented assignments)
  constant          an int constant moved by +-1, a bool flipped
  drop_statement    one statement removed (`pass` when a block would be empty)
  negate_condition  an if/while/ternary condition negated, `and` <-> `or`
  function_swap     a builtin or method swapped for its twin (min/max, any/all, upper/lower, ...)
  (constant also shortens short string constants by one character)

A mutant's text is the reference text with only the mutated node's source replaced (so formatting
and comments stay and mutants look like the reference); when that splice does not reproduce the
mutated AST, the whole module is unparsed instead. Candidates are deduplicated by normalised code
(ast.unparse), and a mutant equal to the reference is dropped. The choice is deterministic given
the seed and the problem id: kinds take turns in a seeded order, sites within a kind are shuffled.
The reference is one candidate, placed at a seeded random index.
"""

from __future__ import annotations

import ast
import copy
import random
from collections.abc import Callable
from dataclasses import dataclass

from daj.data.measures import canonical_code
from daj.errors import DajError

KINDS = ("off_by_one", "comparison", "arithmetic", "constant", "drop_statement", "negate_condition",
         "function_swap")
# Builtins and methods with a plausible wrong twin (function_swap)
_NAME_SWAP = {"min": "max", "max": "min", "any": "all", "all": "any", "upper": "lower", "lower": "upper",
              "isupper": "islower", "islower": "isupper", "startswith": "endswith", "endswith": "startswith",
              "floor": "ceil", "ceil": "floor", "rstrip": "lstrip", "lstrip": "rstrip"}
_CMP_SWAP: dict[type, tuple[type, ...]] = {
    ast.Lt: (ast.LtE, ast.Gt), ast.LtE: (ast.Lt, ast.GtE), ast.Gt: (ast.GtE, ast.Lt), ast.GtE: (ast.Gt, ast.LtE),
    ast.Eq: (ast.NotEq,), ast.NotEq: (ast.Eq,), ast.In: (ast.NotIn,), ast.NotIn: (ast.In,),
    ast.Is: (ast.IsNot,), ast.IsNot: (ast.Is,),
}
_ARITH_SWAP: dict[type, tuple[type, ...]] = {
    ast.Add: (ast.Sub,), ast.Sub: (ast.Add,), ast.Mult: (ast.FloorDiv, ast.Add), ast.Div: (ast.Mult, ast.FloorDiv),
    ast.FloorDiv: (ast.Div, ast.Mult), ast.Mod: (ast.FloorDiv,), ast.Pow: (ast.Mult,),
}


@dataclass(frozen=True)
class Mutation:
    """Replace the node at `index` (in ast.walk order) with make(node), or drop it (make is None)."""

    kind: str
    index: int
    label: str
    make: Callable[[ast.AST], ast.AST] | None


def _int(value: int) -> ast.expr:
    """An int literal as the parser builds it (a negative one is a unary minus)."""
    return ast.Constant(value) if value >= 0 else ast.UnaryOp(ast.USub(), ast.Constant(-value))


def _plus(node: ast.expr, delta: int) -> ast.expr:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return _int(node.value + delta)
    return ast.BinOp(copy.deepcopy(node), ast.Add() if delta > 0 else ast.Sub(), ast.Constant(abs(delta)))


def _with(node: ast.AST, **changes) -> ast.AST:
    new = copy.deepcopy(node)
    for key, value in changes.items():
        setattr(new, key, value)
    return new


def _negate(test: ast.expr) -> ast.expr:
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return copy.deepcopy(test.operand)
    return ast.UnaryOp(ast.Not(), copy.deepcopy(test))


def _index_like(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return type(node.value) is int
    return isinstance(node, ast.Name | ast.BinOp | ast.UnaryOp)


def _site_mutations(node: ast.AST, index: int, test_ids: set[int], stmt_ids: set[int],
                    doc_ids: set[int]) -> list[Mutation]:
    """Every single mutation at one node (the node is inside the mutable body)."""
    out: list[Mutation] = []
    line = getattr(node, "lineno", None)
    at = f" (line {line})" if line else ""

    def add(kind: str, label: str, make) -> None:
        out.append(Mutation(kind, index, label + at, make))

    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range" \
            and 1 <= len(node.args) <= 3 and not node.keywords:
        for pos in range(min(len(node.args), 2)):
            for delta in (1, -1):
                def make(n, pos=pos, delta=delta):
                    args = [copy.deepcopy(a) for a in n.args]
                    args[pos] = _plus(args[pos], delta)
                    return _with(n, args=args)
                add("off_by_one", f"range argument {pos + 1} {delta:+d}", make)
    if isinstance(node, ast.Subscript) and not isinstance(node.slice, ast.Slice | ast.Tuple) \
            and _index_like(node.slice):
        for delta in (1, -1):
            add("off_by_one", f"index {delta:+d}", lambda n, d=delta: _with(n, slice=_plus(n.slice, d)))
    if isinstance(node, ast.Slice):
        for bound in ("lower", "upper"):
            if getattr(node, bound) is not None and _index_like(getattr(node, bound)):
                for delta in (1, -1):
                    add("off_by_one", f"slice {bound} {delta:+d}",
                        lambda n, b=bound, d=delta: _with(n, **{b: _plus(getattr(n, b), d)}))
    if isinstance(node, ast.Compare):
        for k, op in enumerate(node.ops):
            for new in _CMP_SWAP.get(type(op), ()):
                def make(n, k=k, new=new):
                    ops = list(n.ops)
                    ops[k] = new()
                    return _with(n, ops=ops)
                add("comparison", f"{type(op).__name__} -> {new.__name__}", make)
    if isinstance(node, ast.BinOp | ast.AugAssign):
        for new in _ARITH_SWAP.get(type(node.op), ()):
            add("arithmetic", f"{type(node.op).__name__} -> {new.__name__}", lambda n, new=new: _with(n, op=new()))
    if isinstance(node, ast.Constant) and type(node.value) is int:
        for delta in (1, -1):
            add("constant", f"{node.value} -> {node.value + delta}",
                lambda n, d=delta: _int(n.value + d))
    if isinstance(node, ast.Constant) and type(node.value) is bool:
        add("constant", f"{node.value} -> {not node.value}", lambda n: ast.Constant(not n.value))
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value and len(node.value) <= 20 \
            and id(node) not in doc_ids:
        add("constant", f"string {node.value!r} shortened", lambda n: ast.Constant(n.value[:-1]))
    if isinstance(node, ast.Name | ast.Attribute):
        name = node.id if isinstance(node, ast.Name) else node.attr
        if name in _NAME_SWAP:
            new = _NAME_SWAP[name]
            field = "id" if isinstance(node, ast.Name) else "attr"
            add("function_swap", f"{name} -> {new}", lambda n, f=field, new=new: _with(n, **{f: new}))
    if id(node) in test_ids:
        add("negate_condition", "negated condition", _negate)
    if isinstance(node, ast.BoolOp):
        new_op = ast.Or if isinstance(node.op, ast.And) else ast.And
        add("negate_condition", f"{type(node.op).__name__} -> {new_op.__name__}", lambda n: _with(n, op=new_op()))
    if id(node) in stmt_ids:
        add("drop_statement", f"dropped {type(node).__name__}", None)
    return out


def _entry_body(tree: ast.Module, entry: str) -> list[ast.stmt]:
    """The entry-point function's statements after its docstring."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == entry:
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                body = body[1:]
            return body
    raise DajError(f"the reference defines no top-level function {entry!r}", field="reference")


def enumerate_mutations(tree: ast.Module, entry: str) -> list[Mutation]:
    """All single mutations of the entry point's body, in ast.walk order."""
    body = _entry_body(tree, entry)
    in_body = {id(n) for stmt in body for n in ast.walk(stmt)}
    stmt_ids = {id(n) for n in ast.walk(tree) if id(n) in in_body and isinstance(n, ast.stmt)}
    docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
    test_ids = {id(n.test) for n in ast.walk(tree) if isinstance(n, ast.If | ast.While | ast.IfExp)}
    out = []
    for index, node in enumerate(ast.walk(tree)):
        if id(node) in in_body:
            out.extend(_site_mutations(node, index, test_ids, stmt_ids, docs))
    return out


def _apply(tree: ast.Module, mutation: Mutation) -> tuple[ast.Module, ast.AST, ast.AST | None]:
    """(mutated copy, the original node, its replacement or None when dropped)."""
    new_tree = copy.deepcopy(tree)
    nodes = list(ast.walk(new_tree))
    target = nodes[mutation.index]
    original = list(ast.walk(tree))[mutation.index]
    replacement = mutation.make(target) if mutation.make else None
    for parent in nodes:
        for field, value in ast.iter_fields(parent):
            if value is target:
                setattr(parent, field, replacement)
                return ast.fix_missing_locations(new_tree), original, replacement
            if isinstance(value, list) and any(v is target for v in value):
                k = next(i for i, v in enumerate(value) if v is target)
                if replacement is None:
                    del value[k]
                    if not value and field == "body":
                        value.append(ast.Pass())
                else:
                    value[k] = replacement
                return ast.fix_missing_locations(new_tree), original, replacement
    raise AssertionError("mutation target has no parent")


def _offset(lines: list[str], lineno: int, col: int) -> int:
    """String offset of (1-based line, UTF-8 byte column)."""
    before = sum(len(line) for line in lines[:lineno - 1])
    return before + len(lines[lineno - 1].encode("utf-8")[:col].decode("utf-8", "replace"))


def _same(code: str, tree: ast.Module) -> bool:
    try:
        return ast.dump(ast.parse(code)) == ast.dump(tree)
    except SyntaxError:
        return False


def render(source: str, mutated: ast.Module, original: ast.AST, replacement: ast.AST | None) -> str:
    """The mutant's source: a splice of the reference text when it is faithful, else ast.unparse."""
    lines = source.splitlines(keepends=True)
    start = _offset(lines, original.lineno, original.col_offset)
    end = _offset(lines, original.end_lineno, original.end_col_offset)
    if replacement is None:
        line_start = source.rfind("\n", 0, start) + 1
        line_end = source.find("\n", end)
        line_end = len(source) if line_end < 0 else line_end + 1
        indent = source[line_start:start]
        tries = []
        rest = source[end:line_end].strip()
        if not indent.strip() and (not rest or rest.startswith("#")):
            tries.append(source[:line_start] + source[line_end:])
            tries.append(source[:line_start] + indent + "pass\n" + source[line_end:])
    else:
        text = ast.unparse(replacement)
        tries = [source[:start] + text + source[end:], source[:start] + f"({text})" + source[end:]]
    for code in tries:
        if _same(code, mutated):
            return code
    return ast.unparse(mutated) + "\n"


def make_mutants(reference: str, entry_point: str, n: int, seed: int, key: str = "") -> list[dict]:
    """`n` candidates for one problem: the reference (mutation None) and up to n-1 distinct mutants.

    Each candidate is {"index", "code", "mutation", "mutation_detail"}. `key` (the problem id) makes
    the seeded choices differ between problems. Fewer than n come back when the body has too few
    distinct mutations.
    """
    if n < 1:
        raise DajError(f"n must be >= 1, got {n}", field="n")
    try:
        tree = ast.parse(reference)
    except SyntaxError as e:
        raise DajError(f"the reference does not parse: {e}", field="reference") from None
    rng = random.Random(f"{seed}:{key}")
    by_kind: dict[str, list[Mutation]] = {k: [] for k in KINDS}
    for m in enumerate_mutations(tree, entry_point):
        by_kind[m.kind].append(m)
    kinds = [k for k in KINDS if by_kind[k]]
    rng.shuffle(kinds)
    for k in kinds:
        rng.shuffle(by_kind[k])
    seen = {canonical_code(reference)}
    mutants: list[dict] = []
    while len(mutants) < n - 1 and kinds:
        for kind in list(kinds):
            if len(mutants) >= n - 1:
                break
            if not by_kind[kind]:
                kinds.remove(kind)
                continue
            m = by_kind[kind].pop()
            mutated, original, replacement = _apply(tree, m)
            code = render(reference, mutated, original, replacement)
            norm = canonical_code(code)
            if norm in seen:
                continue
            seen.add(norm)
            mutants.append({"code": code, "mutation": m.kind, "mutation_detail": m.label})
    ref_at = rng.randrange(len(mutants) + 1)
    cands = mutants[:ref_at] + [{"code": reference, "mutation": None, "mutation_detail": "reference"}] \
        + mutants[ref_at:]
    return [{"index": i, **c} for i, c in enumerate(cands)]


def problem_mutants(problem: dict, n: int, seed: int) -> list[dict]:
    """make_mutants for a problem record (needs `reference` and tests.entry_point)."""
    reference = problem.get("reference")
    entry = (problem.get("tests") or {}).get("entry_point")
    if not reference or not entry:
        raise DajError(f"problem {problem.get('id')!r} has no reference solution and entry point; "
                       "the mutants backend works on HumanEval and BCB only", field="reference")
    return make_mutants(reference, entry, n, seed, key=str(problem.get("id", "")))
