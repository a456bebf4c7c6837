"""execute on Ray: throughput with two one-CPU nodes against one one-CPU node, side by side in one run,
and what the driver spends per batch (what it would cost at 100 nodes).

    python benchmarks/execute_cluster.py [--problems 40] [--rounds 2] [--out f.json]

Throughput: the real LCB candidates (O1-Mini, O1-Preview, Kimi-k1.6) of the first `--problems`
problems with hidden tests (shared/data/lcb/code_generation_lite_private184), judged cold (fresh
verdict cache) by RayPool on a local cluster whose head has no CPU and whose 1 or 2 worker nodes have
one CPU each; rounds alternate 1, 2, 1, 2 nodes so that load from elsewhere hits both alike. The
verdicts of every run must be identical.
Driver cost: 400 trivial candidates (one test, `print(3)`) in batches of one on the two-node cluster:
the driver's CPU seconds (process time: submitting, waiting, recording into the verdict cache) per
batch; and the cost of one ray.wait over 6,400 pending batches (100 nodes x 32 CPUs x 2 in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from daj.config import ExecuteConfig  # noqa: E402
from daj.eval.agreement import load  # noqa: E402
from daj.io import write_json  # noqa: E402
from sandbox.cluster import RayPool  # noqa: E402


def start(nodes: int) -> Cluster:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(nodes):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
    cluster.wait_for_nodes()
    return cluster


def judge(nodes: int, pairs: list, config: ExecuteConfig, batch: int | None = None) -> dict:
    """One cold run on a fresh cluster of `nodes` one-CPU nodes (start-up not timed)."""
    cluster = start(nodes)
    try:
        with tempfile.TemporaryDirectory() as cache, \
                RayPool(config.model_copy(update={"cluster": cluster.address}), cache_dir=cache,
                        progress=False, batch=batch) as pool:
            wall, cpu = time.perf_counter(), time.process_time()
            verdicts = pool.check(pairs)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            stats = dict(pool.stats)
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {"nodes": nodes, "seconds": round(wall, 2), "candidates_per_s": round(len(pairs) / wall, 2),
            "driver_cpu_s": round(cpu, 3), "batches": stats["batches"],
            "driver_ms_per_batch": round(1000 * cpu / stats["batches"], 2),
            "candidate_seconds": round(stats["candidate_seconds"], 2),
            "batches_per_node": sorted(stats["nodes"].values()), "verdicts": verdicts}


@ray.remote(num_cpus=0)
class Pending:
    """Holds many unfinished calls, standing in for batches in flight on a big cluster."""

    async def wait(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def wait_cost(pending: int = 6400) -> dict:
    """Seconds of one ray.wait(num_returns=1, timeout=0) over `pending` unfinished refs."""
    cluster = start(1)
    try:
        holder = Pending.options(max_concurrency=pending + 10).remote()
        refs = [holder.wait.remote(120) for _ in range(pending)]
        ray.wait(refs[-1:], timeout=1)
        times = []
        for _ in range(20):
            t = time.perf_counter()
            ray.wait(list(refs), num_returns=1, timeout=0)
            times.append(time.perf_counter() - t)
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {"pending": pending, "ms_per_wait": round(1000 * statistics.median(times), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    config = ExecuteConfig(backend="local")
    pairs = [(problem, cand["code"]) for _, problem, cand in load("full", args.problems)]
    runs = []
    for _ in range(args.rounds):
        for nodes in (1, 2):
            run = judge(nodes, pairs, config)
            runs.append(run)
            print(json.dumps({k: v for k, v in run.items() if k != "verdicts"}), flush=True)
    same = all(r["verdicts"] == runs[0]["verdicts"] for r in runs)
    one = [r["seconds"] for r in runs if r["nodes"] == 1]
    two = [r["seconds"] for r in runs if r["nodes"] == 2]
    trivial = {"id": "lcb/trivial", "tests": {"type": "stdin", "public": [{"input": "", "output": "3"}]}}
    overhead = judge(2, [(trivial, f"print(3)  # {i}") for i in range(400)], config, batch=1)
    overhead.pop("verdicts")
    print(json.dumps(overhead), flush=True)
    wait = wait_cost()
    print(json.dumps(wait), flush=True)
    result = {"candidates": len(pairs), "problems": args.problems, "verdicts_identical": same,
              "runs": [{k: v for k, v in r.items() if k != "verdicts"} for r in runs],
              "median_seconds": {"1 node": statistics.median(one), "2 nodes": statistics.median(two)},
              "speedup": round(statistics.median(one) / statistics.median(two), 2),
              "driver_overhead": overhead, "ray_wait": wait, "cpus": os.cpu_count()}
    print(json.dumps({k: result[k] for k in ("candidates", "verdicts_identical", "median_seconds", "speedup")}))
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
