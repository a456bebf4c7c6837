"""The unittest runner (BigCodeBench): code + "\\n" + test code as one module, the TestCases methods
the server found in the test code's syntax tree as one suite, one result line per test.

The tests must run next to the candidate's objects (DataFrames, Axes), so test code and candidate
share this process, and the guard below can only rule out what needs no knowledge of this harness:
a test passes only when its method ran to its end (unittest swallows its own control-flow exception
`_ShouldStop`), and the unittest machinery, the hooks that could rewrite a run, the test classes,
the test instances' assert methods, the modules the test code imports (snapshot before the
candidate's code runs) and the names the test module binds must be what they were. docs/sandbox.md
states what remains possible.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import sys
import types

from .protocol import COMPILE, PASS, WRONG, send
from .runner import classify, describe


def expected_test_names(test_code: str) -> list[str]:
    """The test methods of class TestCases (and of its bases defined in the same code), sorted as
    unittest's loader sorts them; computed on the trusted side from the source alone."""
    tree = ast.parse(test_code)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    names: set[str] = set()
    seen: set[str] = set()

    def collect(name: str) -> None:
        if name in seen or name not in classes:
            return
        seen.add(name)
        node = classes[name]
        for item in node.body:
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name.startswith("test"):
                names.add(item.name)
        for base in node.bases:
            if isinstance(base, ast.Name):
                collect(base.id)

    collect("TestCases")
    return sorted(names)


# ----------------------------------------------------------------------------- identities
def identity(value: object) -> tuple:
    """What must stay the same about a value: the object, and for a function its code, defaults
    and closure (a function rewritten in place keeps its identity)."""
    fn = value.__func__ if isinstance(value, classmethod | staticmethod) else value
    if isinstance(fn, types.FunctionType):
        return (id(value), id(fn.__code__), id(fn.__defaults__), id(fn.__kwdefaults__), id(fn.__closure__))
    return (id(value),)


def _watched(value: object) -> bool:
    return callable(value) or isinstance(value, types.ModuleType | classmethod | staticmethod | property)


def entries(owner: object) -> dict[str, tuple]:
    """The identities of the functions, classes and modules a module or class holds."""
    try:
        items = list(vars(owner).items())
    except TypeError:
        return {}
    return {k: identity(v) for k, v in items if _watched(v)}


def unittest_marks() -> dict:
    """Identity of the unittest machinery and of the hooks that could rewrite a test run."""
    import builtins
    import unittest
    from unittest import case, loader, result, suite

    marks: dict = {}
    for owner in (unittest.TestCase, unittest.TestResult, unittest.TestSuite, suite.BaseTestSuite,
                  unittest.TestLoader, getattr(case, "_Outcome", object), object, type):
        marks[("class", owner.__qualname__)] = frozenset((k, identity(v)) for k, v in vars(owner).items())
    for module in (unittest, case, loader, result, suite):
        for k, v in vars(module).items():
            if not k.startswith("__") and type(v) is not type(sys):  # submodules appear on import
                marks[(module.__name__, k)] = identity(v)
    for name in ("exec", "eval", "compile", "__import__", "__build_class__", "isinstance", "getattr",
                 "type", "super"):
        marks[("builtins", name)] = identity(getattr(builtins, name, None))
    for name in ("settrace", "setprofile", "exit"):
        marks[("sys", name)] = identity(getattr(sys, name, None))
    return marks


# ----------------------------------------------------------------------------- the test's libraries
def _imports(tree: ast.AST) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Names the test code binds by `import` ({local name: module}) and by `from m import x`."""
    plain: dict[str, str] = {}
    members: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                plain[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else \
                    alias.name.split(".")[0]
                plain.setdefault("." + alias.name, alias.name)  # the submodule itself is used too
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                if alias.name != "*":
                    members.append((node.module, alias.name))
    return plain, members


def _chains(tree: ast.AST, roots: set[str]) -> set[tuple[str, ...]]:
    """Attribute chains the test code reads from an imported name: np.testing.assert_array_equal."""
    chains = set()
    for node in ast.walk(tree):
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in roots and parts:
            chains.add((node.id, *reversed(parts)))
    return chains


class LibrarySnapshot:
    """The modules the test code imports, imported and recorded before the candidate's code runs:
    their functions, classes and submodules (and those of the objects the test reaches through
    them), and `sys.modules` for each. Rebinding any of them is tampering."""

    def __init__(self, test_code: str):
        self.owners: list[tuple[object, dict[str, tuple]]] = []
        self.modules: dict[str, int] = {}
        self.objects: dict[str, object] = {}
        try:
            tree = ast.parse(test_code)
        except (SyntaxError, ValueError):
            return
        plain, members = _imports(tree)
        for local, name in plain.items():
            module = self._import(name)
            if module is not None and not local.startswith("."):
                self.objects[local] = module
        for module_name, member in members:
            module = self._import(module_name)
            if module is None:
                continue
            value = getattr(module, member, None)
            if value is None:
                value = self._import(f"{module_name}.{member}")
            if value is not None:
                self.objects[member] = value
        seen: set[int] = set()
        for value in self.objects.values():
            self._record(value, seen)
        for chain in sorted(_chains(tree, set(self.objects))):
            value = self.objects[chain[0]]
            for attr in chain[1:4]:
                try:
                    value = inspect.getattr_static(value, attr)
                except AttributeError:
                    break
                self._record(value, seen)

    def _import(self, name: str):
        try:
            module = importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - a missing library fails later, as the test's own import
            return None
        self.modules[name] = id(module)
        return module

    def _record(self, value: object, seen: set[int]) -> None:
        if id(value) in seen or not isinstance(value, type | types.ModuleType):
            return
        seen.add(id(value))
        self.owners.append((value, entries(value)))

    def changed(self) -> str:
        for name, ident in self.modules.items():
            if id(sys.modules.get(name)) != ident:
                return f"sys.modules[{name!r}] was replaced"
        for owner, before in self.owners:
            now = entries(owner)
            for key, ident in before.items():
                if now.get(key) != ident:
                    return f"{getattr(owner, '__name__', '?')}.{key} was rebound"
        return ""


# ----------------------------------------------------------------------------- the runner
def _method_codes(code_obj) -> dict[tuple[str, str], bytes]:
    """co_code of each function defined in a class body of a compiled module."""
    out: dict[tuple[str, str], bytes] = {}
    for const in code_obj.co_consts:
        if hasattr(const, "co_code"):
            for inner in const.co_consts:
                if hasattr(inner, "co_code"):
                    out[(const.co_name, inner.co_name)] = inner.co_code
    return out


# attributes unittest itself sets on a test instance while it runs
_RUN_STATE = {"_outcome", "_subtest"}


class Guard:
    """Everything the candidate must leave alone, recorded before and after its code runs."""

    def __init__(self, test_code: str):
        self.marks = unittest_marks()
        self.library = LibrarySnapshot(test_code)
        self.finished: set[int] = set()
        self.instances: dict[int, tuple[dict, dict]] = {}
        self.expected: list[str] = []

    def loaded(self, module: types.ModuleType, cls: type, reference: dict, test_code: str,
               expected: list[str]) -> None:
        """After the module ran: the test module's own names and the test classes."""
        self.module, self.cls, self.reference, self.expected = module, cls, reference, expected
        try:
            tree = ast.parse(test_code)
        except (SyntaxError, ValueError):
            tree = ast.Module(body=[], type_ignores=[])
        bound = set()
        for node in tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                bound |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"}
            elif isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                bound.add(node.name)
        self.globals = {k: identity(module.__dict__[k]) for k in bound if k in module.__dict__}
        self.classes = [(k, dict(entries(k))) for k in cls.__mro__ if k is not object]

    def prepare(self, test) -> None:
        """Wrap the test method so that its end is seen, and record the instance."""
        name = test._testMethodName
        method = getattr(test, name)
        finished = self.finished

        if inspect.iscoroutinefunction(method):
            async def ran_to_end(*args, **kwargs):
                result = await method(*args, **kwargs)
                finished.add(id(test))
                return result
        else:
            def ran_to_end(*args, **kwargs):
                result = method(*args, **kwargs)
                finished.add(id(test))
                return result
        functools.update_wrapper(ran_to_end, method)  # keeps unittest's skip / expected-failure marks
        setattr(test, name, ran_to_end)
        equality = getattr(test, "_type_equality_funcs", {})
        self.instances[id(test)] = ({k: identity(v) for k, v in vars(test).items()},
                                    {k: identity(v) for k, v in equality.items()})

    def instance_changed(self, test) -> str:
        import unittest

        before, equality = self.instances.get(id(test), ({}, {}))
        for key, value in vars(test).items():
            if key in _RUN_STATE:
                continue
            if key in before:
                if identity(value) != before[key] and callable(getattr(unittest.TestCase, key, None)):
                    return f"{key} of the test was replaced"
                if key == test._testMethodName and identity(value) != before[key]:
                    return f"{key} of the test was replaced"
            elif callable(getattr(unittest.TestCase, key, None)):
                return f"{key} shadowed on the test instance"
        now = {k: identity(v) for k, v in getattr(test, "_type_equality_funcs", {}).items()}
        if now != equality:
            return "the test's type-equality functions were changed"
        return ""

    def tampered(self, test=None, passing: bool = True) -> str:
        """Why this run cannot be trusted ('' when nothing was touched). A failing test is checked
        for the unittest machinery only: whatever else it changed, it did not forge a pass (and a
        test's own patches, undone in tearDown, are still in place when a failure is reported)."""
        if self._unittest_changed():
            return "the unittest machinery or a tracing hook was modified"
        if not passing:
            return ""
        why = self.library.changed()
        if why:
            return why
        for key, ident in self.globals.items():
            if key not in self.module.__dict__ or identity(self.module.__dict__[key]) != ident:
                return f"{key} of the test module was rebound"
        for i, (owner, before) in enumerate(self.classes):
            now = entries(owner)
            inherited = [vars(k) for k, _ in self.classes[i + 1:]]
            for key, ident in now.items():
                # rebinding or removing what the class had, or shadowing a method of a base class
                if (key in before and before[key] != ident) or (
                        key not in before and any(callable(d.get(key)) for d in inherited)):
                    return f"{owner.__name__}.{key} was changed"
            if any(key not in now for key in before):
                return f"class {owner.__name__} lost a method"
        for name in self.expected:
            why = self._method_replaced(name)
            if why:
                return why
        return self.instance_changed(test) if test is not None else ""

    def _unittest_changed(self) -> bool:
        now = unittest_marks()
        return (any(now.get(k) != v for k, v in self.marks.items()) or sys.gettrace() is not None
                or sys.getprofile() is not None)

    def _method_replaced(self, name: str) -> str:
        owner = next((k for k in self.cls.__mro__ if name in vars(k)), None)
        fn = vars(owner).get(name) if owner is not None else None
        while fn is not None and getattr(fn, "__wrapped__", None) is not None:  # @patch, @wraps
            fn = fn.__wrapped__
        code = getattr(fn, "__code__", None)
        ref = self.reference.get((owner.__name__, name)) if owner is not None else None
        if code is None or (ref is not None and code.co_code != ref):
            return f"{name} was replaced"
        return ""


def run_unittest(spec: dict, res: int) -> None:
    """unittest runner: code + test code as one module; the expected TestCases methods as one suite;
    a result line per test. Skips, errors, a test that did not run to its end, a different test
    list and tampering are failures."""
    import unittest

    expected = list(spec["expected_names"])
    try:
        code_obj = compile(spec["code"] + "\n" + spec["test_code"], "<candidate>", "exec")
        # the methods as compiled here (the test code's classes come last, so they win a name clash)
        reference = _method_codes(code_obj)
    except (SyntaxError, ValueError) as e:
        return send(res, {"ready": False, "status": COMPILE, "error": describe(e)})
    try:
        guard = Guard(spec["test_code"])  # before any of the candidate's code runs
    except BaseException as e:  # noqa: BLE001 - importing the test's libraries failed for good
        return send(res, {"ready": False, "status": classify(e), "error": describe(e)})
    run_suite, make_suite = unittest.TestSuite.run, unittest.TestSuite
    base_result, test_case = unittest.TestResult, unittest.TestCase
    module = types.ModuleType("__test__")
    sys.modules["__test__"] = module
    try:
        exec(code_obj, module.__dict__)
        cls = module.__dict__["TestCases"]
        if not (isinstance(cls, type) and issubclass(cls, test_case)):
            raise TypeError("TestCases is not a unittest.TestCase")
        loaded = sorted(unittest.TestLoader().getTestCaseNames(cls))
        guard.loaded(module, cls, reference, spec["test_code"], expected)
        tests = [cls(name) for name in expected]
        for test in tests:
            guard.prepare(test)
    except BaseException as e:  # noqa: BLE001
        return send(res, {"ready": False, "status": classify(e), "error": describe(e)})

    why = guard.tampered()
    if loaded != expected:
        why = why or f"test list differs: {loaded} != {expected}"
    if why:
        return send(res, {"ready": False, "status": WRONG, "error": f"tampering: {why}"})
    send(res, {"ready": True})

    class Reporter(base_result):
        def startTest(self, test):  # noqa: N802 - unittest's API
            base_result.startTest(self, test)
            self._test = test
            self._sent = False

        def _report(self, status: str, error: str = "") -> None:
            if self._sent:
                return
            self._sent = True
            why = guard.tampered(self._test, passing=status == PASS)
            if why:
                status, error = WRONG, f"tampering: {why}"
            elif status == PASS and id(self._test) not in guard.finished:
                status, error = WRONG, "the test method did not run to its end"
            send(res, {"name": self._test._testMethodName, "status": status, "error": error})

        def addSuccess(self, test):  # noqa: N802
            self._report(PASS)

        def addFailure(self, test, err):  # noqa: N802
            self._report(WRONG, describe(err[1]))

        def addError(self, test, err):  # noqa: N802
            self._report(classify(err[1]), describe(err[1]))

        def addSkip(self, test, reason):  # noqa: N802 - a skipped test did not pass
            self._report(WRONG, f"skipped: {reason}"[:300])

        def addExpectedFailure(self, test, err):  # noqa: N802
            self._report(WRONG, "expected failure")

        def addUnexpectedSuccess(self, test):  # noqa: N802
            self._report(WRONG, "unexpected success")

        def addSubTest(self, test, subtest, err):  # noqa: N802
            if err is not None:
                self._report(WRONG if issubclass(err[0], test.failureException) else classify(err[1]),
                             describe(err[1]))

        def stopTest(self, test):  # noqa: N802
            if not self._sent:
                self._report(WRONG, "no result")
            base_result.stopTest(self, test)

    run_suite(make_suite(tests), Reporter())
