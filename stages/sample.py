"""sample: write data/candidates/<policy>.jsonl for every policy (or one, with --policy NAME).

Reads `policies`, the `sampling:` defaults, `seed`, `split.exclude_platforms` and `sample.work_dir`
from params.yaml and data/problems.jsonl; the work is in daj.policies.sampler (resumable: an
interrupted run continues where it stopped). Writes metrics/sample/<policy>.json per policy.

dvc.yaml runs one `sample@<i>` stage per policy and puts that policy's settings in the command line
(`${item}`), so DVC reruns exactly the policies whose settings changed; this script reads them from
params.yaml and ignores those extra arguments.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from daj.data.schema import PROBLEM_FIELDS
from daj.errors import DajError
from daj.io import read_jsonl, write_json
from daj.params import Params
from daj.policies.sampler import check_policies, sample_policy

PROBLEMS = "data/problems.jsonl"
OUT_DIR = "data/candidates"
METRICS_DIR = "metrics/sample"


def main(params: Params, only: str | None = None) -> None:
    policies = check_policies(params.get_path("policies"), where=params.path)
    if only is not None:
        policies = [p for p in policies if p["name"] == only]
        if not policies:
            raise DajError(f"no policy named {only!r}", path=params.path, field="policies")
    defaults = params.get_path("sampling", {}) or {}
    seed = params.get_path("seed")
    excluded = {str(p).lower() for p in params.get_path("split.exclude_platforms", []) or []}
    work_dir = params.get_path("sample.work_dir", ".cache/sample")
    problems = [p for p in read_jsonl(PROBLEMS, required=PROBLEM_FIELDS) if p["platform"] not in excluded]
    if not problems:
        raise DajError("no problems left after split.exclude_platforms", path=PROBLEMS)
    for policy in policies:
        stats = sample_policy(policy, problems, defaults, seed, Path(OUT_DIR) / f"{policy['name']}.jsonl",
                              work_dir, where=params.path)
        write_json(Path(METRICS_DIR) / f"{policy['name']}.json", stats)
        logging.getLogger().info("%s: %s", policy["name"], {k: v for k, v in stats.items() if k != "missing_ids"})


if __name__ == "__main__":
    from stages._main import run_stage

    ap = argparse.ArgumentParser(description="sample candidates for the policies in params.yaml")
    ap.add_argument("--policy", default=None, help="sample only this policy")
    args, _settings = ap.parse_known_args()  # the policy's settings, for DVC's change detection only
    run_stage("sample", lambda params: main(params, only=args.policy))
