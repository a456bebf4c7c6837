"""The host: one per candidate, forked by the zygote. It receives only the code and the limits (no
test data), compiles the code, forks runners on the server's request and reports how they ended.
It never runs candidate code itself."""

from __future__ import annotations

import os

from . import hardening
from .protocol import COMPILE, LineReader, send
from .runner import describe, enter_runner, flush_and_exit, run_calls, run_program
from .unittest_runner import run_unittest


def host_main(fds: list[int], protect: tuple[int, ...]) -> None:
    """fds: host control in, host events out, runner requests in, runner results out."""
    ctrl, events, req, res = fds
    hardening.close_fds_except(tuple(fds))
    hardening.null_stdio()
    lines = LineReader(ctrl)
    spec = lines.read()
    if spec is None:
        os._exit(0)
    if spec.get("seccomp") and not hardening.load_seccomp(protect + (os.getpid(),), base=False):
        send(events, {"seccomp": False})
        os._exit(0)
    work = spec["work"]
    os.chdir(work)
    for key in ("TMPDIR", "HOME", "MPLCONFIGDIR"):
        os.environ[key] = work
    timeout = float(spec["timeout_s"])
    kind = spec["kind"]
    if kind == "stdin":
        os.close(req)
        os.close(res)
        try:
            code_obj = compile(spec["code"], "<candidate>", "exec")
        except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
            send(events, {"ready": False, "status": COMPILE, "error": describe(e)})
            os._exit(0)
        send(events, {"ready": True})
        while True:
            msg = lines.read()
            if msg is None:
                os._exit(0)
            pid = os.fork()
            if pid == 0:
                try:
                    enter_runner(spec, timeout, timeout, work, ())
                    run_program(code_obj)
                finally:
                    os._exit(3)
            send(events, {"pid": pid})
            _, status = os.waitpid(pid, 0)
            send(events, {"exit": msg.get("run"), "status": status})
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ctrl)
            os.close(events)
            whole = kind == "unittest"
            n = max(1, int(spec.get("n_tests", 1)))
            enter_runner(spec, timeout, timeout * (1 if whole else n + 1), work, (req, res))
            if whole:
                run_unittest(spec, res)
            else:
                run_calls(spec, req, res)
            flush_and_exit(0)
        finally:
            os._exit(3)
    os.close(req)
    os.close(res)
    send(events, {"pid": pid})
    _, status = os.waitpid(pid, 0)
    send(events, {"exit": 0, "status": status})
    os._exit(0)
