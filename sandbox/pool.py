"""Check many candidates: a pool of sandboxes (one per worker), a verdict cache, a progress bar.

    with SandboxPool(config, cache_dir=".cache/verdicts") as pool:   # config: daj.config.ExecuteConfig
        verdicts = pool.check([(problem, code), ...], desc="policy")  # one dict per pair, in order

A verdict holds results only (sandbox.jobs.summarise); how long each candidate took is in
`pool.seconds` (the last check, None for a cache hit) and the totals in `pool.stats`.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from tqdm import tqdm

from daj.config import ExecuteConfig
from daj.errors import DajError
from daj.store import Store
from sandbox.client import Client, HarnessFault, Interrupted, SandboxStartError
from sandbox.inside.protocol import SANDBOX_ERROR
from sandbox.jobs import build_job, cache_key, harness_digest, sandbox_error, summarise

log = logging.getLogger(__name__)


def n_workers(config: ExecuteConfig) -> int:
    """Parallel sandboxes: execute.workers, or one per core when it is 0."""
    return config.workers or os.cpu_count() or 1


def choose_backend(config: ExecuteConfig,
                   docker_probe: Callable[[ExecuteConfig], str | None] | None = None) -> str:
    """"local" or "docker": `auto` takes docker when a daemon answers and execute.docker_image exists,
    local otherwise (`docker_probe(config)` says why docker cannot run, None when it can)."""
    if config.backend != "auto":
        return config.backend
    if docker_probe is None:
        from sandbox.docker_backend import docker_ready as docker_probe
    why = docker_probe(config)
    if why is not None:
        log.info("execute.backend auto: local sandbox (%s)", why)
    return "docker" if why is None else "local"


def backend_identity(config: ExecuteConfig, backend: str) -> str:
    """What a verdict depends on besides its job: the backend, the harness files it runs (a harness
    change never reuses old verdicts) and, for docker, the image."""
    if backend == "docker":
        from sandbox.docker_backend import docker_identity

        return docker_identity(config)
    return f"local:{harness_digest()[:16]}"


def start_harness(config: ExecuteConfig, backend: str) -> Client:
    """A started Client of one sandbox of `backend`."""
    if backend == "docker":
        from sandbox.docker_backend import docker_harness

        return docker_harness(config)
    from sandbox.local import local_harness

    return local_harness(config)


class VerdictCache:
    """key -> verdict in `root`/verdicts.sqlite (the pipeline's one store, daj.store); no root, no cache."""

    def __init__(self, root: str | os.PathLike | None):
        self.store = Store(root, "verdicts") if root else None

    def get(self, key: str) -> dict | None:
        value = self.store.get_json(key) if self.store is not None else None
        return value if isinstance(value, dict) else None

    def put(self, key: str, verdict: dict) -> None:
        if self.store is not None:
            self.store.put_json(key, verdict)


class SandboxPool:
    """A lazily started pool of sandboxes (harness clients) plus the verdict cache."""

    def __init__(self, config: ExecuteConfig, cache_dir: str | None = None, progress: bool = True,
                 backend: str | None = None):
        self.config = config
        self.backend = backend or choose_backend(config)
        self.workers = n_workers(config)
        self.cache = VerdictCache(cache_dir)
        self.progress = progress
        self.harnesses: list[Client] = []
        self.seconds: list[float | None] = []
        self.stats = {"judged": 0, "cache_hits": 0, "candidate_seconds": 0.0, SANDBOX_ERROR: 0}
        # One executor for the pool's life: bwrap --die-with-parent follows the *thread* that
        # started it, so sandboxes restarted by a worker thread must not outlive that thread.
        self.executor: ThreadPoolExecutor | None = None

    @property
    def cache_hits(self) -> int:
        return self.stats["cache_hits"]

    def _ready(self, n: int) -> queue.Queue:
        try:
            while len(self.harnesses) < n:
                self.harnesses.append(start_harness(self.config, self.backend))
                if len(self.harnesses) == 1:
                    self._report(self.harnesses[0])
        except SandboxStartError as e:
            self.close()
            raise DajError(str(e), field="execute.backend") from None
        idle: queue.Queue = queue.Queue()
        for harness in self.harnesses[:n]:
            idle.put(harness)
        return idle

    def _report(self, harness: Client) -> None:
        """What the sandbox actually enforces, from the harness' own hello line and the cgroups made."""
        hello = harness.hello
        cgroup = getattr(harness.channel, "cgroup", None)
        limits = [d.parent.parent.name for d in cgroup.dirs] if cgroup and cgroup.dirs else []
        log.info("sandbox %s: pid namespace %s, seccomp %s, trusted processes dumpable %s, /dev %s, "
                 "cgroup limits %s, candidates contained by %s", self.backend,
                 "own" if hello.get("own_pid_ns") else "shared", "on" if hello.get("seccomp") else "OFF",
                 "yes" if hello.get("dumpable") else "no",
                 "writable" if hello.get("dev_writable") else "read-only",
                 ", ".join(limits) if limits else ("none (rlimits only)" if self.backend == "local" else
                                                   "by the backend"), hello.get("containment", "?"))
        if self.config.seccomp and not hello.get("seccomp"):
            log.warning("execute.seccomp is true but the seccomp filter did not load (pyseccomp/libseccomp "
                        "missing?): candidates can signal the sandbox's own processes")

    def check(self, pairs: Sequence[tuple[dict, str]], desc: str = "execute") -> list[dict]:
        """Verdict fields (see sandbox.jobs.summarise) for each (problem, code), in order."""
        jobs = [build_job(problem, code, self.config, job_id=i) for i, (problem, code) in enumerate(pairs)]
        identity = backend_identity(self.config, self.backend)
        keys = [cache_key(job, identity) for job in jobs]
        verdicts: list[dict | None] = [self.cache.get(k) for k in keys]
        self.seconds = [None] * len(jobs)
        todo = [i for i, v in enumerate(verdicts) if v is None]
        self.stats["cache_hits"] += len(jobs) - len(todo)
        if todo:
            self._judge(jobs, keys, todo, verdicts, pairs, desc)
        return [v for v in verdicts if v is not None]

    def _judge(self, jobs, keys, todo, verdicts, pairs, desc) -> None:
        workers = min(self.workers, len(todo))
        idle = self._ready(workers)
        lock = threading.Lock()
        bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=desc, unit="cand",
                   disable=not self.progress, dynamic_ncols=True)
        stop = threading.Event()

        def work(i: int) -> None:
            if stop.is_set():
                return
            harness = idle.get()
            try:
                result = harness.run(jobs[i])
                verdict = summarise(jobs[i], result)
            except HarnessFault as e:
                # the candidate broke the harness on every retry: a recorded failure, never cached
                result, verdict = {}, sandbox_error(jobs[i], str(e))
                log.warning("%s: candidate %d (problem %s): sandbox_error: %s", desc, i,
                            pairs[i][0].get("id"), e)
            finally:
                idle.put(harness)
            if stop.is_set():  # a verdict finished while stopping may come from a killed server
                return
            with lock:
                if verdict["status"] == SANDBOX_ERROR:
                    self.stats[SANDBOX_ERROR] += 1
                else:
                    self.cache.put(keys[i], verdict)
                self.seconds[i] = float(result.get("seconds") or 0.0)
                self.stats["judged"] += 1
                self.stats["candidate_seconds"] += self.seconds[i]
                verdicts[i] = verdict
                bar.update(1)

        # long candidates first keeps the pool busy to the end
        todo = sorted(todo, key=lambda i: -len(jobs[i].get("tests") or ()) * jobs[i]["timeout_s"])
        if self.executor is None:
            self.executor = ThreadPoolExecutor(max_workers=self.workers)
        futures = [self.executor.submit(work, i) for i in todo]
        try:
            for f in futures:
                f.result()
        except BaseException as e:
            # Ctrl-C or a sandbox that cannot start: stop every sandbox now; nothing judged from here on
            stop.set()
            for f in futures:
                f.cancel()
            for harness in self.harnesses:
                harness.stop()
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None
            bar.close()
            self._discard()
            if isinstance(e, Interrupted):
                raise KeyboardInterrupt from None
            if isinstance(e, SandboxStartError):
                raise DajError(str(e), field="execute.backend") from None
            raise
        bar.close()

    def _discard(self) -> None:
        for harness in self.harnesses:
            try:
                harness.close()
            except Exception as e:  # noqa: BLE001
                log.warning("closing a sandbox: %s", e)
        self.harnesses = []

    def close(self) -> None:
        for harness in self.harnesses:
            harness.close()
        self.harnesses = []
        if self.executor is not None:
            self.executor.shutdown()
            self.executor = None

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
