"""execute on a Ray cluster (sandbox/cluster.py) on a real local multi-node cluster: a head without
CPUs and two worker nodes of one CPU each (ray.cluster_utils.Cluster, one per module: it takes seconds
to start). Same verdicts as the local pool on HumanEval and on real LiveCodeBench candidates, the
attacks of test_sandbox_attacks contained on the nodes, a node killed mid-run, Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import test_sandbox_attacks as attacks
from conftest import require_shared

from daj.config import ExecuteConfig
from daj.errors import DajError
from daj.store import Store

try:
    import ray
    from ray.cluster_utils import Cluster
except ImportError:  # the optional extra; CI installs it
    if os.environ.get("CI", "").lower() == "true":
        raise
    pytest.skip("Ray is not installed (pip install -e '.[cluster]')", allow_module_level=True)

from sandbox.cluster import MAX_BATCH, RayPool, connect, make_batches  # noqa: E402
from sandbox.pool import SandboxPool  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# node death is noticed within about a second (defaults: 30 s); no dashboard, no usage stats
SYSTEM = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
          "health_check_failure_threshold": 2}
STORE = 200 << 20  # object store per node (Ray's default takes 30% of the memory per node)
SUM = {"id": "lcb/sum", "tests": {"type": "stdin", "public": [{"input": "1 2\n", "output": "3"}],
                                  "private": [{"input": "5 5\n", "output": "10"}]}}
RIGHT = "a, b = map(int, input().split())\nprint(a + b)"
WRONG = "a, b = map(int, input().split())\nprint(a - b)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CLIENT_PORT = free_port()


@pytest.fixture(scope="module")
def cluster():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                      "object_store_memory": STORE,
                                                      "ray_client_server_port": CLIENT_PORT,
                                                      "_system_config": SYSTEM})
    for _ in range(2):
        c.add_node(num_cpus=1, object_store_memory=STORE)
    ray.init(address=c.address, logging_level="WARNING")
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()


def on(cluster, **settings) -> ExecuteConfig:
    base = dict(backend="local", timeout_s=1.0, wall_factor=4.0, memory_mb=512, output_mb=8, pids_limit=64,
                sandbox_memory_mb=2048, cluster=cluster.address)
    return ExecuteConfig(**{**base, **settings})


def local(config: ExecuteConfig, pairs) -> list[dict]:
    with SandboxPool(config.model_copy(update={"cluster": None, "workers": 2}), progress=False) as pool:
        return pool.check(pairs)


def test_humaneval_verdicts_equal_the_local_pools(cluster, tmp_path):
    from daj.data.humaneval import load_humaneval_package
    from daj.policies.mutants import problem_mutants

    # the reference and two mutants (wrong answers, crashes, endless loops) of 20 problems
    pairs = [(p, m["code"]) for p in load_humaneval_package()[:20] for m in problem_mutants(p, 3, 0)]
    config = on(cluster)
    expected = local(config, pairs)
    assert {v["status"] for v in expected} >= {"pass", "wrong_answer"}
    with RayPool(config, cache_dir=str(tmp_path), progress=False) as pool:
        assert pool.backend == "local" and pool.nodes == 2 and pool.workers == 2
        assert pool.check(pairs) == expected
        assert len(pool.stats["nodes"]) == 2, pool.stats  # both nodes judged
        assert pool.stats["judged"] == len(pairs) and pool.stats["resubmitted"] == 0
        batches = pool.stats["batches"]
        # the driver keeps the cache: a second check sends nothing out
        assert pool.check(pairs) == expected
        assert pool.stats["batches"] == batches and pool.cache_hits == len(pairs)
    assert len(Store(tmp_path, "verdicts")) == len(pairs)


def test_lcb_verdicts_equal_the_local_pools_and_the_official_ones(cluster):
    require_shared("lcb", "code_generation_lite_private184")
    from daj.eval.agreement import load

    # real O1-Mini, O1-Preview and Kimi-k1.6 candidates on public and hidden tests
    subset = {"lcb/2777", "lcb/2727", "lcb/abc301_a", "lcb/abc301_c", "lcb/2791", "lcb/abc302_a"}
    triples = [t for t in load("full", 16) if t[1]["id"] in subset]
    assert len(triples) == 18
    pairs = [(problem, cand["code"]) for _, problem, cand in triples]
    config = on(cluster, timeout_s=6.0)
    expected = local(config, pairs)
    with RayPool(config, progress=False) as pool:
        assert pool.check(pairs) == expected
    official = [cand["imported_passed"] for _, _, cand in triples]
    assert [v["passed"] for v in expected] == official


# the attacks of test_sandbox_attacks that take the judging pool, run on the cluster's nodes
ATTACKS = [f for name, f in sorted(vars(attacks).items())
           if name.startswith("test_") and f.__code__.co_varnames[:f.__code__.co_argcount] == ("pool",)]


@pytest.fixture(scope="module")
def attack_pool(cluster):
    # one batch at a time, each on one node: later candidates share the sandbox of earlier ones, as in
    # the local pool the attacks were written for
    config = attacks.CFG.model_copy(update={"cluster": cluster.address, "workers": 1})
    with RayPool(config, progress=False, batch=64) as pool:
        yield pool


def test_the_attacks_are_all_listed():
    assert len(ATTACKS) >= 8, [f.__name__ for f in ATTACKS]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda f: f.__name__.removeprefix("test_"))
def test_attacks_stay_contained_on_the_nodes(attack, attack_pool):
    attack(attack_pool)


RAY_ENDPOINTS = """
import os, socket
reached = []
for host, port in {endpoints!r}:
    try:
        socket.create_connection((host, port), timeout=1).close()
        reached.append(port)
    except OSError:
        pass
for top in ("/tmp/ray", "/dev/shm"):  # Ray's sessions and sockets; its object store's memory files
    for root, dirs, files in os.walk(top):
        reached += [root] if root != "/dev/shm" else []
        reached += files
for pid in os.listdir("/proc"):
    try:
        if b"RAY_" in open(f"/proc/{{pid}}/environ", "rb").read():
            reached.append(pid)
    except OSError:
        pass
print(len(reached))
"""


def test_candidates_cannot_reach_the_cluster(cluster, attack_pool):
    """From inside a node's sandbox: no GCS, no raylet, no object store, no worker's environment."""
    host, port = cluster.address.split(":")
    endpoints = [(host, int(port)), ("127.0.0.1", int(port))]
    for node in ray.nodes():
        endpoints.append((node["NodeManagerAddress"], node["NodeManagerPort"]))
        endpoints.append((node["NodeManagerAddress"], node["ObjectManagerPort"]))
    code = RAY_ENDPOINTS.format(endpoints=endpoints)
    assert ray.nodes() and Path("/tmp/ray").is_dir()  # there is something to reach from the host
    problem = {"id": "lcb/ray", "tests": {"type": "stdin", "public": [{"input": "", "output": "0"}]}}
    verdict = attack_pool.check([(problem, code)])[0]
    assert verdict["passed"], verdict


CLIENT = """
from daj.config import ExecuteConfig
from sandbox.cluster import RayPool
problem = {{"id": "lcb/sum", "tests": {{"type": "stdin", "public": [{{"input": "1 2\\n", "output": "3"}}]}}}}
with RayPool(ExecuteConfig(backend="local", cluster={address!r}), progress=False) as pool:
    verdicts = pool.check([(problem, "print(3)"), (problem, "print(4)")])
    print(pool.nodes, [v["status"] for v in verdicts])
"""


def test_a_driver_elsewhere_joins_through_ray_client(cluster):
    """execute.cluster: ray://host:port, the address of a cluster this host is not part of."""
    code = CLIENT.format(address=f"ray://127.0.0.1:{CLIENT_PORT}")
    for _ in range(2):  # Ray's proxy sometimes fails to start the client's server (port 23000+) on a busy host
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
        if "Starting Ray client server failed" not in out.stderr:
            break
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "2 ['pass', 'wrong_answer']"


STAGE_PARAMS = """
policies:
  - name: mutants
    backend: file
    path: p.jsonl
pairs: {{lower_policies: [mutants], upper_policies: [mutants]}}
bon: {{policies: [mutants]}}
execute: {{backend: local, timeout_s: 1.0, memory_mb: 512, workers: 0, cluster: {cluster}}}
caches: {{verdicts: .cache/verdicts}}
"""


def run_stage(workdir: Path, cluster: str | None, problems: list[dict], candidates: list[dict]) -> dict:
    from daj.io import write_jsonl

    (workdir / "data" / "candidates").mkdir(parents=True)
    write_jsonl(workdir / "data" / "problems.jsonl", problems)
    write_jsonl(workdir / "data" / "candidates" / "mutants.jsonl", candidates)
    (workdir / "params.yaml").write_text(STAGE_PARAMS.format(cluster=cluster or "null"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "stages.execute"], cwd=workdir, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return {"verdicts": (workdir / "data" / "verdicts" / "mutants.jsonl").read_bytes(),
            "metrics": (workdir / "metrics" / "execute.json").read_bytes(), "log": out.stderr}


def test_the_execute_stage_on_the_cluster_writes_what_it_writes_alone(cluster, tmp_path):
    if "RayPool" not in (ROOT / "stages" / "execute.py").read_text():
        pytest.skip("stages/execute.py does not choose RayPool on execute.cluster yet")
    from daj.data.humaneval import load_humaneval_package
    from daj.policies.mutants import problem_mutants

    problems = load_humaneval_package()[:8]
    candidates = [{"problem_id": p["id"], "policy": "mutants", "index": m["index"], "code": m["code"]}
                  for p in problems for m in problem_mutants(p, 4, 0)]
    alone = run_stage(tmp_path / "alone", None, problems, candidates)
    on_cluster = run_stage(tmp_path / "cluster", cluster.address, problems, candidates)
    assert on_cluster["verdicts"] == alone["verdicts"] and on_cluster["metrics"] == alone["metrics"]


def test_batches_of_about_equal_cost():
    cost = [40.0, 30.0] + [1.0] * 100  # two heavy candidates, then light ones, as check() orders them
    batches = make_batches(list(range(102)), cost, cpus=2)
    assert batches[0] == [0] and batches[1] == [1]  # a heavy candidate alone, first
    assert sorted(i for b in batches for i in b) == list(range(102))  # each candidate once
    assert all(len(b) <= MAX_BATCH for b in batches)
    assert max(sum(cost[i] for i in b) for b in batches[2:]) <= 170 / 8
    assert make_batches(list(range(5)), [1.0] * 5, cpus=8, size=2) == [[0, 1], [2, 3], [4]]


def test_a_node_that_judges_differently_stops_the_run(cluster):
    pool = RayPool(on(cluster), progress=False)
    keys = ["k0", "k1"]
    out = {"node": "n", "keys": ["k0", "other"], "verdicts": [{}, {}], "seconds": [0.0, 0.0]}
    with pytest.raises(DajError, match="other cache keys"):
        pool.record_batch([0, 1], out, keys, [None, None])


def test_an_unreachable_address_is_named_at_once():
    code = "from sandbox.cluster import connect\nconnect('127.0.0.1:9')"
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "field 'execute.cluster'" in out.stderr and "does not answer" in out.stderr
    assert time.monotonic() - start < 30
    assert connect("127.0.0.1:9") is False  # this process is connected already: the address is not used


NAMED = "import ctypes\nctypes.CDLL(None).prctl(15, b'{name}', 0, 0, 0)  # /proc/<pid>/comm, seen by the host\n"


def named(name: str) -> list[int]:
    """The pids of processes called `name` (candidates that named themselves with NAMED)."""
    pids = []
    for pid in os.listdir("/proc"):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                pids.append(int(pid))
        except (OSError, ValueError):
            pass
    return pids


def descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        pid = int(status.split("PPid:")[1].split()[0])
        if pid == ancestor:
            return True
    return False


def slow_sum(i: int) -> str:
    return NAMED.format(name="h6slow") + f"import time\ntime.sleep(0.4)\n{RIGHT if i % 3 else WRONG}  # {i}"


def test_a_node_killed_mid_run_loses_no_verdict_and_records_none_twice(cluster, tmp_path):
    pairs = [(SUM, slow_sum(i)) for i in range(18)]
    expected = ["pass" if i % 3 else "wrong_answer" for i in range(18)]
    victim = cluster.list_all_nodes()[-1]
    raylet = victim.all_processes["raylet"][0].process.pid  # the node's workers are its children
    at_kill: list[int] = []
    with RayPool(on(cluster), cache_dir=str(tmp_path), progress=False, batch=2) as pool:

        def kill_while_it_judges() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (
                    pool.stats["batches"] >= 2 and any(descends_from(p, raylet) for p in named("h6slow"))):
                time.sleep(0.02)
            at_kill.append(pool.stats["batches"])
            cluster.remove_node(victim, allow_graceful=False)

        killer = threading.Thread(target=kill_while_it_judges)
        killer.start()
        verdicts = pool.check(pairs)
        killer.join()
        assert at_kill and at_kill[0] < 9, at_kill  # killed before the end, a candidate running on it
        assert [v["status"] for v in verdicts] == expected
        assert pool.stats["resubmitted"] >= 1, pool.stats  # the victim's batch in flight ran again
        assert pool.stats["judged"] == len(pairs) and pool.stats["batches"] == 9, pool.stats
    assert len(Store(tmp_path, "verdicts")) == len(pairs)
    cluster.add_node(num_cpus=1, object_store_memory=STORE)  # two nodes again for later tests
    cluster.wait_for_nodes()


SLEEPER = NAMED.format(name="h6sleeper") + "import time\ntime.sleep(60)"


def sleepers() -> int:
    return len(named("h6sleeper"))


def test_ctrl_c_stops_the_nodes_sandboxes_within_seconds(cluster, tmp_path):
    quick = [(SUM, f"{code}  # {i}") for i in range(2) for code in (RIGHT, WRONG)]  # four cache keys
    pairs = quick + [(SUM, SLEEPER)] * 4
    config = on(cluster, wall_factor=40.0)  # a sleeper would take 40 s to time out
    seen: list[int] = []
    sent: list[float] = []
    with RayPool(config, cache_dir=str(tmp_path), progress=False, batch=1) as pool:

        def interrupt_when_sleeping() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (pool.stats["judged"] >= 4 and sleepers() >= 2):
                time.sleep(0.1)
            seen.append(sleepers())
            sent.append(time.monotonic())
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

        threading.Thread(target=interrupt_when_sleeping, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            pool.check(pairs)
        stopped_after = time.monotonic() - sent[0]
        assert seen[0] >= 2  # the check below can see the candidates' processes
        assert stopped_after < 8, stopped_after
        deadline = time.monotonic() + 5
        while sleepers() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sleepers() == 0
    cached = Store(tmp_path, "verdicts").json_values()
    assert sorted(v["status"] for v in cached) == ["pass", "pass", "wrong_answer", "wrong_answer"]


def test_a_pool_needs_a_cluster_address():
    with pytest.raises(DajError, match="execute.cluster"):
        RayPool(ExecuteConfig(cluster=None))


def test_the_settings(cluster):
    for good in ("auto", "10.0.0.1:6379", "ray://head.example:10001"):
        assert ExecuteConfig(cluster=good).cluster == good
    for bad in ("", "ray://", "head", "http://head:1", "auto "):
        with pytest.raises(ValueError):
            ExecuteConfig(cluster=bad)
