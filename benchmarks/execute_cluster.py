"""execute on Ray: throughput with two one-CPU nodes against one one-CPU node, side by side in one run,
and what the driver spends per batch (what it would cost at 100 nodes).

    python benchmarks/execute_cluster.py [--problems 20] [--lcb-rounds 3] [--sleep-rounds 2] [--out f.json]

Throughput: the real LCB candidates (O1-Mini, O1-Preview, Kimi-k1.6) of the first `--problems`
problems with hidden tests (shared/data/lcb/code_generation_lite_private184), judged cold (fresh
verdict cache) by RayPool on a local cluster whose head has no CPU and whose 1 or 2 worker nodes have
one CPU each; next to it, the control: the local SandboxPool with 1 and 2 workers (what this machine
itself gains from a second sandbox). Each round runs the four in a rotated order, so that load from
elsewhere hits all alike; medians over rounds. The verdicts of every run must be identical.
Fan-out: 40 candidates that wait 0.5 s (no CPU), 1 node against 2: on a shared 2-core machine the
LCB workload measures the cores, this one measures the distribution itself.
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
from sandbox.pool import SandboxPool  # noqa: E402


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


def judge_locally(workers: int, pairs: list, config: ExecuteConfig) -> dict:
    """The control: one cold run of the local pool with `workers` sandboxes."""
    with SandboxPool(config.model_copy(update={"workers": workers}), progress=False) as pool:
        pool.check(pairs[:1])  # start the sandboxes outside the timing, as the cluster's probe does
        pool.check([(p, c + "\n") for p, c in pairs[:workers]])
        wall = time.perf_counter()
        verdicts = pool.check(pairs)
        wall = time.perf_counter() - wall
    return {"local_workers": workers, "seconds": round(wall, 2), "candidates_per_s": round(len(pairs) / wall, 2),
            "candidate_seconds": round(pool.stats["candidate_seconds"], 2), "verdicts": verdicts}


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


def side_by_side(pairs: list, config: ExecuteConfig, rounds: int, local: bool) -> dict:
    """Rounds of ray 1 node, ray 2 nodes (and the local pool with 1 and 2 workers), rotated order."""
    setups = [("ray", 1), ("local", 1), ("ray", 2), ("local", 2)] if local else [("ray", 1), ("ray", 2)]
    runs = []
    for r in range(rounds):
        for kind, n in setups[r % len(setups):] + setups[:r % len(setups)]:
            run = judge(n, pairs, config) if kind == "ray" else judge_locally(n, pairs, config)
            run["setup"] = f"{kind} {n}"
            runs.append(run)
            print(json.dumps({k: v for k, v in run.items() if k != "verdicts"}), flush=True)
    median = {f"{k} {n}": statistics.median(r["seconds"] for r in runs if r["setup"] == f"{k} {n}")
              for k, n in setups}
    result = {"candidates": len(pairs), "verdicts_identical": all(r["verdicts"] == runs[0]["verdicts"] for r in runs),
              "median_seconds": median, "speedup_ray_2_over_1_node": round(median["ray 1"] / median["ray 2"], 2)}
    if local:
        result["speedup_local_2_over_1_worker"] = round(median["local 1"] / median["local 2"], 2)
    print(json.dumps(result), flush=True)
    result["runs"] = [{k: v for k, v in r.items() if k != "verdicts"} for r in runs]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=20)
    parser.add_argument("--lcb-rounds", type=int, default=3)
    parser.add_argument("--sleep-rounds", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    config = ExecuteConfig(backend="local")
    result: dict = {"cpus": os.cpu_count()}
    if args.lcb_rounds:
        pairs = [(problem, cand["code"]) for _, problem, cand in load("full", args.problems)]
        result["lcb"] = side_by_side(pairs, config, args.lcb_rounds, local=True)
    if args.sleep_rounds:
        # a node's own CPU, simulated: candidates that wait instead of computing, so that two nodes on a
        # shared 2-core machine do not compete for cores; what is left is the fan-out itself
        waiting = {"id": "lcb/wait", "tests": {"type": "stdin", "public": [{"input": "", "output": "3"}]}}
        pairs = [(waiting, f"import time\ntime.sleep(0.5)\nprint(3)  # {i}") for i in range(40)]
        result["waiting"] = side_by_side(pairs, config, args.sleep_rounds, local=False)
    trivial = {"id": "lcb/trivial", "tests": {"type": "stdin", "public": [{"input": "", "output": "3"}]}}
    overhead = judge(2, [(trivial, f"print(3)  # {i}") for i in range(400)], config, batch=1)
    overhead.pop("verdicts")
    print(json.dumps(overhead), flush=True)
    result["driver_overhead"] = overhead
    result["ray_wait"] = wait_cost()
    print(json.dumps(result["ray_wait"]), flush=True)
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
