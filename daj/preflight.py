"""Checks before any work: what a stage needs from outside the machine is there, in seconds.

For every engine a stage will build (the judge, the trajectory models, the generative policies):
its options are valid for its backend, the vLLM package is installed for `vllm`, the server behind an
`openai` base_url answers, a CUDA device exists when one is asked for, and a model that is a hub id
is in the local cache or the hub is within reach. Each failure is one DajError naming the params key
and what to do. (The hub for `data.source: hf` is checked by the fetch stage's loader.)
"""

from __future__ import annotations

import importlib.util
import urllib.error
import urllib.request
from typing import Any

from daj.config import ENGINE_BACKENDS, JUDGE_METHODS, ParamsConfig
from daj.engines.openai_engine import DEFAULT_BASE_URL
from daj.engines.registry import engine_options
from daj.errors import DajError
from daj.models.loading import check_model_ref

SERVER_TIMEOUT_S = 3.0


def server_unreachable(base_url: str, timeout: float = SERVER_TIMEOUT_S) -> str | None:
    """Why an OpenAI-compatible server does not answer GET <base_url>/models, or None when it answers
    (any HTTP status counts: an auth error still proves the server is there)."""
    try:
        with urllib.request.urlopen(base_url.rstrip("/") + "/models", timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError, ValueError) as e:
        return str(getattr(e, "reason", e))


def check_engine(spec: dict[str, Any], *, where: str, under: str, options_under: str | None = None) -> None:
    """One engine spec {backend, model, adapter, ...options}; errors name `under`.<key> in `where`
    (an engine option `options_under`.<option> when the options are a mapping of their own)."""
    opts = set(spec) - {"backend", "model", "adapter", "base_url", "api_key_env"} if options_under else set()

    def key(name: str) -> str:
        return f"{options_under if name in opts else under}.{name}"

    try:
        engine_options(spec)
    except DajError as e:
        raise DajError(e.message, path=where, field=key(e.field or "backend")) from None
    backend = spec["backend"]
    if backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise DajError("the vllm backend needs vLLM, which is not installed here: pip install -e '.[vllm]' on a "
                       "GPU machine, or use backend hf / openai", path=where, field=key("backend"))
    if backend == "openai":
        url = spec.get("base_url") or DEFAULT_BASE_URL
        why = server_unreachable(url)
        if why is not None:
            raise DajError(f"no OpenAI-compatible server answers at {url} ({why}): start it (vllm serve ..., "
                           "docs/engines.md) or fix base_url", path=where, field=key("base_url"))
        return
    if str(spec.get("device") or "").startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise DajError(f"device {spec['device']!r} asked for, but torch sees no CUDA device here",
                           path=where, field=key("device"))
    check_model_ref(spec["model"], field=key("model"), path=where)


def check_policies(config: ParamsConfig, where: str, names: list[str] | None = None) -> None:
    """The generative policies (all, or those in `names`)."""
    for i, policy in enumerate(config.policies):
        if policy.backend in ENGINE_BACKENDS and (names is None or policy.name in names):
            check_engine(policy.engine_spec(), where=where, under=f"policies[{i}]")


def check_judge(config: ParamsConfig, where: str, stage: str = "train", adapter: str | None = None) -> None:
    """What stage `stage` (pairs, train, bon or pairwise) will load or call, before it reads anything:
    the judge engine (with `adapter`), and the trajectory models (pairs) or reward models (bon) it uses."""
    judge_used = True
    if stage == "pairs":
        levels = [config.pairs.trajectories(level) for level in ("lower", "upper")]
        judge_used = any(items is None or "judge" in items for items in levels)
    elif stage == "bon":
        judge_used = any(m in JUDGE_METHODS for m in config.bon.methods)
        prm, grm = config.bon.prm, config.bon.grm
        if "prm" in config.bon.methods:
            if prm.backend == "openai":
                check_engine({"backend": "openai", "model": prm.model, "base_url": prm.base_url}, where=where,
                             under="bon.prm")
            else:
                check_model_ref(prm.model, field="bon.prm.model", path=where)
        if "grm" in config.bon.methods:
            check_engine(grm.engine_spec(), where=where, under="bon.grm", options_under="bon.grm.engine_options")
    if judge_used:
        check_engine(config.judge.engine_spec(adapter), where=where, under="judge",
                     options_under="judge.engine_options")
    else:  # the judge's tokenizer still renders the prompts
        check_model_ref(config.judge.tokenizer or config.judge.model, path=where,
                        field="judge.tokenizer" if config.judge.tokenizer else "judge.model")
    if stage == "pairs":
        for level in ("lower", "upper"):
            for i, item in enumerate(config.pairs.trajectories(level) or []):
                if not isinstance(item, str):
                    check_engine(item.engine_spec(), where=where, under=f"pairs.{level}_trajectories[{i}]")
