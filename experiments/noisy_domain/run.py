"""Controlled experiment: does domain reweighting find and down-weight a corrupted domain?

Training pairs come from three synthetic domains (daj.train.synthetic); in one of them ("gamma")
chosen and rejected are swapped. The meta (upper) pairs are clean. For each seed, a fresh tiny
random judge is trained with reweight=none and reweight=domain under the same settings, and we
compare the corrupted domain's weight and the judge's meta loss / accuracy.

    python -m experiments.noisy_domain.run                      # 3 seeds, full length (CPU, minutes)
    python -m experiments.noisy_domain.run --seeds 0 --steps 20 # quick look (steps = lower iterations)
    python -m experiments.noisy_domain.run --meta-lr 0.2 --meta-grad-accum 8 --steps 256 \\
        --out experiments/noisy_domain/results/paper_ratio       # the paper's lr and step ratios
    python -m experiments.noisy_domain.run --weight-param softmax  # the earlier parametrisation

Writes <out>/results.json (settings, per-seed final weights and meta metrics, the summary),
<out>/weights.csv (every seed's weight trajectory: seed, step, one column per domain), and
<out>/noisy_domain.png (weights over training for every seed; meta loss of both arms).
For instance_table the per-domain weights are the mean instance weights of each domain.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
from pathlib import Path

CORRUPT = "gamma"


def run_seed(seed: int, steps: int, workdir: Path, objective: str = "dpo", lr: float = 2e-3, meta_lr: float = 0.1,
             grad_accum: int = 2, meta_grad_accum: int = 1, weight_param: str = "paper", n_per_domain: int = 12,
             eval_every: int = 0, reweight: str = "domain", progress: bool = False) -> dict:
    """Train none and `reweight` on one seed's data and tiny model; return their summaries and histories."""
    from daj.config import TrainConfig
    from daj.models.tiny import build_tiny_model
    from daj.train.run import run, summary, timings
    from daj.train.synthetic import corpus, write_noisy_domain_data

    model_dir, pairs = workdir / f"model{seed}", workdir / f"pairs{seed}"
    if not (model_dir / "config.json").exists():
        build_tiny_model(model_dir, corpus(seed), seed=seed, vocab_size=400)
    write_noisy_domain_data(pairs, seed=seed, n_per_domain=n_per_domain, n_meta_per_domain=n_per_domain // 2,
                            corrupt=(CORRUPT,))
    cfg = TrainConfig(objective=objective, steps=steps, lr=lr, meta_lr=meta_lr, grad_accum=grad_accum,
                      meta_grad_accum=meta_grad_accum, eval_every=eval_every, weight_param=weight_param, lora_r=8,
                      lora_alpha=16, grpo_group=4)
    out = {}
    for arm in ("none", reweight):
        res = run(cfg, pairs, reweight=arm, seed=seed, model=str(model_dir), progress=progress)
        out[arm] = {"summary": {**summary(cfg, res), **timings(res)}, "history": res.history,
                    "instance_weights": res.final.get("instance_weights")}
    return out


def _domain_means(instance_weights: dict[str, float]) -> dict[str, float]:
    """Mean instance weight per domain (ids are synthetic/<split>/<domain>/<k>#...)."""
    sums: dict[str, list[float]] = {}
    for iid, w in instance_weights.items():
        sums.setdefault(iid.split("/")[2], []).append(w)
    return {d: sum(v) / len(v) for d, v in sorted(sums.items())}


def separation(w: dict[str, float]) -> dict:
    """How far the corrupted domain's weight is from the clean ones: the gap to the lowest clean
    weight, and the ratio to the clean mean (the lower loss is not renormalised, so ratios decide)."""
    clean = [v for d, v in w.items() if d != CORRUPT]
    return {"gap_to_lowest_clean": min(clean) - w[CORRUPT],
            "ratio_to_clean_mean": w[CORRUPT] / (sum(clean) / len(clean)) if sum(clean) > 0 else math.nan}


def run_experiment(seeds: list[int], steps: int, workdir: Path, **kw) -> dict:
    """All seeds, plus the acceptance checks: gamma's weight is the lowest (per seed) and the
    domain-reweighted judge has a lower meta loss than the unweighted one (per seed)."""
    per_seed = {}
    arm = kw.get("reweight", "domain")
    for seed in seeds:
        r = run_seed(seed, steps, workdir, **kw)
        none, dom = r["none"]["summary"], r[arm]["summary"]
        if arm == "domain":
            w = dom["domain_weights"]
        elif r[arm]["instance_weights"] is not None:
            w = _domain_means(r[arm]["instance_weights"])
        else:  # instance_net: no per-instance table to read back
            w = {}
        traj = [x for _, x in _trajectory(r[arm]["history"])][1:]  # after each optimizer step
        per_seed[seed] = {
            "domain_weights": w, "corrupt_lowest": bool(w) and min(w, key=w.get) == CORRUPT,
            **({"corrupt_lowest_share": sum(min(x, key=x.get) == CORRUPT for x in traj) / len(traj)} if traj else {}),
            **({"separation": separation(w)} if w else {}),
            "meta_loss": {"none": none["meta_loss"], arm: dom["meta_loss"]},
            "meta_acc": {"none": none["meta_acc"], arm: dom["meta_acc"]},
            "meta_reward_acc": {"none": none["meta_reward_acc"], arm: dom["meta_reward_acc"]},
            "seconds_per_step": {"none": none["seconds_per_step"], arm: dom["seconds_per_step"]},
            "optimizer_steps": dom["optimizer_steps"],
            "history": {k: r[k]["history"] for k in r},
        }
    mean = lambda key, arm: sum(p[key][arm] for p in per_seed.values()) / len(per_seed)  # noqa: E731
    return {
        "seeds": seeds, "steps": steps, "corrupt_domain": CORRUPT,
        "settings": {k: v for k, v in kw.items() if k != "progress"},
        "per_seed": per_seed,
        "reweight": arm,
        "mean": {key: {a: mean(key, a) for a in ("none", arm)}
                 for key in ("meta_loss", "meta_acc", "meta_reward_acc", "seconds_per_step")},
        "corrupt_lowest_seeds": sum(p["corrupt_lowest"] for p in per_seed.values()),
        "corrupt_lowest_all_seeds": all(p["corrupt_lowest"] for p in per_seed.values()),
        "meta_loss_better_seeds": sum(p["meta_loss"][arm] < p["meta_loss"]["none"] for p in per_seed.values()),
        "meta_loss_better_all_seeds": all(p["meta_loss"][arm] < p["meta_loss"]["none"] for p in per_seed.values()),
    }


def _trajectory(history: list[dict]) -> list[tuple[int, dict[str, float]]]:
    """(step, per-domain weight) per optimizer step: the domain weights, or for instance_table the
    domain means of the instance weights at that step when the history has them."""
    out = []
    for r in history:
        if "domain_weights" in r:
            out.append((r["step"], r["domain_weights"]))
    return out


def write_outputs(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from daj.io import atomic_open, write_json

    slim = json.loads(json.dumps(result))
    for p in slim["per_seed"].values():
        p.pop("history")
        p.pop("seconds_per_step")  # machine-dependent: printed, not committed
    slim["mean"].pop("seconds_per_step")
    write_json(out / "results.json", slim)
    arm, seeds, s = result["reweight"], result["seeds"], result["settings"]
    label = (f"{s.get('weight_param', 'paper')} weights, lr {s.get('lr')}, meta lr {s.get('meta_lr')}, "
             f"accum {s.get('grad_accum', 2)}/{s.get('meta_grad_accum', 1)}")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    if arm == "domain":
        domains = list(result["per_seed"][seeds[0]]["domain_weights"])
        with atomic_open(out / "weights.csv") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["seed", "step", *domains])
            for seed, p in result["per_seed"].items():
                for step, weights in _trajectory(p["history"][arm]):
                    w.writerow([seed, step, *(weights[d] for d in domains)])
        for k, (seed, p) in enumerate(result["per_seed"].items()):
            traj = _trajectory(p["history"][arm])
            for i, d in enumerate(domains):
                ax1.plot([t for t, _ in traj], [x[d] for _, x in traj], color=f"C{i}", ls=("-", "--", ":")[k % 3],
                         label=f"{d} (seed {seed})", alpha=0.85)
        ax1.set_ylabel("domain weight")
        ax1.set_title(f"domain weights, {CORRUPT} corrupted\n{label}", fontsize=9)
    else:  # instance weights: spread over training (seed 0) and the final per-domain means (all seeds)
        hist = [r for r in result["per_seed"][seeds[0]]["history"][arm] if "instance_spread" in r]
        steps = [r["step"] for r in hist]
        q = {k: [r["instance_spread"][k] for r in hist] for k in ("min", "p05", "p25", "p50", "p75", "p95", "max")}
        ax1.fill_between(steps, q["p05"], q["p95"], alpha=0.2, label="5-95%")
        ax1.fill_between(steps, q["p25"], q["p75"], alpha=0.4, label="25-75%")
        ax1.plot(steps, q["p50"], label="median")
        ax1.plot(steps, q["min"], color="k", lw=0.6, ls=":", label="min / max")
        ax1.plot(steps, q["max"], color="k", lw=0.6, ls=":")
        means = [p["domain_weights"] for p in result["per_seed"].values() if p["domain_weights"]]
        for i, d in enumerate(means[0] if means else {}):
            ax1.scatter([steps[-1] + 1] * len(means), [m[d] for m in means], color=f"C{i + 3}", s=12,
                        label=f"final mean {d}")
        ax1.set_ylabel("instance weight")
        ax1.set_title(f"{arm} weights (seed {seeds[0]}), {CORRUPT} corrupted\n{label}", fontsize=9)
    ax1.set_xlabel("lower iteration")
    ax1.legend(fontsize=6, ncol=2)
    for seed, p in result["per_seed"].items():
        for a, ls in (("none", "--"), (arm, "-")):
            pts = [(r["step"], r["meta_loss"]) for r in p["history"][a] if "meta_loss" in r]
            ax2.plot(*zip(*pts, strict=True), ls=ls, color="C3" if a == arm else "C7",
                     label=a if seed == seeds[0] else None, alpha=0.8)
    ax2.set_title("meta loss on the clean upper pairs (DPO), every seed", fontsize=9)
    ax2.set_xlabel("lower iteration")
    ax2.set_ylabel("meta loss")
    ax2.legend(fontsize=7)
    with atomic_open(out / "noisy_domain.png", "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    import tempfile

    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=120, help="lower iterations (grad_accum 2: 60 optimizer steps)")
    ap.add_argument("--objective", default="dpo", choices=["dpo", "kto", "orpo", "grpo"])
    ap.add_argument("--reweight", default="domain", choices=["domain", "instance_table", "instance_net"])
    ap.add_argument("--weight-param", default="paper", choices=["paper", "softmax"])
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--meta-lr", type=float, default=0.1)
    ap.add_argument("--grad-accum", type=int, default=2)
    ap.add_argument("--meta-grad-accum", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=10, help="in lower iterations")
    ap.add_argument("--out", type=Path, default=Path("metrics/experiments/noisy_domain"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        result = run_experiment(args.seeds, args.steps, Path(tmp), objective=args.objective, lr=args.lr,
                                meta_lr=args.meta_lr, grad_accum=args.grad_accum,
                                meta_grad_accum=args.meta_grad_accum, weight_param=args.weight_param,
                                eval_every=args.eval_every, reweight=args.reweight, progress=True)
    write_outputs(result, args.out)
    m, arm = result["mean"], args.reweight
    for seed, p in result["per_seed"].items():
        w = ", ".join(f"{d} {v:.4f}" for d, v in p["domain_weights"].items())
        sep = p.get("separation", {})
        share = p.get("corrupt_lowest_share", math.nan)
        print(f"seed {seed}: weights [{w}] lowest at {share:.0%} of steps, gap {sep.get('gap_to_lowest_clean', math.nan):.4f} ratio "
              f"{sep.get('ratio_to_clean_mean', math.nan):.3f}  meta loss none {p['meta_loss']['none']:.4f} -> {arm} "
              f"{p['meta_loss'][arm]:.4f}  meta acc {p['meta_acc']['none']:.3f} -> {p['meta_acc'][arm]:.3f}  "
              f"s/step {p['seconds_per_step'][arm]:.2f}")
    print(f"mean meta loss none {m['meta_loss']['none']:.4f} {arm} {m['meta_loss'][arm]:.4f}; "
          f"corrupt lowest in {result['corrupt_lowest_seeds']}/{len(result['seeds'])} seeds; "
          f"meta loss better in {result['meta_loss_better_seeds']}/{len(result['seeds'])}; wrote {args.out}")


if __name__ == "__main__":
    main()
