"""Plot data and figures of a training run: the evolution of the domain weights (paper fig. 5) and
of the spread of instance weights (fig. 6), plus the loss curves. CSVs are DVC plot data (x = step)."""

from __future__ import annotations

import csv
from pathlib import Path

from daj.io import atomic_open

SPREAD_KEYS = ("p05", "p25", "p50", "p75", "p95", "min", "max", "std")


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with atomic_open(path) as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def _save_png(fig, path: Path) -> None:
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")


def write_plots(history: list[dict], out_dir: str | Path, reweight: str) -> list[Path]:
    """Write losses.csv/png, and domain_weights.csv/png or instance_weights.csv/png when they apply.

    Every file in `out_dir` is step-indexed plot data (or its PNG): DVC plots the whole folder with
    x = step (a lower iteration), and a file of another shape there breaks `dvc plots show`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    written = []
    loss_keys = [k for k in ("optimizer_step", "loss", "unweighted_loss", "meta_batch_loss", "meta_loss", "meta_acc",
                             "meta_reward", "rollout_reward")
                 if any(k in r for r in history)]
    rows = [[r["step"]] + [r.get(k, "") for k in loss_keys] for r in history]
    _write_csv(out / "losses.csv", ["step", *loss_keys], rows)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for k in ("loss", "unweighted_loss", "meta_batch_loss", "meta_loss"):
        pts = [(r["step"], r[k]) for r in history if k in r]
        if pts:
            ax.plot(*zip(*pts, strict=True), label=k, marker="." if len(pts) < 30 else None)
    ax.set_xlabel("lower iteration")
    ax.set_ylabel("loss")
    ax.legend(fontsize=7)
    _save_png(fig, out / "losses.png")
    plt.close(fig)
    written += [out / "losses.csv", out / "losses.png"]

    if reweight == "domain":
        domains = list(history[0]["domain_weights"])
        rows = [[r["step"]] + [r["domain_weights"][d] for d in domains] for r in history]
        _write_csv(out / "domain_weights.csv", ["step", *domains], rows)
        fig, ax = plt.subplots(figsize=(5, 3.2))
        steps = [r["step"] for r in history]
        for i, d in enumerate(domains):
            ax.plot(steps, [row[i + 1] for row in rows], label=d)
        ax.axhline(1.0, color="grey", lw=0.5, ls="--")
        ax.set_xlabel("lower iteration")
        ax.set_ylabel("domain weight (mean 1)")
        ax.set_title("Domain weights over training")
        ax.legend(fontsize=7)
        _save_png(fig, out / "domain_weights.png")
        plt.close(fig)
        written += [out / "domain_weights.csv", out / "domain_weights.png"]

    if reweight in ("instance_table", "instance_net") and any("instance_spread" in r for r in history):
        hist = [r for r in history if "instance_spread" in r]
        rows = [[r["step"]] + [r["instance_spread"][k] for k in SPREAD_KEYS] for r in hist]
        _write_csv(out / "instance_weights.csv", ["step", *SPREAD_KEYS], rows)
        fig, ax = plt.subplots(figsize=(5, 3.2))
        steps = [r["step"] for r in hist]
        col = {k: [r["instance_spread"][k] for r in hist] for k in SPREAD_KEYS}
        ax.fill_between(steps, col["p05"], col["p95"], alpha=0.2, label="5-95%")
        ax.fill_between(steps, col["p25"], col["p75"], alpha=0.4, label="25-75%")
        ax.plot(steps, col["p50"], label="median")
        ax.set_xlabel("lower iteration")
        ax.set_ylabel("instance weight")
        ax.set_title(f"Instance weight spread ({reweight})")
        ax.legend(fontsize=7)
        _save_png(fig, out / "instance_weights.png")
        plt.close(fig)
        written += [out / "instance_weights.csv", out / "instance_weights.png"]
    return written
