"""One meaning for the sampling settings, translated to each backend.

Meaning (the same on every backend):
  n                   completions per prompt
  temperature         0 means greedy decoding (then top_p, top_k and the seed have no effect)
  top_p               nucleus sampling; 1.0 disables it
  top_k               top-k sampling; 0 disables it (vLLM spells that -1)
  repetition_penalty  the multiplicative penalty of CTRL / HF / vLLM; 1.0 disables it
  max_new_tokens      generation budget per completion
  seed                base seed; every prompt gets its own seed derived from it and the prompt
                      (daj.hashing.prompt_seed), so a prompt's completions do not depend on the batch
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from daj.engines.base import SamplingParams
from daj.errors import DajError

FIELDS = tuple(SamplingParams.model_fields)


def to_hf(params: SamplingParams) -> dict:
    """GenerationConfig fields for transformers' `generate` (seeding is done by the caller).

    Neutral values (temperature 1, top_p 1, top_k 0) are set explicitly under greedy decoding so
    the model's own generation_config defaults cannot leak in.
    """
    kw = {"max_new_tokens": params.max_new_tokens, "num_return_sequences": params.n,
          "repetition_penalty": params.repetition_penalty}
    if params.temperature == 0:
        kw.update(do_sample=False, temperature=1.0, top_p=1.0, top_k=0)
    else:
        kw.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
    return kw


def to_vllm(params: SamplingParams, seed: int | None = None) -> dict:
    """Keyword arguments of `vllm.SamplingParams` for one prompt (`seed`: its prompt seed)."""
    greedy = params.temperature == 0
    return {
        "n": params.n,
        "temperature": params.temperature,
        "top_p": 1.0 if greedy else params.top_p,
        "top_k": -1 if greedy or params.top_k == 0 else params.top_k,
        "repetition_penalty": params.repetition_penalty,
        "max_tokens": params.max_new_tokens,
        "seed": params.seed if seed is None else seed,
    }


def to_openai(params: SamplingParams, seed: int | None = None) -> dict:
    """Sampling fields of an OpenAI chat-completions request body for one prompt.

    top_k and repetition_penalty are not in OpenAI's API; vLLM's server (and ours) read them as
    extra body fields.
    """
    return to_vllm(params, seed)  # vLLM's server reads the same names as its offline API


def from_openai(body: Mapping) -> SamplingParams:
    """SamplingParams of an OpenAI chat-completions request (the server side of to_openai).

    Absent fields take OpenAI's defaults (temperature 1, top_p 1, no top-k, no penalty, n 1).
    """
    top_k = body.get("top_k", -1)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    values = {
        "n": body.get("n", 1),
        "temperature": body.get("temperature", 1.0),
        "top_p": body.get("top_p", 1.0),
        "top_k": 0 if top_k is None or top_k == -1 else top_k,
        "repetition_penalty": body.get("repetition_penalty", 1.0),
        "max_new_tokens": 256 if max_tokens is None else max_tokens,
        "seed": body.get("seed", 0) or 0,
    }
    try:
        return SamplingParams.model_validate(values)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        raise DajError(f"{err['msg']}, got {err.get('input')!r}", field=".".join(map(str, err["loc"]))) from None
