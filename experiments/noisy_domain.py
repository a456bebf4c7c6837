"""Controlled experiment: does domain reweighting find and down-weight a corrupted domain?

Training pairs come from three synthetic domains (daj.train.synthetic); in one of them ("gamma")
chosen and rejected are swapped. The meta (upper) pairs are clean. For each seed, a fresh tiny
random judge is trained with reweight=none and reweight=domain under the same settings, and we
compare the corrupted domain's weight and the judge's meta loss / accuracy.

    python -m experiments.noisy_domain                      # 3 seeds, full length (CPU, minutes)
    python -m experiments.noisy_domain --seeds 0 --steps 10 # quick look

Writes <out>/results.json, <out>/domain_weights.csv (seed 0), <out>/noisy_domain.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path

CORRUPT = "gamma"


def run_seed(seed: int, steps: int, workdir: Path, objective: str = "dpo", lr: float = 2e-3, meta_lr: float = 0.1,
             n_per_domain: int = 12, eval_every: int = 0, progress: bool = False) -> dict:
    """Train none and domain on one seed's data and tiny model; return their summaries and histories."""
    from daj.models.tiny import build_tiny_model
    from daj.train.bilevel import TrainConfig
    from daj.train.run import RunOptions, run, summary
    from daj.train.synthetic import corpus, write_noisy_domain_data

    model_dir, pairs = workdir / f"model{seed}", workdir / f"pairs{seed}"
    if not (model_dir / "config.json").exists():
        build_tiny_model(model_dir, corpus(seed), seed=seed, vocab_size=400)
    write_noisy_domain_data(pairs, seed=seed, n_per_domain=n_per_domain, n_meta_per_domain=n_per_domain // 2,
                            corrupt=(CORRUPT,))
    opts = RunOptions(model=str(model_dir), lora_r=8, lora_alpha=16, grpo_group=4)
    out = {}
    for reweight in ("none", "domain"):
        cfg = TrainConfig(objective=objective, reweight=reweight, steps=steps, lr=lr, meta_lr=meta_lr, grad_accum=2,
                          eval_every=eval_every, seed=seed)
        res = run(cfg, opts, pairs, progress=progress)
        out[reweight] = {"summary": summary(cfg, res), "history": res.history}
    return out


def run_experiment(seeds: list[int], steps: int, workdir: Path, **kw) -> dict:
    """All seeds, plus the acceptance checks: gamma's weight is the lowest (every seed) and the
    domain-reweighted judge has a lower meta loss than the unweighted one (every seed)."""
    per_seed = {}
    for seed in seeds:
        r = run_seed(seed, steps, workdir, **kw)
        none, dom = r["none"]["summary"], r["domain"]["summary"]
        w = dom["domain_weights"]
        per_seed[seed] = {
            "domain_weights": w, "corrupt_lowest": min(w, key=w.get) == CORRUPT,
            "meta_loss": {"none": none["meta_loss"], "domain": dom["meta_loss"]},
            "meta_acc": {"none": none["meta_acc"], "domain": dom["meta_acc"]},
            "meta_reward_acc": {"none": none["meta_reward_acc"], "domain": dom["meta_reward_acc"]},
            "seconds_per_step": {"none": none["seconds_per_step"], "domain": dom["seconds_per_step"]},
            "history": {k: r[k]["history"] for k in r},
        }
    mean = lambda key, arm: sum(p[key][arm] for p in per_seed.values()) / len(per_seed)  # noqa: E731
    return {
        "seeds": seeds, "steps": steps, "corrupt_domain": CORRUPT, "settings": {k: v for k, v in kw.items()},
        "per_seed": per_seed,
        "mean": {key: {arm: mean(key, arm) for arm in ("none", "domain")}
                 for key in ("meta_loss", "meta_acc", "meta_reward_acc", "seconds_per_step")},
        "corrupt_lowest_all_seeds": all(p["corrupt_lowest"] for p in per_seed.values()),
        "meta_loss_better_all_seeds": all(p["meta_loss"]["domain"] < p["meta_loss"]["none"] for p in per_seed.values()),
    }


def write_outputs(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from daj.io import atomic_open, write_json

    slim = json.loads(json.dumps(result))
    for p in slim["per_seed"].values():
        p.pop("history")
    write_json(out / "results.json", slim)
    first = result["per_seed"][result["seeds"][0]]["history"]
    domains = list(first["domain"][0]["domain_weights"])
    with atomic_open(out / "domain_weights.csv") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["step", *domains])
        for r in first["domain"]:
            w.writerow([r["step"], *(r["domain_weights"][d] for d in domains)])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    for seed, p in result["per_seed"].items():
        hist = p["history"]["domain"]
        for i, d in enumerate(domains):
            ax1.plot([r["step"] for r in hist], [r["domain_weights"][d] for r in hist], color=f"C{i}",
                     label=d if seed == result["seeds"][0] else None, alpha=0.8)
        for arm, ls in (("none", "--"), ("domain", "-")):
            pts = [(r["step"], r["meta_loss"]) for r in p["history"][arm] if "meta_loss" in r]
            ax2.plot(*zip(*pts, strict=True), ls=ls, color="C3" if arm == "domain" else "C7",
                     label=arm if seed == result["seeds"][0] else None, alpha=0.8)
    ax1.set_title(f"domain weights ({CORRUPT} corrupted), {len(result['seeds'])} seeds")
    ax1.set_xlabel("lower step")
    ax1.legend(fontsize=7)
    ax2.set_title("meta loss (clean pairs)")
    ax2.set_xlabel("lower step")
    ax2.legend(fontsize=7)
    with atomic_open(out / "noisy_domain.png", "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    import tempfile

    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--objective", default="dpo", choices=["dpo", "kto", "orpo", "grpo"])
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--meta-lr", type=float, default=0.1)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("metrics/experiments/noisy_domain"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        result = run_experiment(args.seeds, args.steps, Path(tmp), objective=args.objective, lr=args.lr,
                                meta_lr=args.meta_lr, eval_every=args.eval_every, progress=True)
    write_outputs(result, args.out)
    m = result["mean"]
    for seed, p in result["per_seed"].items():
        w = ", ".join(f"{d} {v:.3f}" for d, v in p["domain_weights"].items())
        print(f"seed {seed}: weights [{w}]  meta loss none {p['meta_loss']['none']:.4f} -> domain "
              f"{p['meta_loss']['domain']:.4f}  meta acc {p['meta_acc']['none']:.3f} -> {p['meta_acc']['domain']:.3f}")
    print(f"mean meta loss none {m['meta_loss']['none']:.4f} domain {m['meta_loss']['domain']:.4f}; "
          f"corrupt lowest in all seeds: {result['corrupt_lowest_all_seeds']}; "
          f"meta loss better in all seeds: {result['meta_loss_better_all_seeds']}; wrote {args.out}")


if __name__ == "__main__":
    main()
