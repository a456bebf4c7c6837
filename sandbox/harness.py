"""The in-sandbox harness: checks one candidate per job (stdlib only; pyseccomp optional).

Run inside the isolation (bwrap or a container) as `python harness.py --tmp-root /tmp [--own-pid-ns]`.
It writes one JSON hello line, then reads one JSON job per line on stdin and writes one JSON result
per line on stdout (see docs/sandbox.md, "Harness protocol"). Processes:

  server  (trusted; pid 1 of the sandbox where possible; holds the jobs, compares, decides)
    zygote  (forked at start-up, before any job: it holds no test data and never will)
      host    (one per candidate, forked by the zygote; receives only the code; never runs it)
        runner  (runs candidate code with rlimits; stdin: one per test; else one per candidate)

The server, the zygote and the host are not dumpable (PR_SET_DUMPABLE 0: no /proc/<pid>/mem, fd or
ptrace access for a candidate of the same uid), and the seccomp filter loaded in the zygote denies
tracing and every way to signal them. A runner holds the candidate's code, the input of the current
test and nothing else; results leave it as plain data (JSON) and the server rebuilds plain values
and compares them (stdin: it reads the output file once every candidate process is gone). After each
candidate the server kills every process but itself and the zygote (own pid namespace) and wipes the
candidate's tmp directory and /dev/shm.
"""

from __future__ import annotations

import ast
import ctypes
import importlib.util
import json
import math
import os
import resource
import select
import signal
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or ".") == HERE:
    del sys.path[0]  # candidate code must not import the harness' own modules by accident

_spec = importlib.util.spec_from_file_location("_daj_compare", os.path.join(HERE, "compare.py"))
compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare)

# LiveCodeBench runs every program after star-imports of these modules (in this order), then plain
# imports of the same modules; solutions rely on it (e.g. `List` without `from typing import List`).
PRELUDE_MODULES = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math",
                   "random", "statistics", "itertools", "functools", "operator", "io", "sys", "json",
                   "builtins", "typing")
PRELUDE = "".join(f"from {m} import *\n" for m in PRELUDE_MODULES) + "".join(
    f"import {m}\n" for m in PRELUDE_MODULES if m not in ("builtins", "typing"))
PRELUDE_CODE = compile(PRELUDE, "<prelude>", "exec")
_PRELUDE_NS: dict = {}

LIMIT = 50000  # recursion limit and int<->str digits, as LCB
STDERR_KEEP = 2000
MAX_LINE = 64 << 20  # longest protocol line accepted from a candidate's side
# one message whether CPU time or the wall-clock backstop ran out: verdicts must not depend on load
TIME_LIMIT = "time limit exceeded"
EXIT_RUNTIME, EXIT_MISSING = 17, 18  # a stdin runner's exit codes for an uncaught exception
ERROR_MARK = "\n@@daj-error@@ "

PASS, WRONG, TIMEOUT, RUNTIME, COMPILE, MISSING = (
    "pass", "wrong_answer", "timeout", "runtime_error", "compile_error", "missing_dependency")
STATUSES = (PASS, WRONG, TIMEOUT, RUNTIME, COMPILE, MISSING)
KINDS = ("stdin", "functional", "humaneval", "unittest")

# syscalls a judged program never needs: kernel attack surface, escapes from the namespaces, and
# every way to trace, read, write or signal another process without naming its pid to kill()
DENIED_SYSCALLS = ("ptrace", "process_vm_readv", "process_vm_writev", "pidfd_open", "pidfd_getfd",
                   "pidfd_send_signal", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "kcmp",
                   "process_madvise", "mount", "umount2", "pivot_root", "unshare", "setns", "keyctl",
                   "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "kexec_load",
                   "init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff",
                   "syslog", "acct", "quotactl", "chroot", "open_by_handle_at", "name_to_handle_at")
# signals a stray candidate process could aim at a trusted one; they do nothing there
IGNORED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM",
                   "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGPIPE", "SIGVTALRM", "SIGPROF", "SIGXCPU",
                   "SIGXFSZ", "SIGWINCH", "SIGIO", "SIGURG")


def _prelude_namespace(name: str) -> dict:
    """A fresh module namespace holding the prelude's names: a copy of one made in the zygote (the
    same objects its imports would bind), with `stdin`/`stdout`/`stderr` rebound to this process'."""
    if not _PRELUDE_NS:
        exec(PRELUDE_CODE, _PRELUDE_NS)
    namespace = dict(_PRELUDE_NS)
    namespace.update(__name__=name, stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr)
    return namespace


def _prctl(option: int, arg: int) -> bool:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, arg, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 4, 36


def _harden_trusted() -> None:
    """Not dumpable (no ptrace, /proc/<pid>/mem or /proc/<pid>/fd for other processes of our uid)
    and deaf to the signals a candidate could send."""
    _prctl(PR_SET_DUMPABLE, 0)
    for name in IGNORED_SIGNALS:
        if hasattr(signal, name):
            try:
                signal.signal(getattr(signal, name), signal.SIG_IGN)
            except (OSError, ValueError):
                pass


# ----------------------------------------------------------------------------- plain data
class NotPlain(Exception):
    """A value that is not plain data (a class of the candidate's, a function, ...)."""


# each conversion returns a value of exactly the base type
_CONVERSIONS = ((int, int.__index__), (float, float.__float__), (str, str.__str__), (list, list),
                (tuple, tuple), (dict, dict), (set, set), (frozenset, frozenset))


def to_plain(value: object, depth: int = 0) -> object:
    """JSON-able form of a plain value; tuples, dicts, sets and bytes are tagged one-key objects.

    Runs on the candidate's side: subclasses of the built-in types are read through the base
    type's own methods, and anything else is refused. The trusted side never trusts this: it
    rebuilds fresh built-in values from the JSON text (from_plain)."""
    if depth > 200:
        raise NotPlain("nested too deeply")
    t = type(value)
    if value is None or t is bool or t is str or t is int or t is float:
        return value
    if t is list:
        return [to_plain(v, depth + 1) for v in value]
    if t is tuple:
        return {"t": [to_plain(v, depth + 1) for v in value]}
    if t is dict:
        return {"d": [[to_plain(k, depth + 1), to_plain(v, depth + 1)] for k, v in value.items()]}
    if t is set or t is frozenset:
        return {"s": [to_plain(v, depth + 1) for v in value]}
    if t is bytes:
        return {"b": value.hex()}
    # subclasses (Counter, defaultdict, namedtuple, numpy.float64, ...): their base value
    for base, conv in _CONVERSIONS:
        if isinstance(value, base):
            try:
                plain = conv(value)
            except Exception as e:  # noqa: BLE001
                raise NotPlain(f"{t.__name__}: {e}") from None
            return to_plain(plain, depth + 1)
    raise NotPlain(f"a {t.__module__}.{t.__qualname__} object")


def from_plain(value: object) -> object:
    """Fresh built-in values from the decoded JSON of to_plain (the trusted side's only view)."""
    t = type(value)
    if value is None or t in (bool, int, float, str):
        return value
    if t is list:
        return [from_plain(v) for v in value]
    if t is dict and len(value) == 1:
        (tag, inner), = value.items()
        if tag == "b" and type(inner) is str:
            return bytes.fromhex(inner)
        if type(inner) is list:
            if tag == "t":
                return tuple(from_plain(v) for v in inner)
            if tag == "s":
                return {from_plain(v) for v in inner}
            if tag == "d" and all(type(p) is list and len(p) == 2 for p in inner):
                return {from_plain(k): from_plain(v) for k, v in inner}
    raise ValueError("not a plain value")


# ----------------------------------------------------------------------------- runner side
def _limit(res: int, value: int) -> None:
    try:
        resource.setrlimit(res, (value, value))
    except (ValueError, OSError):
        pass


def _cpu_limit(seconds: float, total_s: float) -> None:
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


def _enter_runner(spec: dict, cpu_s: float, cpu_total_s: float, work: str, keep: tuple[int, ...]) -> None:
    """In a freshly forked runner: own process group, files on fds 0-2, no other fd but `keep`,
    rlimits (CPU: `cpu_s` now, at most `cpu_total_s`), interpreter limits."""
    os.setpgid(0, 0)
    _close_fds_except(keep)
    paths = (os.path.join(work, n) for n in (".in", ".out", ".err"))
    fds = [os.open(p, flags, 0o600) for p, flags in zip(paths, (
        os.O_RDONLY, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), strict=True)]
    for fd, target in zip(fds, (0, 1, 2), strict=True):
        os.dup2(fd, target)
        os.close(fd)
    mb = 1024 * 1024
    _limit(resource.RLIMIT_AS, int(spec.get("memory_mb", 2048)) * mb)
    _limit(resource.RLIMIT_FSIZE, int(spec.get("output_mb", 64)) * mb)
    _cpu_limit(cpu_s, cpu_total_s)
    _limit(resource.RLIMIT_CORE, 0)
    if spec.get("stack_mb"):
        _limit(resource.RLIMIT_STACK, int(spec["stack_mb"]) * mb)
    sys.setrecursionlimit(LIMIT)
    # deterministic verdicts: an unseeded `random` gives the same draws in every run
    sys.modules["random"].seed(0)
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(LIMIT)
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    for name in IGNORED_SIGNALS + ("SIGINT",):
        if hasattr(signal, name):
            try:
                signal.signal(getattr(signal, name), signal.SIG_DFL)
            except (OSError, ValueError):
                pass
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _close_fds_except(keep: tuple[int, ...]) -> None:
    low = 3
    for fd in sorted(k for k in keep if k >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)


def _classify(exc: BaseException) -> str:
    """runtime_error, or missing_dependency for an import of a module outside the standard library."""
    if isinstance(exc, ImportError):
        name = (exc.name or "").split(".")[0]
        if name and name not in sys.stdlib_module_names:
            return MISSING
    return RUNTIME


def _describe(exc: BaseException) -> str:
    try:
        return f"{type(exc).__name__}: {exc}"[:300]
    except Exception:  # noqa: BLE001 - a hostile __str__
        return type(exc).__name__[:300]


def _send(fd: int, obj: dict) -> bool:
    try:
        data = (json.dumps(obj) + "\n").encode()
    except (ValueError, TypeError, RecursionError):
        return False
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        return True
    except OSError:
        return False


def _join_threads() -> None:
    """Wait for non-daemon threads, as interpreter shutdown does, so their output counts."""
    threading = sys.modules.get("threading")
    if threading is None:
        return
    for t in threading.enumerate():
        if t is not threading.current_thread() and not t.daemon:
            t.join()


def _flush_and_exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(code)


def run_program(code_obj) -> None:
    """stdin runner: execute the program as __main__; its exit status tells how it ended."""
    namespace = _prelude_namespace("__main__")
    try:
        exec(code_obj, namespace)
        _join_threads()
    except SystemExit:
        pass  # LCB treats exit() as the end of the program, whatever the code
    except BaseException as e:  # noqa: BLE001 - every failure of the program is a verdict
        try:
            sys.stderr.write(ERROR_MARK + _describe(e).replace("\n", " ") + "\n")
        except Exception:  # noqa: BLE001
            pass
        _flush_and_exit(EXIT_MISSING if _classify(e) == MISSING else EXIT_RUNTIME)
    _flush_and_exit(0)


class _Lines:
    """Line reader on a pipe (the runner's request channel)."""

    def __init__(self, fd: int):
        self.fd, self.buf = fd, b""

    def read(self) -> dict | None:
        while b"\n" not in self.buf:
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)


def run_calls(spec: dict, req: int, res: int) -> None:
    """functional / humaneval runner: define the candidate, then answer call requests with plain data.

    Request: {"call": n, "test": i, "fn": name or null (the Solution method), "args": [plain...]}.
    Reply:   {"call": n, "value": plain} or {"call": n, "status": ..., "error": ...}."""
    kind = spec["kind"]
    n_tests = max(1, int(spec.get("n_tests", 1)))
    timeout = float(spec["timeout_s"])
    if kind == "functional":
        namespace = _prelude_namespace("solution")
    else:
        namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        code_obj = compile(spec["code"], "<candidate>", "exec")
    except (SyntaxError, ValueError) as e:
        return _send(res, {"ready": False, "status": COMPILE, "error": _describe(e)})
    try:
        exec(code_obj, namespace)
        if kind == "functional":
            target = getattr(namespace["Solution"](), spec["func_name"])
        else:
            target = namespace[spec["entry_point"]]
    except KeyError as e:
        return _send(res, {"ready": False, "status": COMPILE, "error": f"not defined: {e}"})
    except AttributeError as e:
        return _send(res, {"ready": False, "status": COMPILE, "error": _describe(e)})
    except BaseException as e:  # noqa: BLE001
        return _send(res, {"ready": False, "status": _classify(e), "error": _describe(e)})
    _send(res, {"ready": True})
    lines = _Lines(req)
    current = -1
    while True:
        msg = lines.read()
        if not isinstance(msg, dict):
            return
        if msg.get("test") != current:  # a new test: a fresh CPU budget of timeout_s
            current = msg.get("test")
            _cpu_limit(timeout, timeout * (n_tests + 1))
        try:
            args = [from_plain(a) for a in msg["args"]]
            value = target(*args)
            reply = {"call": msg["call"], "value": to_plain(value)}
        except NotPlain as e:
            reply = {"call": msg["call"], "status": WRONG, "error": f"result is not plain data: {e}"[:300]}
        except SystemExit as e:
            reply = {"call": msg["call"], "status": RUNTIME, "error": f"SystemExit: {e}"[:300]}
        except BaseException as e:  # noqa: BLE001
            reply = {"call": msg["call"], "status": _classify(e), "error": _describe(e)}
        if not _send(res, reply):
            _send(res, {"call": msg["call"], "status": WRONG, "error": "result cannot be sent as JSON"})


# unittest ---------------------------------------------------------------------------------------
def expected_test_names(test_code: str) -> list[str]:
    """The test methods of class TestCases (and of its bases defined in the same code), sorted as
    unittest's loader sorts them; computed on the trusted side from the source alone."""
    tree = ast.parse(test_code)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    names: set[str] = set()
    seen: set[str] = set()

    def collect(name: str) -> None:
        if name in seen or name not in classes:
            return
        seen.add(name)
        node = classes[name]
        for item in node.body:
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name.startswith("test"):
                names.add(item.name)
        for base in node.bases:
            if isinstance(base, ast.Name):
                collect(base.id)

    collect("TestCases")
    return sorted(names)


def _method_codes(code_obj) -> dict[tuple[str, str], bytes]:
    """co_code of each function defined in a class body of a compiled module."""
    out: dict[tuple[str, str], bytes] = {}
    for const in code_obj.co_consts:
        if hasattr(const, "co_code"):
            for inner in const.co_consts:
                if hasattr(inner, "co_code"):
                    out[(const.co_name, inner.co_name)] = inner.co_code
    return out


def _unittest_fingerprint() -> dict:
    """Identity of the unittest machinery and of the hooks that could rewrite a test run."""
    import builtins
    import unittest
    from unittest import case, loader, result, suite

    marks: dict = {}
    for owner in (unittest.TestCase, unittest.TestResult, unittest.TestSuite, suite.BaseTestSuite,
                  unittest.TestLoader, getattr(case, "_Outcome", object), object, type):
        marks[("class", owner.__qualname__)] = frozenset((k, id(v)) for k, v in vars(owner).items())
    for module in (unittest, case, loader, result, suite):
        for k, v in vars(module).items():
            if not k.startswith("__") and type(v) is not type(sys):  # submodules appear on import
                marks[(module.__name__, k)] = id(v)
    for name in ("exec", "eval", "compile", "__import__", "__build_class__", "isinstance", "getattr",
                 "type", "super"):
        marks[("builtins", name)] = id(getattr(builtins, name, None))
    for name in ("settrace", "setprofile", "exit"):
        marks[("sys", name)] = id(getattr(sys, name, None))
    return marks


def _changed(before: dict) -> bool:
    """True when a mark of `before` differs now (new names in the modules are allowed)."""
    now = _unittest_fingerprint()
    return (any(now.get(k) != v for k, v in before.items()) or sys.gettrace() is not None
            or sys.getprofile() is not None)


def run_unittest(spec: dict, res: int) -> None:
    """unittest runner: code + "\\n" + test code as one module; the expected TestCases methods run
    as one suite; a result per test. Skips, errors, a different test list or tampering with the
    unittest machinery are failures (docs/sandbox.md states what this cannot rule out)."""
    import types
    import unittest

    expected = list(spec["expected_names"])
    try:
        code_obj = compile(spec["code"] + "\n" + spec["test_code"], "<candidate>", "exec")
        # the methods as compiled here (the test code's classes come last, so they win a name clash)
        reference = _method_codes(code_obj)
    except (SyntaxError, ValueError) as e:
        return _send(res, {"ready": False, "status": COMPILE, "error": _describe(e)})
    before = _unittest_fingerprint()
    run_suite, make_suite = unittest.TestSuite.run, unittest.TestSuite
    base_result, test_case = unittest.TestResult, unittest.TestCase
    module = types.ModuleType("__test__")
    sys.modules["__test__"] = module
    try:
        exec(code_obj, module.__dict__)
        cls = module.__dict__["TestCases"]
        if not (isinstance(cls, type) and issubclass(cls, test_case)):
            raise TypeError("TestCases is not a unittest.TestCase")
        loaded = sorted(unittest.TestLoader().getTestCaseNames(cls))
    except BaseException as e:  # noqa: BLE001
        return _send(res, {"ready": False, "status": _classify(e), "error": _describe(e)})

    def tampered() -> str:
        if _changed(before):
            return "the unittest machinery or a tracing hook was modified"
        for name in expected:
            owner = next((k for k in cls.__mro__ if name in vars(k)), None)
            fn = vars(owner).get(name) if owner is not None else None
            while fn is not None and getattr(fn, "__wrapped__", None) is not None:  # @patch, @wraps
                fn = fn.__wrapped__
            code = getattr(fn, "__code__", None)
            ref = reference.get((owner.__name__, name)) if owner is not None else None
            if code is None or (ref is not None and code.co_code != ref):
                return f"{name} was replaced"
        return ""

    why = tampered()
    if loaded != expected:
        why = why or f"test list differs: {loaded} != {expected}"
    if why:
        return _send(res, {"ready": False, "status": WRONG, "error": f"tampering: {why}"})
    _send(res, {"ready": True})

    class Reporter(base_result):
        def startTest(self, test):  # noqa: N802 - unittest's API
            base_result.startTest(self, test)
            self._name = test._testMethodName
            self._sent = False

        def _report(self, status: str, error: str = "") -> None:
            if self._sent:
                return
            self._sent = True
            why = tampered()
            if why:
                status, error = WRONG, f"tampering: {why}"
            _send(res, {"name": self._name, "status": status, "error": error})

        def addSuccess(self, test):  # noqa: N802
            self._report(PASS)

        def addFailure(self, test, err):  # noqa: N802
            self._report(WRONG, _describe(err[1]))

        def addError(self, test, err):  # noqa: N802
            self._report(_classify(err[1]), _describe(err[1]))

        def addSkip(self, test, reason):  # noqa: N802 - a skipped test did not pass
            self._report(WRONG, f"skipped: {reason}"[:300])

        def addExpectedFailure(self, test, err):  # noqa: N802
            self._report(WRONG, "expected failure")

        def addUnexpectedSuccess(self, test):  # noqa: N802
            self._report(WRONG, "unexpected success")

        def addSubTest(self, test, subtest, err):  # noqa: N802
            if err is not None:
                self._report(WRONG if issubclass(err[0], test.failureException) else _classify(err[1]),
                             _describe(err[1]))

        def stopTest(self, test):  # noqa: N802
            if not self._sent:
                self._report(WRONG, "no result")
            base_result.stopTest(self, test)

    run_suite(make_suite([cls(name) for name in expected]), Reporter())


# ----------------------------------------------------------------------------- host (per candidate)
def host_main(fds: list[int], protect: tuple[int, ...]) -> None:
    """One candidate: read its spec (code, limits: no test data), then fork runners on request.

    fds: host control in, host events out, runner requests in, runner results out."""
    ctrl, events, req, res = fds
    _close_fds_except(tuple(fds))
    null = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(null, target)
    os.close(null)
    lines = _Lines(ctrl)
    spec = lines.read()
    if not isinstance(spec, dict):
        os._exit(0)
    if spec.get("seccomp") and not _seccomp(protect + (os.getpid(),), base=False):
        _send(events, {"seccomp": False})
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
            _send(events, {"ready": False, "status": COMPILE, "error": _describe(e)})
            os._exit(0)
        _send(events, {"ready": True})
        while True:
            msg = lines.read()
            if not isinstance(msg, dict):
                os._exit(0)
            pid = os.fork()
            if pid == 0:
                try:
                    _enter_runner(spec, timeout, timeout, work, ())
                    run_program(code_obj)
                finally:
                    os._exit(3)
            _send(events, {"pid": pid})
            _, status = os.waitpid(pid, 0)
            _send(events, {"exit": msg.get("run"), "status": status})
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ctrl)
            os.close(events)
            whole = kind == "unittest"
            n = max(1, int(spec.get("n_tests", 1)))
            _enter_runner(spec, timeout, timeout * (1 if whole else n + 1), work, (req, res))
            if whole:
                run_unittest(spec, res)
            else:
                run_calls(spec, req, res)
            _flush_and_exit(0)
        finally:
            os._exit(3)
    os.close(req)
    os.close(res)
    _send(events, {"pid": pid})
    _, status = os.waitpid(pid, 0)
    _send(events, {"exit": 0, "status": status})
    os._exit(0)


def _seccomp(protect: tuple[int, ...], base: bool = True) -> bool:
    """Load a seccomp filter (needs pyseccomp + libseccomp); True only if it is in force.

    base: EPERM for DENIED_SYSCALLS and for signals to every process (kill(-1)); always: EPERM for
    signals to the `protect`ed pids and their process groups. Filters stack, so the host adds its
    own pid to the zygote's filter."""
    try:
        import errno

        import pyseccomp as sc
    except ImportError:
        return False
    try:
        f = sc.SyscallFilter(defaction=sc.ALLOW)
        deny = sc.ERRNO(errno.EPERM)
        if base:
            for name in DENIED_SYSCALLS:
                try:
                    f.add_rule(deny, name)
                except Exception:  # noqa: BLE001 - a syscall this architecture lacks
                    pass
        targets = {p & 0xFFFFFFFF for p in protect if p > 0}
        targets |= {(-p) & 0xFFFFFFFF for p in protect if p > 0}
        if base:
            targets.add(0xFFFFFFFF)  # kill(-1)
        for name in ("kill", "tkill", "tgkill"):
            for value in targets:
                f.add_rule(deny, name, sc.Arg(0, sc.MASKED_EQ, 0xFFFFFFFF, value))
        f.load()
        return True
    except Exception:  # noqa: BLE001 - libseccomp missing or too old
        return False


# ----------------------------------------------------------------------------- zygote
def zygote_main(sock: socket.socket, use_seccomp: bool, server_pid: int) -> None:
    """Fork a host per request. Holds the pre-imported modules and nothing of any job.

    First message: b"S1"/b"S0" (seccomp filter loaded or not). Then, per request (four fds over
    SCM_RIGHTS), it forks a host and answers its pid."""
    keep = sock.fileno()
    _close_fds_except((keep,))
    null = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(null, target)
    os.close(null)
    protect = tuple(sorted({1, server_pid, os.getpid()}))
    loaded = _seccomp(protect) if use_seccomp else False
    sock.sendall(b"S1\n" if loaded else b"S0\n")
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 64, 4)
        except OSError:
            os._exit(0)
        if not msg:
            os._exit(0)
        while True:  # reap finished hosts
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if len(fds) != 4:
            for fd in fds:
                os.close(fd)
            sock.sendall(b"0\n")
            continue
        try:
            pid = os.fork()
        except OSError:
            pid = -1
        if pid == 0:
            try:
                sock.close()
                host_main(list(fds), protect)
            finally:
                os._exit(0)
        for fd in fds:
            os.close(fd)
        sock.sendall(f"{max(pid, 0)}\n".encode())


# ----------------------------------------------------------------------------- server side
class Fault(Exception):
    """An infrastructure fault (not the candidate's doing): the host side retries on a fresh server."""


class Candidate(Exception):
    """The candidate's side failed a call: status and message for this test."""

    def __init__(self, status: str, error: str):
        super().__init__(error)
        self.status, self.error = status, error


class Pipe:
    """The server's end of one pipe to a candidate process: non-blocking, deadlines, line limits."""

    def __init__(self, fd: int):
        self.fd, self.buf = fd, b""
        os.set_blocking(fd, False)

    def write(self, data: bytes, deadline: float) -> bool:
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
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

    def line(self, deadline: float) -> bytes | None:
        """The next line; None at EOF; raises TimeoutError at the deadline, ValueError if too long."""
        if b"\n" not in self.buf:
            chunks = [self.buf]
            size = len(self.buf)
            while True:
                if size > MAX_LINE:
                    raise ValueError("line too long")
                remaining = deadline - time.monotonic()
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

    def message(self, deadline: float) -> dict | None:
        """The next line as a JSON object; None at EOF; ValueError for anything else."""
        line = self.line(deadline)
        if line is None:
            return None
        obj = json.loads(line)
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        return obj


class Session:
    """The server's view of one candidate: its host, its runner channel, outcomes."""

    def __init__(self, server: Server, job: dict, work: str):
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
        if not self.ctrl.write((json.dumps(spec) + "\n").encode(), time.monotonic() + 30):
            raise Fault("cannot send the candidate to its host")

    def close(self) -> None:
        for fd in self.own:
            try:
                os.close(fd)
            except OSError:
                pass
        self.own = []

    def host_event(self, deadline: float) -> dict | None:
        """The next event of the host; None when it is gone. Raises TimeoutError."""
        while True:
            try:
                ev = self.events.message(deadline)
            except ValueError as e:
                raise Fault(f"host protocol: {e}") from None
            if ev is None:
                return None
            if "pid" in ev and isinstance(ev["pid"], int):
                self.pids.append(ev["pid"])
                continue
            if ev.get("seccomp") is False:
                raise Fault("the seccomp filter did not load in the candidate's host")
            return ev

    def exit_status(self, deadline: float) -> int | None:
        try:
            ev = self.host_event(deadline)
        except TimeoutError:
            return None
        if ev is None or not isinstance(ev.get("status"), int):
            return None
        return ev["status"]

    # -- stdin
    def check_stdin(self) -> None:
        ready = self._host_ready()
        if not ready:
            return
        inp, out, err = (os.path.join(self.work, n) for n in (".in", ".out", ".err"))
        limit = int(self.job.get("output_mb", 64)) << 20
        for i, test in enumerate(self.job["tests"]):
            with open(inp, "w", encoding="utf-8", errors="surrogatepass") as fh:
                fh.write(test["input"])
            deadline = time.monotonic() + self.timeout * self.wall
            if not self.ctrl.write((json.dumps({"run": i}) + "\n").encode(), deadline):
                return self.emit(RUNTIME, "the candidate's host is gone")
            status = self.exit_status(deadline)
            if status is None:
                if time.monotonic() >= deadline:
                    return self.emit(TIMEOUT, TIME_LIMIT)
                return self.emit(RUNTIME, "the candidate's host is gone")
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
                # every process of this candidate has ended or is stopped by the sweep below
                self.server.sweep(spare=self.pids[:1])
                actual = _read_head(out, limit + 1).decode("utf-8", "replace")
                if compare.stdout_matches(actual, test["output"]):
                    self.emit(PASS)
                    continue
                return self.emit(WRONG, f"got {actual[:150]!r}")
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) in (EXIT_RUNTIME, EXIT_MISSING):
                tail = _read_tail(err)
                message = tail.rsplit(ERROR_MARK.strip("\n"), 1)[-1].strip() if ERROR_MARK.strip("\n") in tail \
                    else tail[-300:].strip()
                return self.emit(MISSING if os.WEXITSTATUS(status) == EXIT_MISSING else RUNTIME, message[:300])
            return self.emit(*_abnormal_end(status, err))

    def _host_ready(self) -> bool:
        deadline = time.monotonic() + 30 + self.timeout * self.wall
        try:
            ev = self.host_event(deadline)
        except TimeoutError:
            raise Fault("the candidate's host did not answer") from None
        if ev is None:
            self.emit(RUNTIME, "the candidate's host is gone")
            return False
        if ev.get("ready") is True:
            return True
        self.emit(_status(ev.get("status")), _text(ev.get("error")))
        return False

    # -- functional / humaneval
    def _runner_ready(self, deadline: float) -> bool:
        try:
            msg = self.res.message(deadline)
        except TimeoutError:
            self.emit(TIMEOUT, TIME_LIMIT)
            return False
        except ValueError:
            self.emit(RUNTIME, "malformed message from the candidate")
            return False
        if msg is None:
            self.emit(*self._runner_gone())
            return False
        if msg.get("ready") is True:
            return True
        if msg.get("ready") is False:
            self.emit(_status(msg.get("status")), _text(msg.get("error")))
        else:
            self.emit(RUNTIME, "malformed message from the candidate")
        return False

    def _runner_gone(self) -> tuple[str, str]:
        status = self.exit_status(time.monotonic() + 2)
        self.dead = True
        if status is None:
            return RUNTIME, "the candidate's runner is gone"
        return _abnormal_end(status, os.path.join(self.work, ".err"))

    def call(self, test: int, fn: str | None, args: list, deadline: float) -> object:
        """Call the candidate across the process boundary; its plain result, rebuilt here."""
        if self.dead:
            raise Candidate(RUNTIME, "the candidate's runner is gone")
        self.calls += 1
        try:
            line = (json.dumps({"call": self.calls, "test": test, "fn": fn,
                                "args": [to_plain(a) for a in args]}) + "\n").encode()
        except (NotPlain, ValueError, TypeError) as e:
            raise Fault(f"test arguments are not plain data: {e}") from None
        if not self.req.write(line, deadline):
            self.dead = True
            if time.monotonic() >= deadline:
                raise Candidate(TIMEOUT, TIME_LIMIT)
            raise Candidate(*self._runner_gone())
        try:
            msg = self.res.message(deadline)
        except TimeoutError:
            self.dead = True
            raise Candidate(TIMEOUT, TIME_LIMIT) from None
        except (ValueError, RecursionError):
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
            except (ValueError, TypeError, RecursionError):
                self.dead = True
                raise Candidate(WRONG, "result is not plain data") from None
        raise Candidate(_status(msg.get("status")), _text(msg.get("error")))

    def check_functional(self) -> None:
        if not self._runner_ready(time.monotonic() + self.timeout * self.wall):
            return
        for i, test in enumerate(self.job["tests"]):
            deadline = time.monotonic() + self.timeout * self.wall
            try:
                args = [json.loads(line) for line in test["input"].split("\n")]
                expected = json.loads(test["output"])
            except ValueError as e:
                raise Fault(f"test {i} is not JSON: {e}") from None
            try:
                got = self.call(i, None, args, deadline)
            except Candidate as c:
                return self.emit(c.status, c.error)
            if compare.functional_matches(got, expected):
                self.emit(PASS)
            else:
                return self.emit(WRONG, f"got {_short(got)}")

    def check_humaneval(self) -> None:
        if not self._runner_ready(time.monotonic() + self.timeout * self.wall):
            return
        entry = self.job["entry_point"]
        for i, test in enumerate(self.job["tests"]):
            deadline = time.monotonic() + self.timeout * self.wall

            def stand_in(*args, _i=i, _deadline=deadline):
                return self.call(_i, None, list(args), _deadline)

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
                    ok = _equal(got, want)
                self.emit(PASS if ok else WRONG, "" if ok else f"got {_short(got)}")
            except Candidate as c:
                self.emit(c.status, c.error)
            except AssertionError as e:
                self.emit(WRONG, _describe(e))
            except Fault:
                raise
            except Exception as e:  # noqa: BLE001 - the check failed on the candidate's values
                self.emit(RUNTIME, _describe(e))

    # -- unittest
    def check_unittest(self) -> None:
        deadline = time.monotonic() + self.timeout  # BCB: one wall-clock limit for the module
        expected = self.job["expected_names"]
        self.names = list(expected)
        if not self._runner_ready(deadline):
            return
        for name in expected:
            try:
                msg = self.res.message(deadline)
            except TimeoutError:
                return self.emit(TIMEOUT, TIME_LIMIT)
            except ValueError:
                return self.emit(RUNTIME, "malformed message from the candidate")
            if msg is None:
                return self.emit(*self._runner_gone())
            if msg.get("name") != name:
                return self.emit(RUNTIME, f"unexpected result (wanted {name})")
            status = msg.get("status")
            self.emit(status if status in STATUSES else RUNTIME, _text(msg.get("error")), name=name)
        # the whole module must end normally, within the limit, with nothing more to say
        status = self.exit_status(deadline)
        if status is None:
            return self.emit(TIMEOUT, TIME_LIMIT) if time.monotonic() >= deadline else \
                self.emit(RUNTIME, "the candidate's host is gone")
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            return self.emit(*_abnormal_end(status, os.path.join(self.work, ".err")))
        if self.res.buf or self.res.pending():
            self.emit(RUNTIME, "unexpected output on the result channel")


def _status(value: object) -> str:
    return value if value in STATUSES and value != PASS else RUNTIME


def _text(value: object) -> str:
    return str(value)[:300] if isinstance(value, str) else ""


def _short(value: object) -> str:
    try:
        return repr(value)[:150]
    except Exception:  # noqa: BLE001
        return "?"


def _equal(got: object, want: object) -> bool:
    try:
        return bool(got == want)
    except Exception:  # noqa: BLE001
        return False


def _open_regular(path: str):
    """A candidate-written file, opened only if it is a regular file (no symlink, FIFO or device)."""
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError("not a regular file")
    return os.fdopen(fd, "rb")


def _read_head(path: str, limit: int) -> bytes:
    try:
        with _open_regular(path) as fh:
            return fh.read(limit)
    except OSError:
        return b""


def _read_tail(path: str, limit: int = STDERR_KEEP) -> str:
    try:
        with _open_regular(path) as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - limit))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _abnormal_end(status: int, err_path: str) -> tuple[str, str]:
    """Status and message for a runner that ended without a verdict of its own."""
    code, why = _signal_status(status)
    if code == TIMEOUT:
        return code, why
    return code, (why + " " + _read_tail(err_path, 300)).strip()[:400]


def _signal_status(status: int) -> tuple[str, str]:
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


def validate_job(job: object) -> str:
    """Why a job line is unusable ('' when it is fine)."""
    if not isinstance(job, dict):
        return "a job must be a JSON object"
    if job.get("kind") not in KINDS:
        return f"unknown kind {job.get('kind')!r}"
    if not isinstance(job.get("code"), str):
        return "code must be a string"
    try:
        if not float(job["timeout_s"]) > 0:
            return "timeout_s must be positive"
        float(job.get("wall_factor", 2.0))
        int(job.get("memory_mb", 2048))
        int(job.get("output_mb", 64))
    except (KeyError, TypeError, ValueError):
        return "timeout_s, wall_factor, memory_mb and output_mb must be numbers"
    tests = job.get("tests", [])
    if not isinstance(tests, list) or not all(isinstance(t, dict) for t in tests):
        return "tests must be a list of objects"
    if job["kind"] in ("stdin", "functional"):
        for t in tests:
            if not (isinstance(t.get("input"), str) and isinstance(t.get("output"), str)):
                return "each test needs string input and output"
    if job["kind"] == "functional" and not isinstance(job.get("func_name"), str):
        return "functional jobs need func_name"
    if job["kind"] == "humaneval" and not (isinstance(job.get("entry_point"), str)
                                           and isinstance(job.get("test_code"), str)):
        return "humaneval jobs need entry_point and test_code"
    if job["kind"] == "unittest" and not isinstance(job.get("test_code"), str):
        return "unittest jobs need test_code"
    return ""


class Server:
    def __init__(self, tmp_root: str, own_pid_ns: bool, protocol_fds: tuple[int, ...], seccomp: bool = True):
        self.tmp_root = tmp_root
        self.protocol_fds = protocol_fds
        # killing every other process is only safe in a private pid namespace
        self.own_pid_ns = own_pid_ns and os.getpid() in (1, 2)
        if self.own_pid_ns:  # orphans of a candidate are re-parented to us, so that we can reap them
            _prctl(PR_SET_CHILD_SUBREAPER, 1)
        for name in PRELUDE_MODULES + ("unittest", "types", "threading", "errno", "ast"):
            __import__(name)
        _prelude_namespace("__main__")  # built once; every runner copies it
        try:  # loaded once here rather than in every forked process
            import pyseccomp  # noqa: F401
        except ImportError:
            pass
        if hasattr(sys, "set_int_max_str_digits"):
            sys.set_int_max_str_digits(LIMIT)
        self.shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self._cache: dict = {}
        self.zygote_pid = 0
        self.seccomp = False
        self.want_seccomp = seccomp
        self._start_zygote()

    def _start_zygote(self) -> None:
        """Fork the zygote now, before any job is read: it never holds test data."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            try:
                ours.close()
                zygote_main(theirs, self.want_seccomp, self.server_pid)
            finally:
                os._exit(0)
        theirs.close()
        self.zygote_pid, self.zygote = pid, ours
        self.zygote_buf = b""
        self.seccomp = self._zygote_line(30) == b"S1"

    server_pid = os.getpid()

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
        try:
            self._wipe()
            os.makedirs(work, mode=0o700)
            session = Session(self, job, work)
            spec = {k: job[k] for k in ("kind", "code", "timeout_s", "memory_mb", "output_mb", "stack_mb",
                                        "func_name", "entry_point") if k in job}
            spec.update(work=work, seccomp=bool(job.get("seccomp", True)) and self.seccomp,
                        n_tests=len(job.get("tests") or []))
            if job["kind"] == "unittest":
                try:
                    job["expected_names"] = expected_test_names(job["test_code"])
                except (SyntaxError, ValueError) as e:
                    raise Fault(f"the test code does not parse: {e}") from None
                spec.update(test_code=job["test_code"], expected_names=job["expected_names"])
            session.open(spec)
            getattr(session, f"check_{job['kind']}")()
            fault = ""
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
        if not self.zygote_alive():
            result["restart"] = True  # the host side starts a fresh server before the next job
        return result

    def sweep(self, spare: list[int] = ()) -> None:
        """Kill every process of the sandbox but us, the zygote and `spare` (own pid namespace only)."""
        if not self.own_pid_ns:
            return
        keep = {os.getpid(), self.zygote_pid, 1, *spare}
        for _ in range(2000):
            victims = [pid for pid in _live_pids() if pid not in keep]
            if not victims:
                return
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            self._reap()
            time.sleep(0.0005)

    def cleanup(self, pids: list[int]) -> None:
        for pid in reversed(pids):  # runners (own process groups), then the host
            for target in (-pid, pid):
                try:
                    os.kill(target, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        self.sweep()
        self._reap()
        self._wipe()

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

    def _wipe(self) -> None:
        import shutil

        for root in (self.tmp_root, self.shm):
            if not root:
                continue
            try:
                entries = os.listdir(root)
            except OSError:
                continue
            for entry in entries:
                path = os.path.join(root, entry)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    try:
                        os.unlink(path)
                    except OSError:
                        pass


def _live_pids() -> list[int]:
    """Pids in /proc that are not zombies."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        state = stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3]
        if state not in (b"Z", b"X"):
            out.append(int(name))
    return out


def _reply(out, obj: dict) -> None:
    out.write((json.dumps(obj) + "\n").encode())
    out.flush()


def main(argv: list[str]) -> int:
    tmp_root = "/tmp"
    own_pid_ns = False
    seccomp = True
    i = 0
    while i < len(argv):
        if argv[i] == "--tmp-root":
            tmp_root = argv[i + 1]
            i += 1
        elif argv[i] == "--own-pid-ns":
            own_pid_ns = True
        elif argv[i] == "--no-seccomp":
            seccomp = False
        i += 1
    os.umask(0o077)
    _harden_trusted()
    protocol_in = os.fdopen(os.dup(0), "rb")
    protocol_out = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    Server.server_pid = os.getpid()
    server = Server(tmp_root, own_pid_ns, (protocol_in.fileno(), protocol_out.fileno()), seccomp)
    hello = {"ready": True, "pid": os.getpid(), "uid": os.getuid(), "own_pid_ns": server.own_pid_ns,
             "seccomp": server.seccomp, "dumpable": _dumpable(), "dev_writable": os.access("/dev", os.W_OK),
             "python": sys.version.split()[0]}
    _reply(protocol_out, hello)
    for line in protocol_in:
        if not line.strip():
            continue
        try:
            job = json.loads(line)
            why = validate_job(job)
        except (ValueError, RecursionError) as e:
            job, why = None, f"not JSON: {e}"
        job_id = job.get("id") if isinstance(job, dict) else None
        if why:
            _reply(protocol_out, {"id": job_id, "outcomes": [], "names": None, "seconds": 0.0,
                                  "fault": f"bad job: {why}", "error": f"harness fault: bad job: {why}"})
            continue
        try:
            result = server.run(job)
        except Exception as e:  # noqa: BLE001 - a harness fault for this job; the host retries it
            result = {"id": job_id, "outcomes": [], "names": None, "seconds": 0.0,
                      "fault": _describe(e), "error": f"harness fault: {_describe(e)}", "restart": True}
        _reply(protocol_out, result)
        if result.get("restart"):
            return 0
    return 0


def _dumpable() -> bool:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(3, 0, 0, 0, 0) == 1  # PR_GET_DUMPABLE
    except (OSError, AttributeError):
        return True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
