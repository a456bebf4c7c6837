"""The runner: the only process that runs candidate code, under rlimits, holding its own code and
the current input, nothing else. stdin programs run once per test (as __main__, real stdin/stdout
files); functional and humaneval candidates answer call requests with plain data; unittest
candidates run with their test module (see unittest_runner)."""

from __future__ import annotations

import math
import os
import resource
import sys

from . import hardening
from .protocol import (
    COMPILE,
    INT_DIGITS,
    MISSING,
    RUNTIME,
    WRONG,
    LineReader,
    NotPlain,
    from_plain,
    send,
    to_plain,
)

# LiveCodeBench runs every program after star-imports of these modules (in this order), then plain
# imports of the same modules; solutions rely on it (e.g. `List` without `from typing import List`).
PRELUDE_MODULES = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math",
                   "random", "statistics", "itertools", "functools", "operator", "io", "sys", "json",
                   "builtins", "typing")
PRELUDE = "".join(f"from {m} import *\n" for m in PRELUDE_MODULES) + "".join(
    f"import {m}\n" for m in PRELUDE_MODULES if m not in ("builtins", "typing"))
PRELUDE_CODE = compile(PRELUDE, "<prelude>", "exec")
_PRELUDE_NS: dict = {}
EXIT_RUNTIME, EXIT_MISSING = 17, 18  # a stdin runner's exit codes for an uncaught exception
ERROR_MARK = "@@daj-error@@ "        # written on stderr before the message of such an exception


def prelude_namespace(name: str) -> dict:
    """A fresh module namespace holding the prelude's names: a copy of one made in the zygote (the
    same objects its imports would bind), with `stdin`/`stdout`/`stderr` rebound to this process'."""
    if not _PRELUDE_NS:
        exec(PRELUDE_CODE, _PRELUDE_NS)
    namespace = dict(_PRELUDE_NS)
    namespace.update(__name__=name, stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr)
    return namespace


def _limit(res: int, value: int) -> None:
    try:
        resource.setrlimit(res, (value, value))
    except (ValueError, OSError):
        pass


def cpu_limit(seconds: float, total_s: float) -> None:
    """CPU time limit: SIGXCPU (a timeout) once this process has used `seconds` more CPU time.

    Time limits are on CPU time, so that a loaded machine does not turn a fast program into a
    timeout; a wall-clock backstop (wall_factor x the limit) catches programs that sleep or block."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    hard = math.ceil(total_s) + 1
    soft = min(hard - 1, math.ceil(used + seconds))
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    except (ValueError, OSError):
        pass


def enter_runner(spec: dict, cpu_s: float, cpu_total_s: float, work: str, keep: tuple[int, ...]) -> None:
    """In a freshly forked runner: own process group, files on fds 0-2, no other fd but `keep`,
    rlimits (CPU: `cpu_s` now, at most `cpu_total_s`), interpreter limits."""
    os.setpgid(0, 0)
    hardening.close_fds_except(keep)
    paths = (os.path.join(work, n) for n in (".in", ".out", ".err"))
    write = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fds = [os.open(p, flags, 0o600) for p, flags in zip(paths, (os.O_RDONLY, write, write), strict=True)]
    for fd, target in zip(fds, (0, 1, 2), strict=True):
        os.dup2(fd, target)
        os.close(fd)
    mb = 1024 * 1024
    _limit(resource.RLIMIT_AS, int(spec.get("memory_mb", 2048)) * mb)
    _limit(resource.RLIMIT_FSIZE, int(spec.get("output_mb", 64)) * mb)
    cpu_limit(cpu_s, cpu_total_s)
    _limit(resource.RLIMIT_CORE, 0)
    if spec.get("stack_mb"):
        _limit(resource.RLIMIT_STACK, int(spec["stack_mb"]) * mb)
    sys.setrecursionlimit(INT_DIGITS)
    # deterministic verdicts: an unseeded `random` gives the same draws in every run
    sys.modules["random"].seed(0)
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(INT_DIGITS)
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    hardening.default_signals()


def classify(exc: BaseException) -> str:
    """runtime_error, or missing_dependency for an import of a module outside the standard library."""
    if isinstance(exc, ImportError):
        name = (exc.name or "").split(".")[0]
        if name and name not in sys.stdlib_module_names:
            return MISSING
    return RUNTIME


def describe(exc: BaseException) -> str:
    try:
        return f"{type(exc).__name__}: {exc}"[:300]
    except Exception:  # noqa: BLE001 - a hostile __str__
        return type(exc).__name__[:300]


def _join_threads() -> None:
    """Wait for non-daemon threads, as interpreter shutdown does, so their output counts."""
    threading = sys.modules.get("threading")
    if threading is None:
        return
    for t in threading.enumerate():
        if t is not threading.current_thread() and not t.daemon:
            t.join()


def flush_and_exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(code)


def run_program(code_obj) -> None:
    """stdin runner: execute the program as __main__; its exit status tells how it ended."""
    namespace = prelude_namespace("__main__")
    try:
        exec(code_obj, namespace)
        _join_threads()
    except SystemExit:
        pass  # LCB treats exit() as the end of the program, whatever the code
    except BaseException as e:  # noqa: BLE001 - every failure of the program is a verdict
        try:
            sys.stderr.write("\n" + ERROR_MARK + describe(e).replace("\n", " ") + "\n")
        except Exception:  # noqa: BLE001
            pass
        flush_and_exit(EXIT_MISSING if classify(e) == MISSING else EXIT_RUNTIME)
    flush_and_exit(0)


def run_calls(spec: dict, req: int, res: int) -> None:
    """functional / humaneval runner: define the candidate, then answer call requests with plain data.

    Request: {"call": n, "test": i, "args": [plain...]}.
    Reply:   {"call": n, "value": plain} or {"call": n, "status": ..., "error": ...}."""
    kind = spec["kind"]
    n_tests = max(1, int(spec.get("n_tests", 1)))
    timeout = float(spec["timeout_s"])
    if kind == "functional":
        namespace = prelude_namespace("solution")
    else:
        namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        code_obj = compile(spec["code"], "<candidate>", "exec")
    except (SyntaxError, ValueError) as e:
        return send(res, {"ready": False, "status": COMPILE, "error": describe(e)})
    try:
        exec(code_obj, namespace)
        if kind == "functional":
            target = getattr(namespace["Solution"](), spec["func_name"])
        else:
            target = namespace[spec["entry_point"]]
    except KeyError as e:
        return send(res, {"ready": False, "status": COMPILE, "error": f"not defined: {e}"})
    except AttributeError as e:
        return send(res, {"ready": False, "status": COMPILE, "error": describe(e)})
    except BaseException as e:  # noqa: BLE001
        return send(res, {"ready": False, "status": classify(e), "error": describe(e)})
    send(res, {"ready": True})
    lines = LineReader(req)
    current = -1
    while True:
        msg = lines.read()
        if msg is None:
            return
        if msg.get("test") != current:  # a new test: a fresh CPU budget of timeout_s
            current = msg.get("test")
            cpu_limit(timeout, timeout * (n_tests + 1))
        try:
            args = [from_plain(a) for a in msg["args"]]
            value = target(*args)
            reply = {"call": msg["call"], "value": to_plain(value)}
        except NotPlain as e:
            reply = {"call": msg["call"], "status": WRONG, "error": f"result is not plain data: {e}"[:300]}
        except SystemExit as e:
            reply = {"call": msg["call"], "status": RUNTIME, "error": f"SystemExit: {e}"[:300]}
        except BaseException as e:  # noqa: BLE001
            reply = {"call": msg["call"], "status": classify(e), "error": describe(e)}
        if not send(res, reply):
            send(res, {"call": msg["call"], "status": WRONG, "error": "result cannot be sent as JSON"})
