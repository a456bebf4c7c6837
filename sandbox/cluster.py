"""`execute` on a Ray cluster (execute.cluster): the driver fans batches of candidates out as Ray
tasks; every node judges them with its own local sandbox pool (execute.backend on that node).

    with RayPool(config, cache_dir=".cache/verdicts") as pool:  # config.cluster: auto / host:port / ray://
        verdicts = pool.check([(problem, code), ...])            # as SandboxPool.check

What stays on the driver: the verdict cache (nodes cache nothing), the progress bar and Ctrl-C
(running batches are cancelled and their sandboxes stopped; only complete verdicts were cached). A
task holds one CPU and runs one sandbox, so Ray's scheduler is the only scheduler: a node with k CPUs
judges k batches at a time. A batch lost with its node or worker is resubmitted whole and runs wherever
Ray finds a free CPU; a batch is recorded once, when its task returns, so a rerun cannot record twice.
Every node is probed at the start (backend, image, harness digest must agree), and each task returns
the cache keys it judged under: a key that differs from the driver's stops the run.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from daj.config import ExecuteConfig
from daj.errors import DajError
from sandbox.client import HarnessFault, SandboxStartError
from sandbox.inside.protocol import SANDBOX_ERROR
from sandbox.jobs import build_job, cache_key
from sandbox.pool import SandboxPool, VerdictCache, backend_identity

log = logging.getLogger(__name__)
MAX_BATCH = 32          # candidates per task at most (a lost node loses at most this much work per CPU)
BATCHES_PER_CPU = 4     # at least this many batches per CPU when there are enough candidates
TRIES = 4               # a batch whose node or worker dies is resubmitted up to TRIES - 1 times
GRACE_S = 3.0           # after Ctrl-C: seconds a cancelled batch may take to stop its sandbox itself
FIELD = "execute.cluster"


def make_batches(order: list[int], cost: list[float], cpus: int, size: int | None = None) -> list[list[int]]:
    """Candidates (`order`: heaviest first) cut into batches of about equal estimated cost, about
    BATCHES_PER_CPU per CPU and at most MAX_BATCH candidates each: a heavy candidate gets a batch of
    its own, light ones share, so that no batch of heavy ones holds the run up at the end. `size`
    fixes the number of candidates per batch instead."""
    if size:
        return [order[s:s + size] for s in range(0, len(order), size)]
    target = sum(cost[i] for i in order) / (BATCHES_PER_CPU * max(1, cpus))
    batches: list[list[int]] = []
    current: list[int] = []
    load = 0.0
    for i in order:
        if current and (load + cost[i] > target or len(current) >= MAX_BATCH):
            batches.append(current)
            current, load = [], 0.0
        current.append(i)
        load += cost[i]
    return batches + [current] if current else batches


def connect(address: str) -> bool:
    """Join the Ray cluster at `address`; False when this process is already connected to one."""
    try:
        import ray
    except ImportError:
        raise DajError("execute.cluster needs Ray: pip install -e '.[cluster]'", field=FIELD) from None
    if ray.is_initialized():
        return False
    why = unreachable(address)
    if why:  # ray.init would retry for minutes
        raise DajError(f"cannot join the Ray cluster at {address!r}: {why}", field=FIELD)
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError, ImportError) as e:
        raise DajError(f"cannot join the Ray cluster at {address!r} ({e}); start one with `ray start "
                       "--head` (auto), or give its address (host:port, or ray://host:port with "
                       "pip install 'ray[client]')", field=FIELD) from None
    return True


def unreachable(address: str, timeout: float = 5.0) -> str | None:
    """Why nothing answers at host:port (or ray://host:port); None when it does, or for auto."""
    if address == "auto":
        return None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        return f"{host}:{port} does not answer ({e})"
    return None


# --- the node side: runs in a Ray worker process ------------------------------------------------------
_NODE_POOL: dict[str, SandboxPool] = {}  # settings -> this worker's one pool


def _node_pool(config: ExecuteConfig) -> SandboxPool:
    """This worker process' pool: one sandbox (the task's one CPU), no cache (the driver keeps it); kept
    warm between batches, its sandboxes die with the process (bwrap --die-with-parent, docker's remove).
    Other settings replace it (a worker keeps one sandbox, not one per settings ever seen)."""
    key = config.model_dump_json()
    if key not in _NODE_POOL:
        for old in _NODE_POOL.values():
            old.close()
        _NODE_POOL.clear()
        _NODE_POOL[key] = SandboxPool(config.model_copy(update={"workers": 1}), progress=False)
    return _NODE_POOL[key]


def _where() -> dict:
    import ray

    return {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


def node_identity(config: ExecuteConfig) -> dict:
    """The backend this node's pool picks and what its verdicts depend on (a Ray task)."""
    pool = _node_pool(config)
    return {"backend": pool.backend, "identity": backend_identity(config, pool.backend), **_where()}


def judge_batch(config: ExecuteConfig, items: list[tuple[int, str]], *problems: dict) -> dict:
    """Verdicts of one batch (a Ray task): `items` are (index into `problems`, code)."""
    pool = _node_pool(config)
    pairs = [(problems[slot], code) for slot, code in items]
    identity = backend_identity(config, pool.backend)
    keys = [cache_key(build_job(problem, code, config), identity) for problem, code in pairs]
    future = _runner().submit(pool.check, pairs, "batch")
    try:
        while True:
            try:
                verdicts = future.result(timeout=0.2)  # a timed wait, so that a cancel gets through
                break
            except concurrent.futures.TimeoutError:
                continue
    except KeyboardInterrupt:  # ray.cancel: stop the sandbox now; the check ends with Interrupted
        for harness in list(pool.harnesses):
            harness.stop()
        concurrent.futures.wait([future], timeout=GRACE_S)
        raise
    return {"keys": keys, "verdicts": verdicts, "seconds": pool.seconds, **_where()}


_RUNNER: list[concurrent.futures.ThreadPoolExecutor] = []


def _runner() -> concurrent.futures.ThreadPoolExecutor:
    """The one thread of this worker that runs checks, for the process' life: a sandbox dies with the
    thread that started it (bwrap --die-with-parent), and the task's own thread must stay free to
    receive Ray's cancel (a KeyboardInterrupt)."""
    if not _RUNNER:
        _RUNNER.append(concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="daj-batch"))
    return _RUNNER[0]


def probe_nodes(config: ExecuteConfig) -> list[dict]:
    """node_identity on every live node that has a CPU (this also starts a warm worker on each)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=1, max_retries=TRIES - 1)(node_identity)
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= 1]
    refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=True)).remote(config)
            for node in nodes]
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as e:
        raise task_error(e) from None


# --- the driver side --------------------------------------------------------------------------------
class RayPool:
    """SandboxPool's interface (check, backend, workers, stats, cache_hits, seconds, context manager)
    over the Ray cluster of `config.cluster`."""

    def __init__(self, config: ExecuteConfig, cache_dir: str | None = None, progress: bool = True,
                 batch: int | None = None):
        if not config.cluster:
            raise DajError("RayPool needs execute.cluster (auto, host:port or ray://host:port)", field=FIELD)
        self.config = config
        self.progress = progress
        self.batch = batch
        self.owns_connection = connect(config.cluster)
        import ray

        self._ray = ray
        try:
            self._judge = ray.remote(num_cpus=1, max_retries=0)(judge_batch)
            probes = probe_nodes(config)
        except BaseException:
            self.close()
            raise
        if not probes:
            self.close()
            raise DajError(f"the Ray cluster at {config.cluster!r} has no node with a CPU for sandboxes",
                           field=FIELD)
        first = probes[0]
        for probe in probes[1:]:
            if probe["identity"] != first["identity"]:
                self.close()
                raise DajError(f"nodes judge differently: {first['node'][:12]} runs {first['identity']!r}, "
                               f"{probe['node'][:12]} runs {probe['identity']!r}; every node needs the same daj "
                               "checkout, backend and image (execute.backend, execute.docker_image)", field=FIELD)
        self.backend: str = first["backend"]
        self.identity: str = first["identity"]
        self.nodes = len(probes)
        self.workers = self.cpus()
        self.cache = VerdictCache(cache_dir)
        self.seconds: list[float | None] = []
        # SandboxPool's totals, plus how the cluster went: batches, resubmissions, batches per node
        self.stats: dict[str, Any] = {"judged": 0, "cache_hits": 0, "candidate_seconds": 0.0, SANDBOX_ERROR: 0,
                                      "batches": 0, "resubmitted": 0, "nodes": {}}

    @property
    def cache_hits(self) -> int:
        return self.stats["cache_hits"]

    def cpus(self) -> int:
        """Candidates judged at once: execute.workers when set, else the cluster's CPUs now."""
        return int(self.config.workers or max(1, self._ray.cluster_resources().get("CPU", 1)))

    def check(self, pairs: Sequence[tuple[dict, str]], desc: str = "execute") -> list[dict]:
        """Verdict fields (see sandbox.jobs.summarise) for each (problem, code), in order."""
        ray = self._ray
        jobs = [build_job(problem, code, self.config, job_id=i) for i, (problem, code) in enumerate(pairs)]
        keys = [cache_key(job, self.identity) for job in jobs]
        verdicts: list[dict | None] = [self.cache.get(k) for k in keys]
        self.seconds = [None] * len(jobs)
        todo = [i for i, v in enumerate(verdicts) if v is None]
        self.stats["cache_hits"] += len(jobs) - len(todo)
        if not todo:
            return [v for v in verdicts if v is not None]
        # estimated cost: the time limit of all its tests; long candidates first keeps every node busy
        cost = [max(1, len(job.get("tests") or ())) * job["timeout_s"] for job in jobs]
        todo.sort(key=lambda i: -cost[i])
        cpus = self.cpus()
        # batches in flight: execute.workers when set; else twice the CPUs, so that a node finishing a
        # batch finds the next one already waiting
        window = cpus if self.config.workers else 2 * cpus
        batches = make_batches(todo, cost, cpus, self.batch)
        refs: dict[int, Any] = {}  # id(problem) -> its ObjectRef: a problem's tests cross once per node

        def submit(b: int) -> Any:
            slots: dict[int, int] = {}
            items, args = [], []
            for i in batches[b]:
                problem, code = pairs[i]
                if id(problem) not in slots:
                    if id(problem) not in refs:
                        refs[id(problem)] = ray.put(problem)
                    slots[id(problem)] = len(args)
                    args.append(refs[id(problem)])
                items.append((slots[id(problem)], code))
            return self._judge.remote(self.config, items, *args)

        queue = deque((b, 1) for b in range(len(batches)))
        pending: dict[Any, tuple[int, int]] = {}
        bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=desc, unit="cand",
                   disable=not self.progress, dynamic_ncols=True)
        try:
            while queue or pending:
                while queue and len(pending) < window:
                    b, tries = queue.popleft()
                    pending[submit(b)] = (b, tries)
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                if ready:  # everything that is done, not just the first
                    ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
                for ref in ready:
                    b, tries = pending.pop(ref)
                    out = self._result(ref, b, tries, queue)
                    if out is not None:
                        self.record_batch(batches[b], out, keys, verdicts)
                        bar.update(len(batches[b]))
        except BaseException:
            bar.close()
            self._cancel(list(pending))
            raise
        bar.close()
        return [v for v in verdicts if v is not None]

    def _result(self, ref: Any, b: int, tries: int, queue: deque) -> dict | None:
        """The batch's output, or None after queueing it again because its node or worker was lost."""
        exceptions = self._ray.exceptions
        try:
            return self._ray.get(ref)
        except exceptions.RayTaskError as e:  # raised by our code on the node
            raise task_error(e) from None
        except exceptions.TaskCancelledError:
            raise KeyboardInterrupt from None
        except exceptions.RayError as e:  # the worker or the node died: nothing of the batch was kept
            if tries >= TRIES:
                raise DajError(f"batch {b} was lost {tries} times, nodes or workers died ({first_line(e)}); "
                               "nothing of it was recorded", field=FIELD) from None
            log.warning("batch %d lost (%s); resubmitting it (try %d of %d)", b, first_line(e), tries + 1, TRIES)
            self.stats["resubmitted"] += 1
            queue.appendleft((b, tries + 1))
            return None

    def record_batch(self, batch: list[int], out: dict, keys: list[str], verdicts: list[dict | None]) -> None:
        """Record the verdicts a node returned for `batch` (positions into `keys`), checking that it judged
        under the driver's cache keys; the verdict cache gets them in one transaction."""
        if out["keys"] != [keys[i] for i in batch] or len(out["verdicts"]) != len(batch):
            raise DajError(f"node {out['node']} judged under other cache keys than the driver's: every "
                           "node needs the same daj checkout, backend and image (execute.backend, "
                           "execute.docker_image)", field=FIELD)
        cached = []
        for i, verdict, seconds in zip(batch, out["verdicts"], out["seconds"], strict=True):
            if verdicts[i] is not None:  # a batch is recorded once, so this cannot happen
                raise RuntimeError(f"candidate {i} was judged twice")
            if verdict["status"] == SANDBOX_ERROR:  # recorded, never cached (as SandboxPool)
                self.stats[SANDBOX_ERROR] += 1
            else:
                cached.append((keys[i], verdict))
            verdicts[i] = verdict
            self.seconds[i] = seconds
            self.stats["judged"] += 1
            self.stats["candidate_seconds"] += seconds or 0.0
        if self.cache.store is not None:  # a batch enters the cache whole, in one transaction
            self.cache.store.put_json_many(cached)
        self.stats["batches"] += 1
        nodes = self.stats["nodes"]
        nodes[out["node"]] = nodes.get(out["node"], 0) + 1

    def _cancel(self, refs: list) -> None:
        """Stop running batches: first politely (the task's pool stops its own sandboxes), then by
        killing the worker processes (their sandboxes die with them)."""
        ray = self._ray
        for ref in refs:
            try:
                ray.cancel(ref, force=False)
            except Exception as e:  # noqa: BLE001 - finished meanwhile, or the node is gone
                log.debug("cancel: %s", e)
        deadline = time.monotonic() + GRACE_S
        left = refs
        while left and time.monotonic() < deadline:
            _, left = ray.wait(left, num_returns=len(left), timeout=0.2)
        for ref in left:
            try:
                ray.cancel(ref, force=True)
            except Exception as e:  # noqa: BLE001
                log.debug("force cancel: %s", e)

    def close(self) -> None:
        if self.owns_connection:
            import ray

            ray.shutdown()  # ends this job's workers, and with them their sandboxes
        self.owns_connection = False

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def task_error(e: Any) -> BaseException:
    """What a task's exception means here: the user's problem (DajError), the sandbox's, or a bug."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, DajError):
        return cause
    if isinstance(cause, HarnessFault | SandboxStartError):
        return DajError(f"on a cluster node: {cause}", field="execute.backend")
    return e


def first_line(e: BaseException) -> str:
    """The first line of a Ray error (its full text repeats the remote traceback)."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
