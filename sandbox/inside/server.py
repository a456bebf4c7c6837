"""The server: trusted, pid 1 of the sandbox where possible. It reads one job per line, has the
candidate checked (checks.Session), and after each candidate stops every process of it and wipes
its scratch, verifying both; when it cannot, it asks to be replaced before the next job.

  server  (holds the jobs, compares, decides)
    zygote  (forked at start-up, before any job: it holds no test data and never will)
      host    (one per candidate, forked by the zygote; receives only the code; never runs it)
        runner  (runs candidate code with rlimits; stdin: one per test; else one per candidate)
"""

from __future__ import annotations

import os
import select
import socket
import sys
import time

from . import hardening
from .checks import Fault, Session, describe_exc
from .containment import Processes, wipe, wipe_ipc
from .protocol import INT_DIGITS, BadMessage, decode_object, encode, validate_job
from .runner import PRELUDE_MODULES, prelude_namespace
from .unittest_runner import expected_test_names
from .zygote import zygote_main


class Server:
    def __init__(self, tmp_root: str, own_pid_ns: bool, processes: Processes, seccomp: bool = True):
        self.tmp_root = tmp_root
        self.processes = processes
        # killing every other process is only safe in a private pid namespace
        self.own_pid_ns = own_pid_ns
        if own_pid_ns:
            hardening.become_subreaper()
        for name in PRELUDE_MODULES + ("unittest", "types", "threading", "errno", "ast", "inspect"):
            __import__(name)
        prelude_namespace("__main__")  # built once; every runner copies it
        try:  # loaded once here rather than in every forked process
            import pyseccomp  # noqa: F401
        except ImportError:
            pass
        if hasattr(sys, "set_int_max_str_digits"):
            sys.set_int_max_str_digits(INT_DIGITS)
        self.shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.scratch = [r for r in (tmp_root, self.shm) if r]
        self._cache: dict = {}
        self.pid = os.getpid()
        self.zygote_pid = 0
        self.seccomp = False
        self.want_seccomp = seccomp
        self.dirty = ""  # why the sandbox must be replaced after this job ("" when it is clean)
        self._start_zygote()

    def _start_zygote(self) -> None:
        """Fork the zygote now, before any job is read: it never holds test data."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            try:
                ours.close()
                zygote_main(theirs, self.want_seccomp, self.pid)
            finally:
                os._exit(0)
        theirs.close()
        self.zygote_pid, self.zygote = pid, ours
        self.zygote_buf = b""
        self.processes.adopt(pid)  # before it forks anything: every candidate process is in the cgroup
        self.seccomp = self._zygote_line(30) == b"S1"

    def _zygote_line(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.zygote_buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Fault("the zygote does not answer")
            readable, _, _ = select.select([self.zygote], [], [], remaining)
            if readable:
                chunk = self.zygote.recv(256)
                if not chunk:
                    raise Fault("the zygote is gone")
                self.zygote_buf += chunk
        line, self.zygote_buf = self.zygote_buf.split(b"\n", 1)
        return line

    def zygote_alive(self) -> bool:
        if self.zygote_pid <= 0:
            return False
        try:
            os.kill(self.zygote_pid, 0)
        except ProcessLookupError:
            return False
        try:
            return os.waitpid(self.zygote_pid, os.WNOHANG)[0] == 0
        except ChildProcessError:
            return False

    def spawn(self, fds: list[int]) -> int:
        try:
            socket.send_fds(self.zygote, [b"F"], fds)
            pid = int(self._zygote_line(10))
        except (OSError, ValueError) as e:
            raise Fault(f"the zygote failed: {e}") from None
        if pid <= 0:
            raise Fault("the zygote refused")
        return pid

    def compiled(self, source: str, name: str, mode: str = "exec"):
        key = (source, mode)
        if key not in self._cache:
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[key] = compile(source, name, mode)
        return self._cache[key]

    def trusted_namespace(self, job: dict) -> dict:
        """The problem's own prompt (helpers such as encode_cyclic), defined on the trusted side."""
        namespace: dict = {"__name__": "__main__"}
        prompt = job.get("prompt") or ""
        if prompt:
            try:
                exec(self.compiled(prompt, "<prompt>"), namespace)
            except Exception:  # noqa: BLE001 - a prompt that does not run alone: helpers unavailable
                pass
        return namespace

    def run(self, job: dict) -> dict:
        start = time.monotonic()
        work = os.path.join(self.tmp_root, "job")
        session = None
        fault = ""
        try:
            if not wipe(self.scratch):
                raise Fault("the scratch directories cannot be emptied")
            os.makedirs(work, mode=0o700)
            session = Session(self, job, work)
            spec = {k: job[k] for k in ("kind", "code", "timeout_s", "memory_mb", "output_mb", "stack_mb",
                                        "func_name", "entry_point") if k in job}
            spec.update(work=work, seccomp=bool(job.get("seccomp", True)) and self.seccomp,
                        n_tests=len(job.get("tests") or []))
            if job["kind"] == "unittest":
                try:
                    job["expected_names"] = expected_test_names(job["test_code"])
                except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
                    raise Fault(f"the test code does not parse: {e}") from None
                spec.update(test_code=job["test_code"], expected_names=job["expected_names"])
            session.open(spec)
            getattr(session, f"check_{job['kind']}")()
        except Fault as e:
            fault = str(e)
        finally:
            if session is not None:
                session.close()
            self.cleanup(session.pids if session else [])
        result = {"id": job.get("id"), "outcomes": session.outcomes if session else [],
                  "names": session.names if session else None,
                  "error": "; ".join(e for e in (session.errors if session else []) if e)[:1000],
                  "seconds": round(time.monotonic() - start, 4)}
        if fault:
            result.update(fault=fault[:500], outcomes=[], error=f"harness fault: {fault}"[:1000])
        if self.dirty or not self.zygote_alive():
            result["restart"] = True  # the host side starts a fresh sandbox before the next job
            result["restart_why"] = self.dirty or "the zygote is gone"
        return result

    def contain(self, keep_host: int | None = None) -> None:
        """Stop every process of the current candidate but its host (when given); a sandbox in which
        that cannot be verified is not used again, and the test in progress is not judged."""
        keep = {self.zygote_pid} | ({keep_host} if keep_host else set())
        if not self.processes.stop(keep, self._reap):
            self.dirty = "the candidate's processes could not be stopped"
            raise Fault(self.dirty)

    def cleanup(self, pids: list[int]) -> None:
        """After a candidate: no process of it is left, nor anything in scratch, or the sandbox goes."""
        for pid in reversed(pids):  # runners (own process groups), then the host
            for target in (-pid, pid):
                try:
                    os.kill(target, 9)
                except (ProcessLookupError, PermissionError):
                    pass
        if not self.processes.stop({self.zygote_pid}, self._reap):
            self.dirty = "the candidate's processes could not be stopped"
        self._reap()
        if not wipe(self.scratch):
            self.dirty = self.dirty or "the candidate's scratch could not be emptied"
        if not wipe_ipc():
            self.dirty = self.dirty or "the candidate's IPC objects could not be removed"

    def _reap(self) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.zygote_pid:
                self.zygote_pid = -1


def serve(server: Server, protocol_in, protocol_out) -> int:
    """Answer one result line per job line until EOF or until the sandbox must be replaced."""
    for line in protocol_in:
        if not line.strip():
            continue
        try:
            job = decode_object(line.rstrip(b"\n"), limit=len(line))  # from the trusted host side
            why = validate_job(job)
        except BadMessage as e:
            job, why = None, f"not JSON: {e}"
        job_id = job.get("id") if isinstance(job, dict) else None
        if why:
            reply(protocol_out, {"id": job_id, "outcomes": [], "names": None, "seconds": 0.0,
                                 "fault": f"bad job: {why}", "error": f"harness fault: bad job: {why}"})
            continue
        try:
            result = server.run(job)
        except Exception as e:  # noqa: BLE001 - a harness fault for this job; the host retries it
            result = {"id": job_id, "outcomes": [], "names": None, "seconds": 0.0,
                      "fault": describe_exc(e), "error": f"harness fault: {describe_exc(e)}", "restart": True}
        reply(protocol_out, result)
        if result.get("restart"):
            return 0
    return 0


def reply(out, obj: dict) -> None:
    out.write(encode(obj) or b'{"fault": "unencodable result"}\n')
    out.flush()
