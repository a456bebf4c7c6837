"""Device script (issue 15, training): old and new training paths side by side, in one run.

    python benchmarks/gpu_train.py                 # on the GPU machine (Qwen3-1.7B architecture, bf16)
    python benchmarks/gpu_train.py --cpu-smoke     # the same code on a tiny model on CPU, in seconds

Model: the Qwen3-1.7B architecture with random weights (benchmarks.train_step.QWEN3_1_7B), bf16,
LoRA r=32 alpha=64 on the seven projections; DPO pairs of about 1.3k tokens per sequence (the
--prompt-tokens 1024 --response-tokens 256 of benchmarks/train_step.py, 1,299 tokens measured). "old" is the path before issue 15: micro-batch 1 (one pair per
forward) and the logits of all scored positions at once (one chunk, no checkpointing); "new" is
micro-batches of several pairs in one padded forward and the chunked, checkpointed log-probs.

Measured, in this order (each part records its own error instead of stopping the run):
  plain     a plain training step (forward + backward + Adam, no Betty), pairs per second, for
            micro-batch 1 (old and new log-probs) and 4 and 8 (new), same effective batch;
  bilevel   seconds per optimizer step of reweight=none and reweight=domain at the paper's
            accumulation (16 pairs per optimizer step, upper step each optimizer step, meta
            accumulation 1 here), old (1 x 16) and new (4 x 4): the overhead = bilevel / plain;
            needs betty-ml (pip install --no-deps --ignore-requires-python betty-ml==0.2.1, or
            --betty-wheel PATH);
  fit       one forward + backward of a 16-sequence micro-batch (8 pairs) of 1.3k tokens with the old
            and the new log-probs: fits or out of memory, and the peak allocated memory.

Writes one JSON (--out, default benchmarks/results/gpu_train.json; also $OUT/gpu_train.json when the
device tool's $OUT is set) and prints it.

Device run (the GPU machine has torch, transformers and peft, not betty-ml; a few minutes):
    here:   .venv/bin/python -m pip download -q --no-deps -d .cache/device_train betty-ml==0.2.1
    device: run(command="PYTHONUNBUFFERED=1 python benchmarks/gpu_train.py --betty-wheel
            $(ls .cache/device_train/*.whl)", carry=[".cache/device_train"], timeout_s=540)
    then copy $OUT/gpu_train.json to benchmarks/results/ and the figures into docs/train.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOALS = {"plain_speedup_min": 3.0, "bilevel_overhead_max": 1.3, "fits_16x1.3k": True}


def _ensure_betty(wheel: str | None) -> str | None:
    """Import betty, installing a carried wheel first when given; None if it imports, else the reason."""
    try:
        import betty  # noqa: F401

        return None
    except ImportError:
        pass
    if wheel:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--ignore-requires-python", wheel],
                       check=False)
        try:
            import betty  # noqa: F401, F811

            return None
        except ImportError as e:
            return f"betty-ml not importable after installing {wheel}: {e}"
    return "betty-ml is not installed (pass --betty-wheel with a carried betty_ml-0.2.1 wheel)"


def build(args):
    """(model with LoRA, tokenizer, device)."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    from benchmarks.train_step import QWEN3_1_7B
    from daj.models.tiny import train_tokenizer
    from daj.train.lora import add_lora
    from daj.train.synthetic import corpus

    tok = train_tokenizer(corpus(), vocab_size=400)
    device = "cuda" if torch.cuda.is_available() and not args.cpu_smoke else "cpu"
    if args.cpu_smoke:
        shape = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True)
        dtype = torch.float32
    else:
        shape, dtype = QWEN3_1_7B, torch.bfloat16
    torch.manual_seed(0)
    config = Qwen3Config(**shape, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.config.use_cache = False
    model = add_lora(model, args.lora_r, 2 * args.lora_r,
                     ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model.train()
    return model, tok, device


def pairs(tok, n: int, args, split: str):
    from benchmarks.train_step import _rows
    from daj.train.data import PreferenceData

    rows = _rows(n, args.prompt_tokens, args.response_tokens, 0, split)
    return PreferenceData("dpo", tok, args.prompt_tokens + args.response_tokens + 64, rows,
                          ["alpha", "beta", "gamma"])


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def set_path(old: bool) -> None:
    """old: all scored positions' logits at once (one chunk, nothing checkpointed); new: chunked."""
    from daj.train import logprobs

    logprobs.LOGITS_TOKENS = 1 << 40 if old else 4096


def plain(model, data, device, micro: int, accum: int, steps: int) -> dict:
    """Optimizer steps of `accum` micro-batches of `micro` pairs (forward+backward+Adam), no Betty."""
    import torch

    from daj.train.data import to_device
    from daj.train.losses import DPO

    data.compute_reference(model, device=device, lazy=True)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    times, k = [], 0
    for step in range(steps + 1):  # the first step warms up
        _sync()
        t0 = time.perf_counter()
        for _ in range(accum):
            units = [(k + j) % len(data) for j in range(micro)]
            k += micro
            loss = DPO().per_sample(model, to_device(data.batch(units), device)).mean() / accum
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync()
        if step:
            times.append(time.perf_counter() - t0)
    per_step = sorted(times)[len(times) // 2]
    return {"micro_batch": micro, "accum": accum, "seconds_per_optimizer_step": per_step,
            "pairs_per_s": micro * accum / per_step}


def bilevel(model, tok, device, args, micro: int, accum: int, reweight: str) -> dict:
    """Seconds per optimizer step of the Betty loop (darts), DPO, an upper step per optimizer step."""
    from daj.config import TrainConfig
    from daj.train.bilevel import train
    from daj.train.losses import make_objective
    from daj.train.weights import make_weight_model

    lower, upper, evals = pairs(tok, 32, args, "lower"), pairs(tok, 4, args, "upper"), pairs(tok, 2, args, "eval")
    cfg = TrainConfig(objective="dpo", steps=accum * (args.bilevel_steps + 1), grad_accum=accum,
                      batch_size=micro, meta_batch_size=1, lr=1e-6, meta_lr=1e-4)
    wm = make_weight_model(reweight, ["alpha", "beta", "gamma"], len(lower.instance_ids))
    for data in (lower, upper, evals):  # reference log-probs before the timed steps (train() keeps them)
        data.compute_reference(model, device=device)
    res = train(model, make_objective("dpo"), wm, lower, upper, evals, cfg, 0, progress=False)
    times = sorted(r["seconds"] for r in [r for r in res.history if "seconds" in r][1:])  # [0] warms up
    return {"reweight": reweight, "micro_batch": micro, "accum": accum,
            "seconds_per_optimizer_step": times[len(times) // 2]}


def fit(model, tok, device, args, old: bool) -> dict:
    """One forward+backward of 16 sequences (8 pairs) of ~1.3k tokens: fits, and the peak memory."""
    import torch

    from daj.train.data import to_device
    from daj.train.losses import DPO

    set_path(old)
    data = pairs(tok, 8, args, "fit")
    data.compute_reference(model, device=device, lazy=True)
    batch = to_device(data.batch(list(range(8))), device)
    model.zero_grad(set_to_none=True)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        DPO().per_sample(model, batch).mean().backward()
        _sync()
        out = {"fits": True}
    except torch.OutOfMemoryError as e:
        out = {"fits": False, "error": str(e).splitlines()[0][:200]}
    model.zero_grad(set_to_none=True)
    if torch.cuda.is_available():
        out["peak_allocated_gb"] = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.empty_cache()
    out["sequences"] = int(batch["seq"]["input_ids"].shape[0])
    out["tokens_per_sequence"] = int(batch["seq"]["input_ids"].shape[1])
    return out


def _part(report: dict, name: str, fn) -> None:
    t0 = time.perf_counter()
    try:
        report[name] = fn()
    except Exception as e:  # noqa: BLE001 - a device run records every part it can
        report[name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-1500:]}
    report.setdefault("seconds", {})[name] = time.perf_counter() - t0
    print(f"[gpu_train] {name}: {json.dumps(report[name])[:400]}", flush=True)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny model on CPU, short sequences (seconds)")
    ap.add_argument("--prompt-tokens", type=int, default=None)
    ap.add_argument("--response-tokens", type=int, default=None)
    ap.add_argument("--lora-r", type=int, default=32)
    ap.add_argument("--plain-steps", type=int, default=3, help="timed optimizer steps per plain setting")
    ap.add_argument("--bilevel-steps", type=int, default=2, help="timed optimizer steps per bi-level setting")
    ap.add_argument("--accum", type=int, default=16, help="pairs per optimizer step (the paper's accumulation)")
    ap.add_argument("--betty-wheel", default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_train.json")
    args = ap.parse_args(argv)
    if args.prompt_tokens is None:
        args.prompt_tokens = 40 if args.cpu_smoke else 1024  # ~1.3k tokens per sequence, as in
    if args.response_tokens is None:                           # benchmarks/results/train_step_qwen3_1.7b_h200_1.3k
        args.response_tokens = 8 if args.cpu_smoke else 256
    if args.cpu_smoke:
        args.accum, args.plain_steps, args.bilevel_steps, args.lora_r = 4, 1, 1, 4
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(1)
    model, tok, device = build(args)
    report: dict = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                    "torch": torch.__version__, "settings": {k: str(v) for k, v in vars(args).items()},
                    "goals": GOALS}
    data = pairs(tok, 32, args, "plain")
    a = args.accum
    micros = [m for m in (1, 4, 8) if a % m == 0]

    def plain_all():
        out = {}
        set_path(True)
        out["old_mb1"] = plain(model, data, device, 1, a, args.plain_steps)
        set_path(False)
        for m in micros:
            out[f"new_mb{m}"] = plain(model, data, device, m, a // m, args.plain_steps)
        base = out["old_mb1"]["pairs_per_s"]
        out["speedup_vs_old"] = {k: v["pairs_per_s"] / base for k, v in out.items() if k != "old_mb1"}
        return out

    _part(report, "plain", plain_all)
    problem = _ensure_betty(args.betty_wheel)
    if problem:
        report["bilevel"] = {"skipped": problem}
    else:
        def bilevel_all():
            out = {}
            for label, old, micro in (("old", True, 1), ("new", False, 4 if a % 4 == 0 else 1)):
                set_path(old)
                none = bilevel(model, tok, device, args, micro, a // micro, "none")
                dom = bilevel(model, tok, device, args, micro, a // micro, "domain")
                out[label] = {"plain": none, "domain": dom,
                              "overhead": dom["seconds_per_optimizer_step"] / none["seconds_per_optimizer_step"]}
            return out

        _part(report, "bilevel", bilevel_all)
    _part(report, "fit", lambda: {"old": fit(model, tok, device, args, True), "new": fit(model, tok, device, args, False)})
    set_path(False)
    plain_r, bil, fit_r = report.get("plain", {}), report.get("bilevel", {}), report.get("fit", {})
    report["verdict"] = {
        "plain_speedup": max(plain_r.get("speedup_vs_old", {}).values(), default=None),
        "bilevel_overhead_new": bil.get("new", {}).get("overhead"),
        "fits_16x1.3k_new": fit_r.get("new", {}).get("fits"),
        "fits_16x1.3k_old": fit_r.get("old", {}).get("fits"),
    }
    text = json.dumps(report, indent=2) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], args.out.name).write_text(text)
    print(text)
    return report


if __name__ == "__main__":
    main()
