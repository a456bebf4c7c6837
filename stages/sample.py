"""sample: write data/candidates/<policy>.jsonl for every policy (or one, with --policy NAME).

Reads `policies`, the `sampling:` defaults, `seed`, `split.exclude_platforms` and `caches.sample`
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

from daj import artifacts
from daj.config import ParamsConfig
from daj.data.schema import PROBLEM_FIELDS
from daj.errors import DajError
from daj.io import read_jsonl, write_json
from daj.params import params_path
from daj.policies.sampler import sample_policy
from daj.preflight import check_policies
from daj.runlog import record

PROBLEMS, OUT_DIR, METRICS_DIR = artifacts.PROBLEMS, artifacts.CANDIDATES, artifacts.SAMPLE_METRICS


def main(config: ParamsConfig, only: str | None = None) -> None:
    policies = config.policies
    if only is not None:
        policies = [p for p in policies if p.name == only]
        if not policies:
            raise DajError(f"no policy named {only!r}", path=str(params_path()), field="policies")
    check_policies(config, str(params_path()), [p.name for p in policies])  # engines, servers, hub: now
    problems = [p for p in read_jsonl(PROBLEMS, required=PROBLEM_FIELDS)
                if p["platform"].lower() not in config.split.excluded]
    if not problems:
        raise DajError("no problems left after split.exclude_platforms", path=PROBLEMS)
    for policy in policies:
        stats, run = sample_policy(policy, problems, config.sampling, config.seed,
                                   Path(OUT_DIR) / f"{policy.name}.jsonl", config.caches.sample,
                                   where=str(params_path()))
        write_json(Path(METRICS_DIR) / f"{policy.name}.json", stats)
        record("sample", {policy.name: run})
        logging.getLogger().info("%s: %s", policy.name, {k: v for k, v in stats.items() if k != "missing_ids"})


if __name__ == "__main__":
    from stages._main import run_stage

    ap = argparse.ArgumentParser(description="sample candidates for the policies in params.yaml")
    ap.add_argument("--policy", default=None, help="sample only this policy")
    args, _settings = ap.parse_known_args()  # the policy's settings, for DVC's change detection only
    run_stage("sample", lambda config: main(config, only=args.policy))
