"""Read params.yaml into the typed contract (daj.config), with errors that name the file, line and key.

    config = load_config()            # params.yaml (or $DAJ_PARAMS) of the current directory
    config.train.lr, config.judge     # the pydantic models of daj.config, every default filled in

An unknown key, a wrong type or a value out of range is a DajError naming the file, the line, the
dotted key and what was expected. Numbers are read as YAML 1.2 writes them (`1e-06`, `1E5`, `.5`),
as DVC does for `dvc exp run -S train.lr=1e-6`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from daj.config import CrossFieldError, ParamsConfig, to_dict
from daj.errors import DajError

PARAMS_FILE = "params.yaml"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's floats: `1e-06`, `1E5` and `.5` are numbers.

    PyYAML follows YAML 1.1, where a float needs a dot (`1.0e-6`), so `1e-06`, which DVC writes for
    `-S train.lr=1e-6`, would load as a string. Quoted values stay strings."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+
                  |[-+]?(?:[0-9][0-9_]*)\.[0-9_]*
                  |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """Parse a params or preset text (YAML 1.2 numbers; raises yaml.YAMLError)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def params_path() -> Path:
    """params.yaml of the current directory, or $DAJ_PARAMS."""
    return Path(os.environ.get("DAJ_PARAMS", PARAMS_FILE))


def read_params(path: str | os.PathLike | None = None) -> tuple[dict, str, str]:
    """(raw mapping, text, path) of a params file; a DajError when it is missing or not YAML."""
    path = Path(path) if path is not None else params_path()
    try:
        text = path.read_text(encoding="utf-8")
        raw = load_yaml(text)
    except FileNotFoundError:
        raise DajError("params file not found", path=str(path)) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DajError(f"invalid YAML: {e}", path=str(path), line=mark.line + 1 if mark else None) from None
    if not isinstance(raw, dict):
        raise DajError("expected a mapping at the top level", path=str(path))
    return raw, text, str(path)


def load_config(path: str | os.PathLike | None = None) -> ParamsConfig:
    """The validated params of a file (default: params.yaml of the current directory)."""
    raw, text, where = read_params(path)
    return validate_params(raw, where, text)


def validate_params(raw: dict, path: str = PARAMS_FILE, text: str | None = None) -> ParamsConfig:
    """The typed params, or a DajError naming the file, line, dotted key and what was expected."""
    try:
        return ParamsConfig.model_validate(raw)
    except ValidationError as e:
        # the deepest location names the real culprit (a union reports one error per member)
        err = max(e.errors(include_url=False), key=lambda x: len(x["loc"]))
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, CrossFieldError):
            key, message = ctx_error.key, str(ctx_error)
        else:
            key = dotted(err["loc"])
            message = _explain(err, key)
        line = key_line(text, key) if text is not None else None
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise DajError(message + more, path=path, line=line, field=key or None) from None


def with_overrides(config: ParamsConfig, path: str = PARAMS_FILE, **dotted_values: Any) -> ParamsConfig:
    """`config` with dotted keys replaced (a missing key is added), validated like a file, errors
    naming `path`: with_overrides(config, **{"train.lr": 1e-5})."""
    raw = to_dict(config)
    for key, value in dotted_values.items():
        node = raw
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return validate_params(raw, path)


def _union_tags() -> set[str]:
    """pydantic's names for union members in error locations: 'int', 'SplitCaps', 'list[str]', ..."""
    from daj import config

    models = {name for name, obj in vars(config).items() if isinstance(obj, type) and issubclass(obj, BaseModel)}
    return {"int", "float", "str", "bool", "none"} | models


def dotted(loc: tuple) -> str:
    """('policies', 0, 'name') -> 'policies[0].name'; pydantic's union tags are dropped."""
    tags = _union_tags()
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "constrained-")) or part in tags or part.endswith("]"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _explain(err: dict, key: str) -> str:
    if err["type"] == "extra_forbidden":
        section = key.rsplit(".", 1)[0] if "." in key else None
        model = _section_model(section)
        allowed = f"; expected one of {', '.join(model.model_fields)}" if model else ""
        return f"unknown key{allowed}"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    msg = msg.replace("Input should be", "expected").replace("String should", "expected the text to")
    shown = "input" in err and err["type"] != "missing" and not isinstance(err["input"], dict | list)
    return f"{msg}, got {err['input']!r}" if shown else msg


def _section_model(section: str | None) -> type[BaseModel] | None:
    model: type[BaseModel] = ParamsConfig
    if section is None:
        return model
    for part in section.split("."):
        field = model.model_fields.get(part.split("[")[0])
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def key_line(text: str | None, key: str) -> int | None:
    """1-based line of a dotted key in a YAML text (the deepest part found)."""
    if not text or not key:
        return None
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return None
    line = None
    parts = key.replace("]", "").replace("[", ".").split(".")
    for part in parts:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            break
    return line
