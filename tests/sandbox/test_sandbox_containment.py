"""Issue 21, classes 1-4: nothing a candidate does outlives it or stops the stage, and BigCodeBench's
cheap forgeries fail. Each test judges a hostile candidate and then a neighbour on the same sandbox
(one worker), on the local backend and, where a daemon and the test image are there, on docker.

Every test here failed on the harness of commit 775957a (daj-sandbox-3; see the report of issue 21
for how it was run against that tree)."""

from __future__ import annotations

import textwrap

import pytest
from _sandbox_backends import BACKENDS, pool_config

from sandbox.pool import SandboxPool

STDIN_OK = {"id": "lcb/echo", "tests": {"type": "stdin", "public": [{"input": "ping\n", "output": "pong"}],
                                        "private": [{"input": "pang\n", "output": "pong"}]}}
ECHO_RIGHT = "input()\nprint('pong')"
ECHO_WRONG = "input()\nprint('wrong')"


@pytest.fixture(scope="module", params=BACKENDS)
def pool(request):
    with SandboxPool(pool_config(request.param), cache_dir=None, progress=False) as p:
        yield p


def judge(pool, pairs) -> list[dict]:
    """One check per candidate, in this order (one check of many sorts its jobs longest first)."""
    return [pool.check([(p, textwrap.dedent(c))])[0] for p, c in pairs]


# 1. nothing outlives its candidate ---------------------------------------------------------------
# A process whose main thread exited (the thread group shows as a zombie in /proc) in a session of
# its own, with a thread that kills every process it did not know at its start: the next candidate's
# host and runners included.
ZOMBIE_LEADER = """
import ctypes, os, threading, time
ready, told = os.pipe()
if os.fork() == 0:
    os.setsid()
    def survive():
        while open("/proc/%d/stat" % os.getpid()).read().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.001)
        os.write(told, b"z")  # the thread group now looks like a zombie in /proc
        work()
    threading.Thread(target=survive).start()
    ctypes.CDLL(None).syscall(60, 0)  # SYS_exit: only the main thread ends (x86_64)
os.read(ready, 1)
input()
print("pong")
"""
# a thread that kills every process started after it: the next candidate's host and runners
ZOMBIE_LEADER_KILLER = """
import os, time
def started(pid):
    return int(open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()[19])
def work():
    me = started(os.getpid())
    for _ in range(30000):
        for p in os.listdir("/proc"):
            try:
                if p.isdigit() and started(p) > me:
                    os.kill(int(p), 9)
            except (OSError, ValueError):
                pass
        time.sleep(0.0005)
""" + ZOMBIE_LEADER
# the same survivor, rewriting the output file of the next candidate with the right answer
ZOMBIE_LEADER_FORGER = """
import os, time
def work():
    for _ in range(60000):
        try:
            fd = os.open("/tmp/job/.out", os.O_WRONLY)
            os.write(fd, b"pong\\n")
            os.close(fd)
        except OSError:
            pass
        time.sleep(0.0002)
""" + ZOMBIE_LEADER
SLOW_SILENT = "import time\ninput()\ntime.sleep(0.3)"


def test_a_survivor_cannot_kill_the_next_candidate(pool):
    one_test = {"id": "lcb/one", "tests": {"type": "stdin", "public": [{"input": "ping\n", "output": "pong"}]}}
    verdicts = judge(pool, [(one_test, ZOMBIE_LEADER_KILLER), (STDIN_OK, "import time\ntime.sleep(0.5)\n"
                                                                        + ECHO_RIGHT)])
    assert [v["status"] for v in verdicts] == ["pass", "pass"], verdicts


def test_a_survivor_cannot_forge_the_next_output(pool):
    verdicts = judge(pool, [(STDIN_OK, ZOMBIE_LEADER_FORGER), (STDIN_OK, SLOW_SILENT)])
    assert [v["passed"] for v in verdicts] == [True, False], verdicts


# 2. no scratch state outlives its candidate ---------------------------------------------------------
LEAVE_LOCKED = """
import os
for root in ROOTS:
    for mode in (0o500, 0o000):
        d = os.path.join(root, f"locked{mode}")
        os.makedirs(os.path.join(d, "inner"), exist_ok=True)
        open(os.path.join(d, "inner", "answers"), "w").write("ping -> pong")
        os.chmod(os.path.join(d, "inner"), 0o500)
        os.chmod(d, mode)
input()
print("pong")
"""
FIND_LEFTOVERS = """
import os
here = os.getcwd()  # the working directory: only this runner's own stdin, stdout and stderr files
left = [n for n in os.listdir(here) if n not in (".in", ".out", ".err")]
for root in ("/tmp", "/dev/shm"):
    for dirpath, dirs, files in os.walk(root):
        left += [os.path.join(dirpath, n) for n in dirs + files if not dirpath.startswith(here)
                 and os.path.join(dirpath, n) != here]
input()
print("pong" if not left else left)
"""
# SysV IPC objects live as long as the sandbox's IPC namespace: an answer table for later candidates
LEAVE_SYSV = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
shmid = libc.shmget(0x5eed, 4096, 0o1666)  # IPC_CREAT | 0666
print("pong" if shmid >= 0 or ctypes.get_errno() == 1 else "pong")
"""
FIND_SYSV = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
print("pong" if libc.shmget(0x5eed, 0, 0) < 0 else "leak")
"""


def test_locked_directories_do_not_reach_the_next_candidate(pool):
    empty = {"id": "lcb/e", "tests": {"type": "stdin", "public": [{"input": "ping\n", "output": "pong"}]}}
    restarts = sum(h.restarts for h in pool.harnesses)
    verdicts = judge(pool, [(empty, "ROOTS = ('/tmp', '/dev/shm')" + LEAVE_LOCKED), (empty, FIND_LEFTOVERS),
                            (empty, "ROOTS = ('.',)" + LEAVE_LOCKED), (empty, FIND_LEFTOVERS),
                            (empty, LEAVE_SYSV), (empty, FIND_SYSV)])
    assert [v["passed"] for v in verdicts] == [True] * 6, verdicts
    assert sum(h.restarts for h in pool.harnesses) == restarts  # no harness fault on the way


# 3. no message stops the stage ------------------------------------------------------------------------
NESTED_ON_EVERY_FD = """
import os
for fd in range(3, 64):
    try:
        os.write(fd, b"[" * 100000 + b"\\n")
    except OSError:
        pass
class Solution:
    def f(self, x):
        return 2 * x
"""
NESTED_AS_RESULT = """
import os
class Solution:
    def f(self, x):
        for fd in range(3, 64):
            try:
                os.write(fd, b'{"call": 1, "value": ' + b"[" * 100000 + b"\\n")
            except OSError:
                pass
        return 2 * x
"""
FUNCTIONAL = {"id": "lcb/f", "tests": {"type": "functional", "func_name": "f",
                                       "public": [{"input": "3", "output": "6"}], "private": []}}


def test_hostile_messages_are_the_candidates_failure(pool):
    decimal = {"id": "lcb/d", "tests": {"type": "stdin", "public": [{"input": "", "output": "1.5"}]}}
    verdicts = judge(pool, [(FUNCTIONAL, NESTED_ON_EVERY_FD), (FUNCTIONAL, NESTED_AS_RESULT),
                            (decimal, "print('sNaN')"), (decimal, "print('1.50')"),
                            (FUNCTIONAL, "class Solution:\n    def f(self, x):\n        return 2 * x")])
    assert [(v["passed"], v["status"]) for v in verdicts] == [
        (False, "runtime_error"), (False, "runtime_error"), (False, "wrong_answer"), (True, "pass"),
        (True, "pass")], verdicts


# 4. BigCodeBench forgeries without tampering with unittest -----------------------------------------
BCB_TESTS = """
import json
import unittest
import zlib
from base64 import b64decode
class TestCases(unittest.TestCase):
    def test_blob(self):
        blob = task_blob()
        self.assertEqual(zlib.decompress(b64decode(json.loads(blob)["z"])), b"daj")
    def test_square(self):
        result = task_func(3)
        self.assertEqual(result, 9)
"""
BCB_FORGERIES = {
    # unittest's own control-flow exception, raised by the tested function: recorded as a success
    "should_stop": "import unittest.case\n"
                   "def task_func(x):\n    raise unittest.case._ShouldStop\n"
                   "def task_blob():\n    raise unittest.case._ShouldStop",
    # assert methods shadowed on the running test's instance (through its frame) and on the others
    "shadowed_assert": "import base64, gc, sys, unittest, zlib\n"
                       "def _quiet():\n"
                       "    for o in gc.get_objects():\n"
                       "        if isinstance(o, unittest.TestCase):\n"
                       "            o.assertEqual = lambda *a, **k: None\n"
                       "    sys._getframe(2).f_locals['self'].assertEqual = lambda *a, **k: None\n"
                       "def task_func(x):\n    _quiet()\n    return 0\n"
                       "def task_blob():\n    _quiet()\n"
                       "    return '{\"z\": \"%s\"}' % base64.b64encode(zlib.compress(b'other')).decode()",
    # unittest's functions rewritten in place (same function objects, other code)
    "assert_code_swapped": "import base64, unittest, zlib\n"
                           "unittest.TestCase.assertEqual.__code__ = (lambda self, a, b, msg=None: None).__code__\n"
                           "def task_func(x):\n    return 0\n"
                           "def task_blob():\n"
                           "    return '{\"z\": \"%s\"}' % base64.b64encode(zlib.compress(b'x')).decode()",
    # the test's own library functions rebound before the test code imports them
    "rebound_library": "import json, zlib\n"
                       "json.loads = lambda s: {'z': ''}\nzlib.decompress = lambda b: b'daj'\n"
                       "def task_func(x):\n    return 9\n"
                       "def task_blob():\n    return 'x'",
    # ... or while the test runs: a name the test imported, and a module function
    "rebound_import": "import sys\n"
                      "def task_func(x):\n    return 9\n"
                      "def task_blob():\n"
                      "    sys._getframe(1).f_globals['b64decode'] = lambda s: b''\n"
                      "    __import__('zlib').decompress = lambda b: b'daj'\n"
                      "    return '{\"z\": \"\"}'",
}
BCB_RIGHT = ("import base64, json, zlib\ndef task_func(x):\n    return x * x\n"
             "def task_blob():\n    return json.dumps({'z': base64.b64encode(zlib.compress(b'daj')).decode()})")


def test_bigcodebench_forgeries_fail(pool):
    problem = {"id": "bcb/forge", "tests": {"type": "unittest", "public": [], "private": [],
                                            "code": BCB_TESTS, "timeout_s": 30}}
    verdicts = judge(pool, [(problem, code) for code in BCB_FORGERIES.values()] + [(problem, BCB_RIGHT)])
    got = {name: (v["passed"], v["error"][:120]) for name, v in zip([*BCB_FORGERIES, "right"], verdicts,
                                                                    strict=True)}
    assert [v["passed"] for v in verdicts] == [False] * len(BCB_FORGERIES) + [True], got
    assert all("tampering" in v["error"] or "did not run to its end" in v["error"] for v in verdicts[:-1]), got
    assert verdicts[-1]["tests_passed"] == 2


def test_without_a_cgroup_the_pid_namespace_sweep_contains_them_too(monkeypatch):
    """Where no freezer cgroup can be made (not root), the harness sweeps its own pid namespace, zombie
    thread groups included: the same survivors fail to reach the next candidate."""
    from sandbox.local import Cgroup

    monkeypatch.setattr(Cgroup, "open_freezer", lambda self: None)
    one_test = {"id": "lcb/one", "tests": {"type": "stdin", "public": [{"input": "ping\n", "output": "pong"}]}}
    with SandboxPool(pool_config("local"), progress=False) as pool:
        verdicts = judge(pool, [(one_test, ZOMBIE_LEADER_KILLER), (STDIN_OK, "import time\ntime.sleep(0.5)\n"
                                                                             + ECHO_RIGHT),
                                (STDIN_OK, ZOMBIE_LEADER_FORGER), (STDIN_OK, SLOW_SILENT)])
        assert pool.harnesses[0].hello["containment"] == "pid namespace sweep"
    assert [v["passed"] for v in verdicts] == [True, True, True, False], verdicts
