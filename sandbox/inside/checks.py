"""The server's view of one candidate: its host, its runner channel, and the check of each test kind.

Every comparison happens here, on the trusted side, against plain values rebuilt from what the
candidate's side wrote (stdin: the output file, read once every process of the candidate is gone).
Whatever a candidate writes is bounded and parsed without raising: a bad message is the candidate's
runtime_error (wrong_answer for output), never a harness fault.
"""

from __future__ import annotations

import json
import os
import select
import signal
import stat
import time

from . import compare
from .protocol import (
    LOAD_SLACK,
    MAX_LINE,
    MISSING,
    PASS,
    RUNTIME,
    STDERR_KEEP,
    TIME_LIMIT,
    TIMEOUT,
    WRONG,
    BadMessage,
    NotPlain,
    decode_object,
    encode,
    from_plain,
    test_status,
    text,
    to_plain,
)
from .runner import ERROR_MARK, EXIT_MISSING, EXIT_RUNTIME


class Fault(Exception):
    """An infrastructure fault (not the candidate's doing): the host side retries on a fresh server."""


class Candidate(Exception):
    """The candidate's side failed a call: status and message for this test."""

    def __init__(self, status: str, error: str):
        super().__init__(error)
        self.status, self.error = status, error


def _cpu_wait(pid: int) -> float | None:
    """Seconds `pid` has spent runnable but waiting for a CPU (/proc/<pid>/schedstat); None when gone."""
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as fh:
            return int(fh.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


class Deadline:
    """A wall-clock deadline. With `runner`, a backstop that does not count the time the runner spent
    waiting for a CPU (up to LOAD_SLACK times `seconds`): a program that sleeps or blocks is stopped
    after `seconds`, one that a loaded machine did not get to run is not, so that the verdict does
    not depend on the load (time limits proper are CPU time, RLIMIT_CPU)."""

    def __init__(self, seconds: float, runner=None):
        self.seconds, self.runner = seconds, runner  # runner: () -> the runner's pid, or None
        self.start = time.monotonic()
        self.end = self.start + seconds
        self.waited = 0.0
        # a runner already running (functional, humaneval): only the waiting from now on counts
        self.known = runner() if runner is not None else None
        self.base = (_cpu_wait(self.known) or 0.0) if self.known else 0.0

    def left(self) -> float:
        now = time.monotonic()
        if now >= self.end and self.runner is not None:
            self._extend()
        return self.end - now

    def passed(self) -> bool:
        return self.left() <= 0

    def _extend(self) -> None:
        pid = self.runner()
        wait = _cpu_wait(pid) if pid else None
        if wait is not None:
            self.waited = max(self.waited, wait - (self.base if pid == self.known else 0.0))
        self.end = self.start + self.seconds + min(self.waited, LOAD_SLACK * self.seconds)


class Pipe:
    """The server's end of one pipe to a candidate process: non-blocking, deadlines, bounded lines."""

    def __init__(self, fd: int):
        self.fd, self.buf = fd, b""
        os.set_blocking(fd, False)

    def write(self, data: bytes, deadline: Deadline) -> bool:
        view = memoryview(data)
        while view:
            remaining = deadline.left()
            if remaining <= 0:
                return False
            _, writable, _ = select.select([], [self.fd], [], remaining)
            if writable:
                try:
                    view = view[os.write(self.fd, view):]
                except BlockingIOError:
                    continue
                except OSError:
                    return False
        return True

    def line(self, deadline: Deadline) -> bytes | None:
        """The next line; None at EOF; raises TimeoutError at the deadline, BadMessage if too long."""
        if b"\n" not in self.buf:
            chunks = [self.buf]
            size = len(self.buf)
            while True:
                if size > MAX_LINE:
                    raise BadMessage("line too long")
                remaining = deadline.left()
                if remaining <= 0:
                    self.buf = b"".join(chunks)
                    raise TimeoutError
                readable, _, _ = select.select([self.fd], [], [], remaining)
                if not readable:
                    continue
                try:
                    chunk = os.read(self.fd, 1 << 20)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    self.buf = b"".join(chunks)
                    return None
                chunks.append(chunk)
                size += len(chunk)
                if b"\n" in chunk:
                    break
            self.buf = b"".join(chunks)
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def pending(self) -> bool:
        """Whether unread data is waiting in the pipe now."""
        readable, _, _ = select.select([self.fd], [], [], 0)
        if not readable:
            return False
        try:
            return bool(os.read(self.fd, 1 << 16))
        except OSError:
            return False

    def message(self, deadline: Deadline) -> dict | None:
        """The next line as a JSON object; None at EOF; BadMessage for anything else."""
        line = self.line(deadline)
        return None if line is None else decode_object(line)


class Session:
    """One candidate on the server: its host, its runner channel, the outcome of each test."""

    def __init__(self, server, job: dict, work: str):
        self.server, self.job, self.work = server, job, work
        self.outcomes: list[str] = []
        self.errors: list[str] = []
        self.names: list[str] | None = None
        self.pids: list[int] = []
        self.timeout = float(job["timeout_s"])
        self.wall = float(job.get("wall_factor", 2.0))
        self.own: list[int] = []
        self.calls = 0
        self.dead = False

    def emit(self, status: str, error: str = "", name: str | None = None) -> None:
        self.outcomes.append(status)
        if name:
            self.errors.append(f"{name}: {error}" if error else "")
        elif error:
            self.errors.append(error)

    def open(self, spec: dict) -> None:
        open(os.path.join(self.work, ".in"), "wb").close()  # stdin of runners with no test input
        pipes = [os.pipe() for _ in range(4)]
        # host control (we write), host events (we read), runner requests (we write), results (we read)
        theirs = [pipes[0][0], pipes[1][1], pipes[2][0], pipes[3][1]]
        ours = [pipes[0][1], pipes[1][0], pipes[2][1], pipes[3][0]]
        self.own = ours
        try:
            pid = self.server.spawn(theirs)
        finally:
            for fd in theirs:
                os.close(fd)
        self.pids.append(pid)
        self.ctrl, self.events, self.req, self.res = (Pipe(fd) for fd in ours)
        line = encode(spec)
        if line is None or not self.ctrl.write(line, Deadline(30)):
            raise Fault("cannot send the candidate to its host")

    def close(self) -> None:
        for fd in self.own:
            try:
                os.close(fd)
            except OSError:
                pass
        self.own = []

    def host_event(self, deadline: Deadline) -> dict | None:
        """The next event of the host; None when it is gone. Raises TimeoutError."""
        while True:
            try:
                ev = self.events.message(deadline)
            except BadMessage as e:
                raise Fault(f"host protocol: {e}") from None
            if ev is None:
                return None
            if "pid" in ev and isinstance(ev["pid"], int):
                self.pids.append(ev["pid"])
                continue
            if ev.get("seccomp") is False:
                raise Fault("the seccomp filter did not load in the candidate's host")
            return ev

    def exit_status(self, deadline: Deadline) -> int | None:
        try:
            ev = self.host_event(deadline)
        except TimeoutError:
            return None
        if ev is None or not isinstance(ev.get("status"), int):
            return None
        return ev["status"]

    # -- stdin
    def check_stdin(self) -> None:
        if not self._host_ready():
            return
        inp, out, err = (os.path.join(self.work, n) for n in (".in", ".out", ".err"))
        limit = int(self.job.get("output_mb", 64)) << 20
        for i, test in enumerate(self.job["tests"]):
            with open(inp, "w", encoding="utf-8", errors="surrogatepass") as fh:
                fh.write(test["input"])
            runners = len(self.pids)  # this test's runner is the next pid the host reports
            deadline = Deadline(self.timeout * self.wall,
                                lambda n=runners: self.pids[n] if len(self.pids) > n else None)
            if not self.ctrl.write(f'{{"run": {i}}}\n'.encode(), deadline):
                return self.emit(RUNTIME, "the candidate's host is gone")
            status = self.exit_status(deadline)
            if status is None:
                if deadline.passed():
                    return self.emit(TIMEOUT, TIME_LIMIT)
                return self.emit(RUNTIME, "the candidate's host is gone")
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
                # nothing of this candidate but its host runs from here on: the output is final
                self.server.contain(keep_host=self.pids[0])
                actual = read_head(out, limit + 1).decode("utf-8", "replace")
                if compare.stdout_matches(actual, test["output"]):
                    self.emit(PASS)
                    continue
                return self.emit(WRONG, f"got {actual[:150]!r}")
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) in (EXIT_RUNTIME, EXIT_MISSING):
                tail = read_tail(err)
                mark = ERROR_MARK.strip()
                message = tail.rsplit(mark, 1)[-1].strip() if mark in tail else tail[-300:].strip()
                missing = os.WEXITSTATUS(status) == EXIT_MISSING
                return self.emit(MISSING if missing else RUNTIME, message[:300])
            return self.emit(*abnormal_end(status, err))

    def _host_ready(self) -> bool:
        try:
            ev = self.host_event(Deadline(30 + self.timeout * self.wall))
        except TimeoutError:
            raise Fault("the candidate's host did not answer") from None
        if ev is None:
            self.emit(RUNTIME, "the candidate's host is gone")
            return False
        if ev.get("ready") is True:
            return True
        self.emit(test_status(ev.get("status")), text(ev.get("error")))
        return False

    # -- functional / humaneval
    def _runner_ready(self, deadline: Deadline) -> bool:
        try:
            msg = self.res.message(deadline)
        except TimeoutError:
            self.emit(TIMEOUT, TIME_LIMIT)
            return False
        except BadMessage:
            self.emit(RUNTIME, "malformed message from the candidate")
            return False
        if msg is None:
            self.emit(*self._runner_gone())
            return False
        if msg.get("ready") is True:
            return True
        if msg.get("ready") is False:
            self.emit(test_status(msg.get("status")), text(msg.get("error")))
        else:
            self.emit(RUNTIME, "malformed message from the candidate")
        return False

    def _runner_gone(self) -> tuple[str, str]:
        status = self.exit_status(Deadline(2))
        self.dead = True
        if status is None:
            return RUNTIME, "the candidate's runner is gone"
        return abnormal_end(status, os.path.join(self.work, ".err"))

    def call(self, test: int, args: list, deadline: Deadline) -> object:
        """Call the candidate across the process boundary; its plain result, rebuilt here."""
        if self.dead:
            raise Candidate(RUNTIME, "the candidate's runner is gone")
        self.calls += 1
        try:
            line = encode({"call": self.calls, "test": test, "args": [to_plain(a) for a in args]})
        except NotPlain as e:
            raise Fault(f"test arguments are not plain data: {e}") from None
        if line is None:
            raise Fault("test arguments cannot be sent as JSON")
        if not self.req.write(line, deadline):
            self.dead = True
            if deadline.passed():
                raise Candidate(TIMEOUT, TIME_LIMIT)
            raise Candidate(*self._runner_gone())
        try:
            msg = self.res.message(deadline)
        except TimeoutError:
            self.dead = True
            raise Candidate(TIMEOUT, TIME_LIMIT) from None
        except BadMessage:
            self.dead = True
            raise Candidate(RUNTIME, "malformed message from the candidate") from None
        if msg is None:
            raise Candidate(*self._runner_gone())
        if msg.get("call") != self.calls:
            self.dead = True
            raise Candidate(RUNTIME, "malformed message from the candidate")
        if "value" in msg:
            try:
                return from_plain(msg["value"])
            except BadMessage:
                self.dead = True
                raise Candidate(WRONG, "result is not plain data") from None
        raise Candidate(test_status(msg.get("status")), text(msg.get("error")))

    def _backstop(self) -> Deadline:
        """One test's wall-clock backstop on the runner of a functional or humaneval candidate."""
        return Deadline(self.timeout * self.wall, lambda: self.pids[1] if len(self.pids) > 1 else None)

    def check_functional(self) -> None:
        if not self._runner_ready(self._backstop()):
            return
        for i, test in enumerate(self.job["tests"]):
            deadline = self._backstop()
            args = [json.loads(line) for line in test["input"].split("\n")]  # checked by validate_job
            expected = json.loads(test["output"])
            try:
                got = self.call(i, args, deadline)
            except Candidate as c:
                return self.emit(c.status, c.error)
            if compare.functional_matches(got, expected):
                self.emit(PASS)
            else:
                return self.emit(WRONG, f"got {short(got)}")

    def check_humaneval(self) -> None:
        if not self._runner_ready(self._backstop()):
            return
        entry = self.job["entry_point"]
        for i, test in enumerate(self.job["tests"]):
            deadline = self._backstop()

            def stand_in(*args, _i=i, _deadline=deadline):
                return self.call(_i, list(args), _deadline)

            stand_in.__name__ = entry
            namespace = self.server.trusted_namespace(self.job)
            namespace[entry] = stand_in
            import random

            random.seed(0)
            try:
                if test.get("check"):
                    exec(self.server.compiled(self.job["test_code"], "<test>"), namespace)
                    namespace["check"](stand_in)
                    ok, got = True, None
                else:
                    got = eval(self.server.compiled(test["input"], "<example>", "eval"), namespace)
                    want = eval(self.server.compiled(test["output"], "<example>", "eval"), namespace)
                    ok = compare.equal(got, want)
                self.emit(PASS if ok else WRONG, "" if ok else f"got {short(got)}")
            except Candidate as c:
                self.emit(c.status, c.error)
            except AssertionError as e:
                self.emit(WRONG, describe_exc(e))
            except Fault:
                raise
            except Exception as e:  # noqa: BLE001 - the check failed on the candidate's values
                self.emit(RUNTIME, describe_exc(e))

    # -- unittest
    def check_unittest(self) -> None:
        deadline = Deadline(self.timeout)  # BCB: one wall-clock limit for the module, load or not
        expected = self.job["expected_names"]
        self.names = list(expected)
        if not self._runner_ready(deadline):
            return
        for name in expected:
            try:
                msg = self.res.message(deadline)
            except TimeoutError:
                return self.emit(TIMEOUT, TIME_LIMIT)
            except BadMessage:
                return self.emit(RUNTIME, "malformed message from the candidate")
            if msg is None:
                return self.emit(*self._runner_gone())
            if msg.get("name") != name:
                return self.emit(RUNTIME, f"unexpected result (wanted {name})")
            status = msg.get("status")
            self.emit(status if status == PASS else test_status(status), text(msg.get("error")), name=name)
        # the whole module must end normally, within the limit, with nothing more to say
        status = self.exit_status(deadline)
        if status is None:
            return self.emit(TIMEOUT, TIME_LIMIT) if deadline.passed() else \
                self.emit(RUNTIME, "the candidate's host is gone")
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            return self.emit(*abnormal_end(status, os.path.join(self.work, ".err")))
        if self.res.buf or self.res.pending():
            self.emit(RUNTIME, "unexpected output on the result channel")


def short(value: object) -> str:
    try:
        return repr(value)[:150]
    except Exception:  # noqa: BLE001 - too deep to print
        return "?"


def describe_exc(exc: BaseException) -> str:
    try:
        return f"{type(exc).__name__}: {exc}"[:300]
    except Exception:  # noqa: BLE001
        return type(exc).__name__[:300]


def _open_regular(path: str):
    """A candidate-written file, opened only if it is a regular file (no symlink, FIFO or device)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError("not a regular file")
    return os.fdopen(fd, "rb")


def read_head(path: str, limit: int) -> bytes:
    try:
        with _open_regular(path) as fh:
            return fh.read(limit)
    except OSError:
        return b""


def read_tail(path: str, limit: int = STDERR_KEEP) -> str:
    try:
        with _open_regular(path) as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - limit))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def abnormal_end(status: int, err_path: str) -> tuple[str, str]:
    """Status and message for a runner that ended without a verdict of its own."""
    code, why = signal_status(status)
    if code == TIMEOUT:
        return code, why
    return code, (why + " " + read_tail(err_path, 300)).strip()[:400]


def signal_status(status: int) -> tuple[str, str]:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return TIMEOUT, TIME_LIMIT
        if sig == signal.SIGXFSZ:
            return RUNTIME, "output limit exceeded"
        try:
            return RUNTIME, f"killed by signal {signal.Signals(sig).name}"
        except ValueError:
            return RUNTIME, f"killed by signal {sig}"
    return RUNTIME, f"exit status {os.waitstatus_to_exitcode(status)}"
