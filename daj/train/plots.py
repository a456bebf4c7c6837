"""Plot data and figures of a training run: losses, the meta evaluation, the domain weights (paper
fig. 5) and the spread of instance weights (fig. 6).

Every CSV has x = `step` (the lower iteration at the end of an optimizer step; 0 = before training)
and one named column per y series, and every cell of it is filled: a series is only put in a file
whose rows all have it, so DVC never draws an empty cell as 0. Rows on another x grid go to their
own file:

  losses.csv           every optimizer step: loss (weighted), unweighted_loss, and when present
                       meta_batch_loss (the upper level's batch), hypergrad_norm, rollout_reward
  meta_eval.csv        step 0, every train.eval_every iterations and the end: meta_loss, meta_acc,
                       meta_reward_acc (and meta_reward for online GRPO)
  domain_weights.csv   reweight=domain, step 0 and every optimizer step: one column per domain
  instance_weights.csv reweight=instance_*: min, p05, p25, p50, p75, p95, max of the instance weights
                       (the whole table for instance_table, the last step's samples for instance_net)

PNGs of the same name say in their title what they show and which run (objective / reweight).
"""

from __future__ import annotations

import csv
from pathlib import Path

from daj.io import atomic_open

SPREAD_KEYS = ("min", "p05", "p25", "p50", "p75", "p95", "max")
LOSS_KEYS = ("loss", "unweighted_loss", "meta_batch_loss", "hypergrad_norm", "rollout_reward")
EVAL_KEYS = ("meta_loss", "meta_acc", "meta_reward_acc", "meta_reward")
LABELS = {"loss": "lower loss (weighted)", "unweighted_loss": "lower loss (unweighted)",
          "meta_batch_loss": "meta loss (upper batch)", "meta_loss": "meta loss (all upper units)",
          "meta_acc": "meta pairs: log p(chosen) > log p(rejected)",
          "meta_reward_acc": "meta pairs: implicit reward margin > 0", "meta_reward": "meta groups' mean reward",
          "rollout_reward": "rollouts' mean reward"}


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with atomic_open(path) as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def _save_png(fig, path: Path) -> None:
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")


def _table(history: list[dict], keys: tuple[str, ...], rows_with: str) -> tuple[list[str], list[dict]]:
    """The rows that have `rows_with`, and the keys present in every one of them (no empty cells)."""
    rows = [r for r in history if rows_with in r]
    return [k for k in keys if rows and all(k in r for r in rows)], rows


def write_plots(history: list[dict], out_dir: str | Path, objective: str, reweight: str) -> list[Path]:
    """Write the CSVs (and PNGs) that apply to this run into `out_dir`; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    run = f"{objective} / reweight={reweight}"
    written: list[Path] = []

    def save(name: str, header: list[str], rows: list[list], fig) -> None:
        _write_csv(out / f"{name}.csv", header, rows)
        _save_png(fig, out / f"{name}.png")
        plt.close(fig)
        written.extend([out / f"{name}.csv", out / f"{name}.png"])

    trained = [r for r in history if r["optimizer_step"] > 0]
    loss_keys, _ = _table(trained, LOSS_KEYS, "loss")
    eval_keys, evals = _table(history, EVAL_KEYS, "meta_loss")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    steps = [r["step"] for r in trained]
    for k in ("loss", "unweighted_loss", "meta_batch_loss"):
        if k in loss_keys:
            ax1.plot(steps, [r[k] for r in trained], label=LABELS[k])
    ax1.plot([r["step"] for r in evals], [r["meta_loss"] for r in evals], marker="o", ms=3, label=LABELS["meta_loss"])
    ax1.set(title=f"Losses: {run}", xlabel="lower iteration", ylabel="loss")
    ax1.legend(fontsize=7)
    for k in ("meta_acc", "meta_reward_acc", "meta_reward"):
        if k in eval_keys:
            ax2.plot([r["step"] for r in evals], [r[k] for r in evals], marker="o", ms=3, label=LABELS[k])
    if "rollout_reward" in loss_keys:
        ax2.plot(steps, [r["rollout_reward"] for r in trained], label=LABELS["rollout_reward"])
    ax2.set(title=f"Meta evaluation: {run}", xlabel="lower iteration", ylabel="accuracy / reward")
    ax2.legend(fontsize=7)
    _write_csv(out / "meta_eval.csv", ["step", *eval_keys], [[r["step"]] + [r[k] for k in eval_keys] for r in evals])
    written.append(out / "meta_eval.csv")
    save("losses", ["step", *loss_keys], [[r["step"]] + [r[k] for k in loss_keys] for r in trained], fig)

    weighted = [r for r in history if "domain_weights" in r]
    if weighted:
        domains = list(weighted[0]["domain_weights"])
        rows = [[r["step"]] + [r["domain_weights"][d] for d in domains] for r in weighted]
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for i, d in enumerate(domains):
            ax.plot([row[0] for row in rows], [row[i + 1] for row in rows], label=d)
        ax.axhline(rows[0][1], color="grey", lw=0.5, ls="--")
        ax.set(title=f"Domain weights: {run}", xlabel="lower iteration", ylabel="domain weight")
        ax.legend(fontsize=7)
        save("domain_weights", ["step", *domains], rows, fig)

    spread = [r for r in history if "instance_spread" in r]
    if spread:
        rows = [[r["step"]] + [r["instance_spread"][k] for k in SPREAD_KEYS] for r in spread]
        col = {k: [r["instance_spread"][k] for r in spread] for k in SPREAD_KEYS}
        x = [r["step"] for r in spread]
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.fill_between(x, col["p05"], col["p95"], alpha=0.2, label="5-95%")
        ax.fill_between(x, col["p25"], col["p75"], alpha=0.4, label="25-75%")
        ax.plot(x, col["p50"], label="median")
        ax.plot(x, col["min"], color="k", lw=0.7, ls=":", label="min / max")
        ax.plot(x, col["max"], color="k", lw=0.7, ls=":")
        what = "all instances" if reweight == "instance_table" else "the step's samples"
        ax.set(title=f"Instance weights ({what}): {run}", xlabel="lower iteration", ylabel="instance weight")
        ax.legend(fontsize=7)
        save("instance_weights", ["step", *SPREAD_KEYS], rows, fig)
    return written
