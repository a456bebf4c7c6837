"""Create a text-generation engine from a spec dict.

    make_engine({"backend": "hf", "model": "models/tiny", "adapter": None, "batch_size": 4})
    make_engine({"backend": "openai", "model": "Qwen/Qwen3-1.7B", "base_url": "http://host:8000/v1"})
    make_engine({"backend": "vllm", "model": "Qwen/Qwen2.5-Coder-14B-Instruct", "adapter": "models/judge"})

Keys other than backend/model/adapter are backend options (the constructor's keyword arguments);
sampling keys (n, temperature, ...) and policy keys (name, path, problems, ...) are ignored, so a
policy or judge section of params.yaml can be passed as it is.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

from daj.config import ENGINE_BACKENDS
from daj.engines.base import Engine
from daj.engines.settings import FIELDS as SAMPLING_FIELDS
from daj.errors import DajError

GENERATIVE_BACKENDS = ENGINE_BACKENDS
_IGNORED = set(SAMPLING_FIELDS) | {"backend", "name", "path", "problems", "prompt", "n_per_problem"}


def _engine_class(backend: str):
    if backend == "hf":
        from daj.engines.hf import HFEngine
        return HFEngine
    if backend == "vllm":
        from daj.engines.vllm_engine import VLLMEngine
        return VLLMEngine
    if backend == "openai":
        from daj.engines.openai_engine import OpenAIEngine
        return OpenAIEngine
    raise DajError(f"unknown engine backend {backend!r}; expected one of {', '.join(GENERATIVE_BACKENDS)}",
                   field="backend")


def engine_options(spec: Mapping) -> tuple[type, dict]:
    """(engine class, constructor kwargs) for a spec; unknown options are a DajError."""
    if "backend" not in spec:
        raise DajError("engine spec needs a 'backend'", field="backend")
    if not spec.get("model"):
        raise DajError(f"engine spec for backend {spec['backend']!r} needs a 'model'", field="model")
    cls = _engine_class(spec["backend"])
    sig = inspect.signature(cls.__init__)
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    kwargs = {k: v for k, v in spec.items() if k not in _IGNORED}
    if kwargs.get("adapter") is None:
        kwargs.pop("adapter", None)
    unknown = [k for k in kwargs if k not in sig.parameters] if not accepts_any else []
    if unknown:
        allowed = [p for p in sig.parameters if p not in ("self",) and sig.parameters[p].kind
                   is not inspect.Parameter.VAR_KEYWORD]
        raise DajError(f"unknown option(s) {', '.join(unknown)} for backend {spec['backend']!r}; "
                       f"allowed: {', '.join(allowed)}", field=unknown[0])
    return cls, kwargs


def make_engine(spec: Mapping) -> Engine:
    """Build the engine a spec describes (see the module docstring)."""
    cls, kwargs = engine_options(spec)
    return cls(**kwargs)
