"""GPU check of the hf engine, the OpenAI-compatible server and the sample stage (one short script).

    PYTHONPATH=. python benchmarks/engines_gpu.py [--out DIR]

Needs models/tiny (python -m stages.tiny) and data/problems.jsonl (python -m stages.fetch). Prints
one JSON report: seeded reproducibility on CUDA, batch independence with batch_size 1, bf16,
CPU/GPU agreement of score_continuations, completions over real HTTP, and the sample stage's
tokens/s with an hf policy on the GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
DEVICE = os.environ.get("DAJ_DEVICE", "cuda")  # cpu for a dry run
sys.path.insert(0, str(REPO))

from daj.engines.base import SamplingParams  # noqa: E402
from daj.engines.hf import HFEngine  # noqa: E402
from daj.engines.openai_engine import OpenAIEngine  # noqa: E402
from daj.io import read_jsonl  # noqa: E402
from daj.policies.prompts import policy_prompt  # noqa: E402
from daj.testing.openai_server import make_server  # noqa: E402


def texts(result) -> list[list[str]]:
    return [[c.text for c in cs] for cs in result]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    model = str(REPO / "models" / "tiny")
    problems = read_jsonl(REPO / "data" / "problems.jsonl")[:16]
    chats = [policy_prompt(p) for p in problems]
    report: dict = {"device": torch.cuda.get_device_name(0) if DEVICE == "cuda" else DEVICE, "torch": torch.__version__}

    eng = HFEngine(model, device=DEVICE, batch_size=8)
    sp = SamplingParams(n=4, max_new_tokens=64, seed=3)
    t0 = time.perf_counter()
    a = eng.generate(chats, sp)
    dt = time.perf_counter() - t0
    b = eng.generate(chats, sp)
    toks = sum(c.completion_tokens for cs in a for c in cs)
    report["cuda_fp32"] = {"reproducible": texts(a) == texts(b), "completions": sum(map(len, a)),
                           "completion_tokens": toks, "tokens_per_s": round(toks / dt, 1),
                           "finish_reasons": sorted({c.finish_reason for cs in a for c in cs})}

    one = HFEngine(model, device=DEVICE, batch_size=1)
    fwd = one.generate(chats[:4], sp)
    rev = one.generate(chats[:4][::-1], sp)[::-1]
    report["batch_size_1_order_independent"] = texts(fwd) == texts(rev)

    bf = HFEngine(model, device=DEVICE, dtype="bf16", batch_size=8)
    r = bf.generate(chats[:4], SamplingParams(n=2, max_new_tokens=16, seed=1))
    report["bf16_ok"] = all(len(cs) == 2 for cs in r)

    cpu = HFEngine(model, device="cpu")
    opts = ["1", "2", "12"]
    s_gpu = eng.score_continuations(chats[0], "<selection>", opts)
    s_cpu = cpu.score_continuations(chats[0], "<selection>", opts)
    report["score_continuations"] = {"cuda": s_gpu, "cpu": s_cpu,
                                     "max_abs_diff": max(abs(x - y) for x, y in zip(s_gpu, s_cpu, strict=True))}

    srv = make_server(eng, "tiny", port=0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    client = OpenAIEngine("tiny", base_url=srv.url, api_key_env=None, concurrency=4)
    got = client.generate(chats[:8], SamplingParams(n=2, max_new_tokens=16, seed=5))
    again = client.generate(chats[:8], SamplingParams(n=2, max_new_tokens=16, seed=5))
    report["http"] = {"completions": sum(map(len, got)), "reproducible": texts(got) == texts(again)}
    srv.shutdown()

    work = Path(tempfile.mkdtemp())
    (work / "data").mkdir()
    shutil.copy(REPO / "data" / "problems.jsonl", work / "data" / "problems.jsonl")
    params = {"seed": 0, "sampling": {"n": 4, "temperature": 0.7, "top_p": 0.8, "top_k": 20,
                                      "repetition_penalty": 1.05, "max_new_tokens": 256},
              "policies": [{"name": "tiny_gpu", "backend": "hf", "model": model, "device": DEVICE,
                            "batch_size": 16, "chunk": 16, "problems": int(os.environ.get("DAJ_PROBLEMS", "64"))}],
              "split": {"exclude_platforms": []}, "caches": {"sample": ".cache/sample"}}
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "stages.sample"], cwd=work, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    metrics = json.loads((work / "metrics" / "sample" / "tiny_gpu.json").read_text()) if proc.returncode == 0 \
        else {"error": proc.stderr[-2000:]}
    report["sample_stage_hf_cuda"] = {"wall_s": round(time.perf_counter() - t0, 1),
                                      **{k: metrics.get(k) for k in ("candidates", "completion_tokens",
                                                                      "generation_seconds", "tokens_per_s",
                                                                      "finish_reasons", "error")}}
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "engines_gpu.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
