"""train: fine-tune the judge (LoRA) on the lower pairs, reweighted by the upper (meta) pairs.

Reads data/pairs/{lower,upper}.jsonl (and *_scored.jsonl for kto/grpo) and the base judge
`judge.model`; writes models/judge/ (PEFT adapter + tokenizer), metrics/train.json, dvclive logs
and plot data under metrics/train/, and a resumable checkpoint in models/ckpt/.
"""

from __future__ import annotations

import logging

from daj.params import Params

PAIRS = "data/pairs"
JUDGE_OUT = "models/judge"
CKPT = "models/ckpt"
METRICS = "metrics/train.json"
METRICS_DIR = "metrics/train"


def main(params: Params) -> None:

    import torch

    from daj.train.run import from_params, run, summary

    threads = int(params.get_path("train.cpu_threads", 0))
    if threads > 0 and not torch.cuda.is_available():
        torch.set_num_threads(threads)
    cfg, opts = from_params(params)
    result = run(cfg, opts, PAIRS, judge_out=JUDGE_OUT, metrics_json=METRICS, metrics_dir=METRICS_DIR,
                 ckpt_dir=CKPT)
    s = summary(cfg, result)
    logging.getLogger().info("%s/%s: %d steps, final loss %.4f, meta loss %.4f, meta acc %.3f, %.3f s/step, "
                             "peak RSS %.0f MiB", s["objective"], s["reweight"], s["steps"], s["final_loss"],
                             s["meta_loss"], s["meta_acc"], s["seconds_per_step"], s["peak_rss_mb"])


if __name__ == "__main__":
    from stages._main import run_stage

    run_stage("train", main)
