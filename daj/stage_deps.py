"""Which project files each DVC stage runs, so that dvc.yaml's `deps` can be checked against the code.

    python -m daj.stage_deps            # per stage: the project files it imports, and what dvc.yaml lacks
    python -m daj.stage_deps --check    # exit 1 when a stage's deps miss a file it imports
    python -m daj.stage_deps --write    # rewrite the code deps of dvc.yaml (data deps and comments kept)

A stage's code is its module `stages/<name>.py` and everything it imports from the project, at module
level or inside functions (found by reading the import statements, so lazy imports count), plus the
in-sandbox package that `execute` runs in a subprocess. A dvc.yaml dep covers a file when it names it
or a directory above it.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("daj", "sandbox", "stages")
# files a stage runs without importing them: the harness runs inside the sandbox as its own program
RUNS = {"execute": ["sandbox/inside"]}


def module_file(name: str, root: Path = REPO) -> Path | None:
    """The project file of a dotted module name (a package's __init__.py), or None outside the project."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path, root: Path) -> set[str]:
    """Dotted names imported by a file (absolute and relative; `from a import b` gives a and a.b)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def closure(start: Path, root: Path = REPO) -> set[Path]:
    """Every project file `start` imports, directly or through other project files (itself included);
    importing `a.b.c` also runs the packages `a` and `a.b`."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path, root):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                found = module_file(".".join(parts[:i]), root)
                if found is not None and found not in seen:
                    todo.append(found)
    return seen


def stage_files(stage: str, root: Path = REPO) -> list[str]:
    """The project files (relative paths) stage `stage` runs."""
    files = {p.relative_to(root).as_posix() for p in closure(root / "stages" / f"{stage}.py", root)}
    for extra in RUNS.get(stage, []):
        files.update(p.relative_to(root).as_posix() for p in sorted((root / extra).rglob("*.py")))
    return sorted(files)


def dvc_stages(root: Path = REPO) -> dict[str, list[str]]:
    """stage name (foreach stages once, by their module) -> deps in dvc.yaml."""
    spec = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))
    out = {}
    for name, stage in spec["stages"].items():
        body = stage.get("do", stage)
        out[name] = [str(d) for d in body.get("deps", [])]
    return out


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def missing_deps(root: Path = REPO) -> dict[str, list[str]]:
    """stage -> the files it runs that its dvc.yaml deps do not cover (empty lists dropped)."""
    out = {}
    for name, deps in dvc_stages(root).items():
        module = (root / "stages" / f"{name}.py")
        if not module.is_file():
            continue
        lacking = [f for f in stage_files(name, root) if not covered(f, deps)]
        if lacking:
            out[name] = lacking
    return out


def stale_deps(root: Path = REPO) -> dict[str, list[str]]:
    """stage -> code deps (under the project packages) of which the stage runs no file."""
    out = {}
    for name, deps in dvc_stages(root).items():
        if not (root / "stages" / f"{name}.py").is_file():
            continue
        files = stage_files(name, root)
        stale = [d for d in deps if d.split("/")[0] in PACKAGES and not any(covered(f, [d]) for f in files)]
        if stale:
            out[name] = stale
    return out


def compact(files: list[str], root: Path = REPO) -> list[str]:
    """`files` with every directory whose .py files are all among them written as the directory."""
    chosen = set(files)
    dirs = sorted({str(Path(f).parent) for f in files}, key=lambda d: d.count("/"))
    out: set[str] = set()
    for d in dirs:
        if any(covered(d, [o]) for o in out):
            continue
        every = {p.relative_to(root).as_posix() for p in (root / d).rglob("*.py")}
        if every and every <= chosen:
            out.add(d)
    out |= {f for f in files if not covered(f, sorted(out))}
    return sorted(out)


def write_deps(root: Path = REPO) -> None:
    """Replace each stage's code deps in dvc.yaml by the files it runs (compacted); comments, data deps
    and everything else stay as they are."""
    from ruamel.yaml import YAML

    from daj.io import atomic_open

    yaml_rt = YAML()
    yaml_rt.preserve_quotes = True
    yaml_rt.width = 110
    path = root / "dvc.yaml"
    spec = yaml_rt.load(path.read_text(encoding="utf-8"))
    for name, stage in spec["stages"].items():
        body = stage.get("do", stage)
        if not (root / "stages" / f"{name}.py").is_file():
            continue
        data = [d for d in body.get("deps", []) if str(d).split("/")[0] not in PACKAGES]
        body["deps"] = compact(stage_files(name, root), root) + data
    with atomic_open(path) as fh:
        yaml_rt.dump(spec, fh)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m daj.stage_deps", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when dvc.yaml misses or keeps a code dep")
    ap.add_argument("--write", action="store_true", help="rewrite the code deps of dvc.yaml")
    args = ap.parse_args(argv)
    if args.write:
        write_deps()
    missing, stale = missing_deps(), stale_deps()
    if not args.check:
        for name in dvc_stages():
            if (REPO / "stages" / f"{name}.py").is_file():
                print(f"{name}:", *(f"  - {f}" for f in stage_files(name)), sep="\n")
    for name, files in missing.items():
        print(f"dvc.yaml stage {name!r} lacks deps: {', '.join(files)}", file=sys.stderr)
    for name, deps in stale.items():
        print(f"dvc.yaml stage {name!r} lists deps it does not run: {', '.join(deps)}", file=sys.stderr)
    return 1 if (missing or stale) else 0


if __name__ == "__main__":
    sys.exit(main())
