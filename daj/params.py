"""Load params.yaml and read dotted keys with clear errors."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from daj.errors import DajError

PARAMS_FILE = os.environ.get("DAJ_PARAMS", "params.yaml")
_MISSING = object()


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


class Params(dict):
    """params.yaml as a dict, with `get_path("a.b.c")` and the file name kept for error messages."""

    path: str = PARAMS_FILE

    def get_path(self, dotted: str, default: Any = _MISSING) -> Any:
        node: Any = self
        for part in dotted.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif default is not _MISSING:
                return default
            else:
                raise DajError("missing parameter", path=self.path, field=dotted)
        return node

    def choice(self, dotted: str, allowed: list[str] | tuple[str, ...], default: Any = _MISSING) -> str:
        """A parameter that must be one of `allowed`."""
        value = self.get_path(dotted, default)
        if value not in allowed:
            raise DajError(f"unknown value {value!r}; expected one of {', '.join(map(str, allowed))}",
                           path=self.path, field=dotted)
        return value


def load_params(path: str | os.PathLike | None = None, validate: bool = False) -> Params:
    """Read params.yaml (or $DAJ_PARAMS) from the current directory.

    With `validate`, the whole file is checked against the typed models of daj.config (unknown keys,
    types, ranges) and the result holds every default filled in."""
    path = Path(path or PARAMS_FILE)
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
    if validate:
        from daj.config import to_dict, validate_params

        raw = to_dict(validate_params(raw, str(path), text))
    params = Params(raw)
    params.path = str(path)
    return params
