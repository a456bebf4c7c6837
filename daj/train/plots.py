"""Plot data and figures of a training run: losses, the meta evaluation and the learned data weights
(the paper's figs. 5 and 6).

Every CSV is LONG: x = `step` (the lower iteration at the end of an optimizer step; 0 = before
training), `series` (a readable name: one line per value in `dvc plots show`, template daj_lines) and
the value. A series has a row only where it was measured, so nothing is drawn as 0 and series on
different x grids share a chart:

  losses.csv     step, series, value: the lower loss (weighted and unweighted) every optimizer step,
                 the meta loss on the upper batch (reweighted runs), and the meta loss on all upper
                 units at step 0, every train.eval_every iterations and the end
  meta_eval.csv  step, series, value: meta accuracy and reward accuracy (and the meta groups' and the
                 rollouts' mean reward for online GRPO)
  weights.csv    step, series, weight, written for every run: reweight=domain, one series per domain;
                 instance_*: min, p05, p25, median, p75, p95 and max of the instance weights (the whole
                 table for instance_table, the step's samples for instance_net); none: every sample at 1

PNGs of the same name say in their title what they show and which run (objective / reweight).
"""

from __future__ import annotations

from pathlib import Path

from daj.io import atomic_open, write_csv

SPREAD_KEYS = ("min", "p05", "p25", "p50", "p75", "p95", "max")
SPREAD_LABELS = {"min": "min", "p05": "5th percentile", "p25": "25th percentile", "p50": "median",
                 "p75": "75th percentile", "p95": "95th percentile", "max": "max"}
LABELS = {"loss": "lower loss (weighted)", "unweighted_loss": "lower loss (unweighted)",
          "meta_batch_loss": "meta loss (upper batch)", "meta_loss": "meta loss (all upper units)",
          "meta_acc": "meta pairs: log p(chosen) > log p(rejected)",
          "meta_reward_acc": "meta pairs: implicit reward margin > 0", "meta_reward": "meta groups' mean reward",
          "rollout_reward": "rollouts' mean reward"}
NO_REWEIGHT = "every sample (reweight none)"


def _save_png(fig, path: Path) -> None:
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")


def _long(rows: list[dict], keys: tuple[str, ...]) -> list[list]:
    """[step, series label, value] for every row and key it holds (a key absent from a row: no row)."""
    return [[r["step"], LABELS[k], r[k]] for k in keys for r in rows if r.get(k) is not None]


def weight_rows(history: list[dict], reweight: str) -> list[list]:
    """[step, series, weight] rows of the learned data weights (see the module docstring)."""
    rows: list[list] = []
    for r in history:
        if "domain_weights" in r:
            rows += [[r["step"], d, w] for d, w in r["domain_weights"].items()]
        elif "instance_spread" in r:
            rows += [[r["step"], SPREAD_LABELS[k], r["instance_spread"][k]] for k in SPREAD_KEYS]
    if reweight == "none":
        rows = [[r["step"], NO_REWEIGHT, 1.0] for r in history]
    return sorted(rows, key=lambda row: (str(row[1]), row[0]))


def write_plots(history: list[dict], out_dir: str | Path, objective: str, reweight: str) -> list[Path]:
    """Write the CSVs and PNGs of this run into `out_dir`; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    run = f"{objective} / reweight={reweight}"
    trained = [r for r in history if r["optimizer_step"] > 0]
    evals = [r for r in history if "meta_loss" in r]
    losses = _long(trained, ("loss", "unweighted_loss", "meta_batch_loss")) + _long(evals, ("meta_loss",))
    meta = _long(evals, ("meta_acc", "meta_reward_acc", "meta_reward")) + _long(trained, ("rollout_reward",))
    weights = weight_rows(history, reweight)
    files = {"losses": (["step", "series", "value"], losses, "loss"),
             "meta_eval": (["step", "series", "value"], meta, "accuracy / reward"),
             "weights": (["step", "series", "weight"], weights,
                         "instance weight" if reweight.startswith("instance") else "domain weight")}
    which = {"instance_table": "Instance weights (all instances)",
             "instance_net": "Instance weights (the step's samples)"}.get(reweight, "Domain weights")
    titles = {"losses": f"Losses: {run}", "meta_eval": f"Meta evaluation: {run}", "weights": f"{which}: {run}"}
    written: list[Path] = []
    for name, (header, rows, ylabel) in files.items():
        write_csv(out / f"{name}.csv", [dict(zip(header, row, strict=True)) for row in rows], header)
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for series in dict.fromkeys(row[1] for row in rows):
            points = [(row[0], row[2]) for row in rows if row[1] == series]
            ax.plot([x for x, _ in points], [y for _, y in points], marker="o" if len(points) < 12 else None,
                    ms=3, label=series)
        ax.set(title=titles[name], xlabel="lower iteration", ylabel=ylabel)
        if rows:
            ax.legend(fontsize=7)
        _save_png(fig, out / f"{name}.png")
        plt.close(fig)
        written += [out / f"{name}.csv", out / f"{name}.png"]
    return written
