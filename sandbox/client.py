"""The host side of the harness protocol: a client of one long-lived harness server behind a channel.

A backend (local bwrap, docker) supplies a Channel (bytes in, bytes out); the Client sends JSON job
lines, reads JSON result lines with a deadline (the host side's one line reader, bounded), and
replaces the server when it dies, hangs or asks to be replaced. A server that dies or hangs is an
infrastructure fault until it repeats: the job is rerun on a fresh server (`retries` times) and only
a failure that repeats every time is recorded against the candidate. A result the harness marks as a
`fault` (its own error, not the candidate's) is retried the same way and never becomes a verdict;
HarnessFault says it repeated on every try.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from sandbox.inside.protocol import LOAD_SLACK, MAX_LINE, STATUSES, BadMessage, decode_object, encode

log = logging.getLogger(__name__)
START_TIMEOUT_S = 60.0


class SandboxStartError(RuntimeError):
    """The isolation could not be started (bwrap missing or refused, docker image unusable)."""


class Interrupted(RuntimeError):
    """The run was stopped (Ctrl-C): no verdict for this job."""


class HarnessFault(RuntimeError):
    """The harness failed on a job (not the candidate's doing), on every try."""


class Channel(Protocol):
    """Bytes to and from one harness server."""

    def send(self, data: bytes) -> None: ...
    def read(self, timeout: float) -> bytes | None: ...  # some of the server's stdout; None: EOF
    def kill(self) -> None: ...                          # stop the server now (any thread)
    def close(self) -> None: ...
    def describe_failure(self) -> str: ...


class LineReader:
    """JSON lines from a channel, each bounded in size."""

    def __init__(self, channel: Channel, limit: int = MAX_LINE):
        self.channel, self.limit, self.buf = channel, limit, b""

    def line(self, timeout: float) -> bytes | None:
        """The next line; None at EOF, at the deadline or past the size limit."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or len(self.buf) > self.limit:
                return None
            chunk = self.channel.read(remaining)
            if chunk is None:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def message(self, timeout: float) -> dict | None:
        """The next line as a JSON object; None for anything else."""
        line = self.line(timeout)
        if line is None:
            return None
        try:
            return decode_object(line, self.limit)
        except BadMessage:
            return None


def job_budget(job: dict) -> float:
    """Seconds the host waits for one result: the harness' own deadlines (backstops extended by a
    loaded machine's CPU waits included) plus a margin. Only a hung harness gets there."""
    if job["kind"] == "unittest":
        return float(job["timeout_s"]) + 30.0
    n = max(1, len(job.get("tests") or []))
    per = float(job["timeout_s"]) * float(job.get("wall_factor", 2.0)) * (1 + LOAD_SLACK)
    return per * (n + 2) + 30.0


def valid_result(result: object, job: dict) -> bool:
    """A well-formed result line for this job."""
    if not isinstance(result, dict) or result.get("id") != job.get("id"):
        return False
    outcomes = result.get("outcomes")
    if not isinstance(outcomes, list) or not all(o in STATUSES for o in outcomes):
        return False
    names = result.get("names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        return False
    return isinstance(result.get("error", ""), str) and isinstance(result.get("seconds", 0.0), int | float)


class Client:
    """Runs jobs one at a time on a harness server reached through channels made by `open_channel`."""

    def __init__(self, open_channel: Callable[[], Channel], name: str = "sandbox", retries: int = 1):
        self.open_channel = open_channel
        self.name = name
        self.retries = retries
        self.channel: Channel | None = None
        self.lines: LineReader | None = None
        self.hello: dict = {}
        self.restarts = 0
        self.last_fault = ""
        self.stopping = threading.Event()

    def start(self) -> None:
        channel = self.open_channel()
        lines = LineReader(channel)
        hello = lines.message(START_TIMEOUT_S)
        if not isinstance(hello, dict) or not hello.get("ready"):
            why = channel.describe_failure()
            channel.close()
            raise SandboxStartError(f"{self.name}: the harness did not start: {why or hello!r}")
        self.channel, self.lines, self.hello = channel, lines, hello

    def run(self, job: dict) -> dict:
        """Judge one job. A server that dies or hangs is retried on a fresh one; raises Interrupted
        when stop() was called, HarnessFault when the harness itself fails on every try."""
        failures: list[tuple[str, float]] = []
        for _ in range(self.retries + 1):
            outcome = self._try(job)
            if isinstance(outcome, dict):
                return outcome
            failures.append(outcome)
        if {kind for kind, _ in failures} == {"fault"}:
            raise HarnessFault(self.last_fault)
        # died or hung every time: the candidate's doing, deterministically
        kind, elapsed = failures[-1]
        return {"id": job.get("id"), "outcomes": ["timeout" if kind == "hung" else "runtime_error"],
                "names": None, "error": "the sandbox server was killed or hung while running this candidate "
                f"({len(failures)} times)", "seconds": round(elapsed, 4)}

    def _try(self, job: dict) -> dict | tuple[str, float]:
        if self.stopping.is_set():
            raise Interrupted
        if self.channel is None:
            self.start()
        assert self.channel is not None and self.lines is not None
        start = time.monotonic()
        line = encode(job)
        if line is None:
            raise ValueError(f"job {job.get('id')} cannot be written as JSON")
        try:
            self.channel.send(line)
            result = self.lines.message(job_budget(job))
        except OSError:
            result = None
        if self.stopping.is_set():
            raise Interrupted
        elapsed = time.monotonic() - start
        if valid_result(result, job):
            assert isinstance(result, dict)
            if result.get("restart"):
                log.info("%s: replacing the sandbox after job %s (%s)", self.name, job.get("id"),
                         result.get("restart_why", "asked by the harness"))
                self.close()
            if not result.get("fault"):
                return result
            log.warning("%s: harness fault on job %s: %s", self.name, job.get("id"), result.get("fault"))
            self.last_fault = str(result.get("fault"))
            self.close()
            self.restarts += 1
            return "fault", elapsed
        timed_out = elapsed >= job_budget(job) - 1
        log.warning("%s: harness server %s on job %s; restarting (%s)", self.name,
                    "hung" if timed_out else "died", job.get("id"), self.channel.describe_failure()[-300:])
        self.close()
        self.restarts += 1
        return ("hung" if timed_out else "died"), elapsed

    def stop(self) -> None:
        """Stop now (from another thread): kill the server; the job in flight raises Interrupted."""
        self.stopping.set()
        channel = self.channel
        if channel is not None:
            try:
                channel.kill()
            except Exception as e:  # noqa: BLE001 - best effort: the job in flight ends at its deadline
                log.warning("%s: could not stop the server: %s", self.name, e)

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel, self.lines = None, None
