"""Check many candidates: a pool of sandboxes (one per core), a verdict cache, a progress bar.

    pool = SandboxPool(SandboxConfig(...))
    verdicts = pool.check([(problem, code), ...])   # one dict per pair, in order
    pool.close()
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from tqdm import tqdm

from daj.errors import DajError
from daj.store import Store
from sandbox.config import SandboxConfig
from sandbox.jobs import build_job, cache_key, summarise
from sandbox.server import HarnessFault, HarnessServer, Interrupted, SandboxStartError

log = logging.getLogger(__name__)


def choose_backend(config: SandboxConfig, docker_probe: Callable[[SandboxConfig], str | None] | None = None) -> str:
    """"local" or "docker": `auto` takes docker when a daemon answers and execute.docker_image exists,
    local otherwise (`docker_probe(config)` says why docker cannot run, None when it can)."""
    if config.backend in ("local", "docker"):
        return config.backend
    if config.backend != "auto":
        raise DajError(f"unknown backend {config.backend!r}; expected auto, local or docker",
                       field="execute.backend")
    if docker_probe is None:
        from sandbox.docker_backend import docker_ready as docker_probe
    why = docker_probe(config)
    if why is not None:
        log.info("execute.backend auto: local sandbox (%s)", why)
    return "docker" if why is None else "local"


def backend_identity(config: SandboxConfig, backend: str) -> str:
    """What a verdict depends on besides its job: the backend, the harness files it runs (a harness
    change never reuses old verdicts) and, for docker, the image."""
    from sandbox.docker_backend import backend_identity as docker_identity
    from sandbox.docker_backend import harness_digest

    return docker_identity(config) if backend == "docker" else f"local:{harness_digest()[:16]}"


def make_server(config: SandboxConfig, backend: str) -> HarnessServer:
    if backend == "docker":
        from sandbox.docker_backend import docker_server

        return docker_server(config)
    from sandbox.local import local_server

    return local_server(config)


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
    """A lazily started pool of harness servers plus the verdict cache."""

    def __init__(self, config: SandboxConfig, progress: bool = True, backend: str | None = None):
        self.config = config
        self.backend = backend or choose_backend(config)
        self.cache = VerdictCache(config.cache_dir)
        self.progress = progress
        self.servers: list[HarnessServer] = []
        self.cache_hits = 0
        # One executor for the SandboxPool's life: bwrap --die-with-parent follows the *thread* that
        # started it, so servers restarted by a worker thread must not outlive that thread.
        self.executor: ThreadPoolExecutor | None = None

    def _ensure_servers(self, n: int) -> queue.Queue:
        try:
            while len(self.servers) < n:
                self.servers.append(make_server(self.config, self.backend))
                if len(self.servers) == 1:
                    self._report(self.servers[0])
        except SandboxStartError as e:
            self.close()
            raise DajError(str(e), field="execute.backend") from None
        pool: queue.Queue = queue.Queue()
        for server in self.servers[:n]:
            pool.put(server)
        return pool

    def _report(self, server: HarnessServer) -> None:
        """What the sandbox actually enforces, from the harness' own hello line and the cgroups made."""
        hello = server.hello
        cgroup = getattr(server.channel, "cgroup", None)
        limits = [d.parent.parent.name for d in cgroup.dirs] if cgroup and cgroup.dirs else []
        log.info("sandbox %s: pid namespace %s, seccomp %s, trusted processes dumpable %s, /dev %s, "
                 "cgroup limits %s", self.backend, "own" if hello.get("own_pid_ns") else "shared",
                 "on" if hello.get("seccomp") else "OFF", "yes" if hello.get("dumpable") else "no",
                 "writable" if hello.get("dev_writable") else "read-only",
                 ", ".join(limits) if limits else ("none (rlimits only)" if self.backend == "local" else
                                                   "by the backend"))
        if self.config.seccomp and not hello.get("seccomp"):
            log.warning("execute.seccomp is true but the seccomp filter did not load (pyseccomp/libseccomp "
                        "missing?): candidates can signal the sandbox's own processes")

    def check(self, pairs: Sequence[tuple[dict, str]], desc: str = "execute") -> list[dict]:
        """Verdict fields (see sandbox.jobs.summarise) for each (problem, code), in order."""
        jobs = [build_job(problem, code, self.config, job_id=i) for i, (problem, code) in enumerate(pairs)]
        identity = backend_identity(self.config, self.backend)
        keys = [cache_key(job, identity) for job in jobs]
        verdicts: list[dict | None] = [self.cache.get(k) for k in keys]
        todo = [i for i, v in enumerate(verdicts) if v is None]
        self.cache_hits += len(jobs) - len(todo)
        if todo:
            workers = min(self.config.n_workers(), len(todo))
            pool = self._ensure_servers(workers)
            lock = threading.Lock()
            bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=desc, unit="cand",
                       disable=not self.progress, dynamic_ncols=True)

            stop = threading.Event()

            def work(i: int) -> None:
                if stop.is_set():
                    return
                server = pool.get()
                try:
                    result = server.run(jobs[i])
                finally:
                    pool.put(server)
                if stop.is_set():  # a verdict finished while stopping may come from a killed server
                    return
                verdict = summarise(jobs[i], result)
                self.cache.put(keys[i], verdict)
                verdicts[i] = verdict
                with lock:
                    bar.update(1)

            # long candidates first keeps the pool busy to the end
            todo.sort(key=lambda i: -len(jobs[i].get("tests") or ()) * jobs[i]["timeout_s"])
            if self.executor is None:
                self.executor = ThreadPoolExecutor(max_workers=self.config.n_workers())
            futures = [self.executor.submit(work, i) for i in todo]
            try:
                for f in futures:
                    f.result()
            except BaseException as e:
                # Ctrl-C or a harness fault: stop every server now; nothing judged from here on is kept
                stop.set()
                for f in futures:
                    f.cancel()
                for server in self.servers:
                    server.stop()
                self.executor.shutdown(wait=True, cancel_futures=True)
                self.executor = None
                bar.close()
                self._discard_servers()
                if isinstance(e, Interrupted):
                    raise KeyboardInterrupt from None
                if isinstance(e, HarnessFault):
                    raise DajError(f"{e} (see the log above)", field="execute.backend") from None
                if isinstance(e, SandboxStartError):
                    raise DajError(str(e), field="execute.backend") from None
                raise
            bar.close()
        return [v for v in verdicts if v is not None]

    def _discard_servers(self) -> None:
        for server in self.servers:
            try:
                server.close()
            except Exception as e:  # noqa: BLE001
                log.warning("closing a sandbox server: %s", e)
        self.servers = []

    def close(self) -> None:
        for server in self.servers:
            server.close()
        self.servers = []
        if self.executor is not None:
            self.executor.shutdown()
            self.executor = None

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
