"""Fast version of experiments/noisy_domain/run.py: domain reweighting (the paper's direct weights, the
default) finds the corrupted domain and improves the clean meta loss."""

from __future__ import annotations

import torch

from experiments.noisy_domain.run import CORRUPT, run_experiment

torch.set_num_threads(1)


def test_domain_reweighting_downweights_corrupted_domain(tmp_path):
    result = run_experiment([0, 1, 2], steps=24, workdir=tmp_path, n_per_domain=9)  # 12 optimizer steps x 2
    assert result["settings"].get("weight_param", "paper") == "paper"
    for seed, p in result["per_seed"].items():
        w = p["domain_weights"]
        assert min(w, key=w.get) == CORRUPT, (seed, w)
        assert p["separation"]["ratio_to_clean_mean"] < 0.6, (seed, w)  # not renormalised: ratios decide
        assert p["meta_loss"]["domain"] < p["meta_loss"]["none"], (seed, p["meta_loss"])
    assert result["corrupt_lowest_all_seeds"] and result["meta_loss_better_all_seeds"]
