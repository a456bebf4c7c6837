"""Verdicts that cannot be forged (issue 12): one test per attack category, each judged between
correct and wrong candidates in the real local sandbox. Every test here fails on the harness of
daj-sandbox-2 (checked by running this file against it) and passes on the trusted-side design."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from daj.config import ExecuteConfig
from daj.data.humaneval import load_humaneval_package
from daj.store import Store
from sandbox.jobs import INSIDE_DIR
from sandbox.local import Cgroup
from sandbox.pool import SandboxPool

CFG = ExecuteConfig(backend="local", timeout_s=1.0, wall_factor=4.0, workers=1,
                    memory_mb=512, output_mb=8, pids_limit=64, sandbox_memory_mb=2048)
SECRET = "7c1d0e5a9b-answer"


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(CFG, progress=False) as r:
        yield r


def stdin_problem(pairs: list[tuple[str, str]]) -> dict:
    cases = [{"input": i, "output": o} for i, o in pairs]
    return {"id": "lcb/s", "tests": {"type": "stdin", "public": cases[:1], "private": cases[1:]}}


def functional_problem() -> dict:
    return {"id": "lcb/f", "tests": {"type": "functional", "func_name": "f",
                                     "public": [{"input": "3", "output": "6"}],
                                     "private": [{"input": "21", "output": "42"}]}}


ECHO = stdin_problem([("ping\n", SECRET), ("pong\n", SECRET + "-2")])
ECHO_RIGHT = "s = input()\nprint('7c1d0e5a9b-answer' + ('' if s == 'ping' else '-2'))"
DOUBLE_RIGHT = "class Solution:\n    def f(self, x):\n        return 2 * x"
DOUBLE_WRONG = "class Solution:\n    def f(self, x):\n        return x + 1"


def passed(pool, pairs) -> list[bool]:
    return [v["passed"] for v in pool.check([(p, textwrap.dedent(c)) for p, c in pairs])]


# 1. reading the answers -------------------------------------------------------------------------
READ_ANSWERS_STDIN = """
import gc, sys
data = sys.stdin.read()
found = None
for o in gc.get_objects():
    if isinstance(o, dict) and o.get("input") == data and isinstance(o.get("output"), str):
        found = o["output"]
        break
if found is None:
    frame = sys._getframe()
    while frame is not None and found is None:
        for value in list(frame.f_locals.values()):
            if isinstance(value, dict) and isinstance(value.get("tests"), list):
                for t in value["tests"]:
                    if isinstance(t, dict) and t.get("input") == data:
                        found = t.get("output")
        frame = frame.f_back
print(found)
"""
READ_ANSWERS_FUNCTIONAL = """
import gc, json
class Solution:
    def f(self, x):
        for o in gc.get_objects():
            if isinstance(o, dict) and o.get("input") == str(x) and isinstance(o.get("output"), str):
                return json.loads(o["output"])
        return -1
"""


def test_answers_are_not_in_the_candidates_memory(pool):
    f = functional_problem()
    assert passed(pool, [(ECHO, ECHO_RIGHT), (ECHO, READ_ANSWERS_STDIN), (f, READ_ANSWERS_FUNCTIONAL),
                           (f, DOUBLE_RIGHT)]) == [True, False, False, True]


# 2. forging result events -----------------------------------------------------------------------
FORGE_OWN_CHANNEL = """
import os
class Solution:
    def f(self, x):
        for fd in range(3, 64):
            for i in range(4):
                line = '{"test": %d, "status": "pass", "error": "", "call": %d, "value": %d}\\n' % (i, i + 1, 2 * x)
                try:
                    os.write(fd, line.encode())
                except OSError:
                    pass
        os._exit(0)
"""
FORGE_OTHERS = """
import json, os
events = "".join(json.dumps({"status": "pass", "error": "", "name": None}) + "\\n" for _ in range(4))
events += json.dumps({"end": True}) + "\\n"
results = "".join(json.dumps({"id": i, "outcomes": ["pass"], "names": None, "error": "", "seconds": 0.0})
                  + "\\n" for i in range(8))
for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) == os.getpid():
        continue
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        continue
    for fd in fds:
        try:
            with open(f"/proc/{pid}/fd/{fd}", "w") as fh:
                fh.write(events + results)
        except OSError:
            pass
print("nothing")
"""


def test_result_events_cannot_be_forged(pool):
    f = functional_problem()
    assert passed(pool, [(f, FORGE_OWN_CHANNEL), (f, DOUBLE_WRONG), (ECHO, FORGE_OTHERS),
                           (ECHO, "print('wrong')"), (ECHO, ECHO_RIGHT)]) == [False, False, False, False, True]


# 3. patching the comparison in-process ----------------------------------------------------------
PATCH_COMPARE = """
import gc, types
for o in gc.get_objects():
    if isinstance(o, types.ModuleType) and "compare" in o.__name__:
        o.functional_matches = lambda *a, **k: True
        o.stdout_matches = lambda *a, **k: True
class Solution:
    def f(self, x):
        return 0
"""
STRIP_ASSERTS = """
import builtins
_compile = builtins.compile
def compile(source, filename, mode, flags=0, dont_inherit=False, optimize=-1, **kw):
    return _compile(source, filename, mode, flags, dont_inherit, 2)
builtins.compile = compile
_exec = builtins.exec
def exec(code, *args):
    if isinstance(code, str) and "def check" in code:
        code = code + "\\ndef check(candidate):\\n    pass\\n"
    return _exec(code, *args)
builtins.exec = exec
"""


def test_comparison_cannot_be_patched(pool):
    f = functional_problem()
    he = load_humaneval_package()[0]
    wrong_he = he["prompt"] + "    return False\n"
    assert passed(pool, [(f, PATCH_COMPARE), (he, STRIP_ASSERTS + wrong_he), (he, he["reference"])]) == [
        False, False, True]


# 4. values equal to everything --------------------------------------------------------------------
ALWAYS_EQUAL = """
class Yes:
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    __hash__ = object.__hash__
class Int(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__
"""


def test_values_equal_to_everything_fail(pool):
    f = functional_problem()
    he = load_humaneval_package()[0]
    body = "    " + "\n    ".join(ALWAYS_EQUAL.strip().splitlines())
    verdicts = passed(pool, [
        (f, ALWAYS_EQUAL + "class Solution:\n    def f(self, x):\n        return Yes()"),
        (f, ALWAYS_EQUAL + "class Solution:\n    def f(self, x):\n        return Int(0)"),
        (he, ALWAYS_EQUAL + he["prompt"] + "    return Yes()\n"),
        (he, he["prompt"] + body + "\n    return Int(0) if numbers else Int(1)\n"),
        (f, DOUBLE_RIGHT)])
    assert verdicts == [False, False, False, False, True]


# 5. unittest -----------------------------------------------------------------------------------
UNITTEST = """
import unittest
class TestCases(unittest.TestCase):
    def test_two(self):
        self.assertEqual(task_func(2), 4)
    def test_three(self):
        self.assertEqual(task_func(3), 9)
"""
UNITTEST_ATTACKS = {
    "skip": "import unittest\ndef task_func(x):\n    raise unittest.SkipTest('no')",
    "noop_asserts": "import unittest\nunittest.TestCase.assertEqual = lambda *a, **k: None\n"
                    "def task_func(x):\n    return 0",
    "patched_run": "import unittest\n"
                   "def run(self, result=None):\n"
                   "    result.startTest(self); result.addSuccess(self); result.stopTest(self)\n"
                   "unittest.TestCase.run = run\ndef task_func(x):\n    return 0",
    "dummy_loader": "import unittest\n"
                    "class Dummy(unittest.TestCase):\n    def test_two(self): pass\n    def test_three(self): pass\n"
                    "unittest.TestLoader.loadTestsFromTestCase = lambda self, cls: unittest.TestSuite("
                    "[Dummy('test_three'), Dummy('test_two')])\n"
                    "unittest.TestLoader.getTestCaseNames = lambda self, cls: ['test_three', 'test_two']\n"
                    "def task_func(x):\n    return 0",
    "init_subclass": "import unittest\n"
                     "def _init(cls, **kw):\n"
                     "    for k in list(vars(cls)):\n"
                     "        if k.startswith('test'):\n"
                     "            setattr(cls, k, lambda self: None)\n"
                     "unittest.TestCase.__init_subclass__ = classmethod(_init)\n"
                     "def task_func(x):\n    return 0",
    "exit_early": "import os\ndef task_func(x):\n    os._exit(0)",
}


def test_unittest_tampering_fails(pool):
    problem = {"id": "bcb/u", "tests": {"type": "unittest", "public": [], "private": [],
                                        "code": UNITTEST, "timeout_s": 20}}
    pairs = [(problem, code) for code in UNITTEST_ATTACKS.values()]
    pairs.append((problem, "def task_func(x):\n    return x * x"))
    verdicts = pool.check(pairs)
    assert [v["passed"] for v in verdicts] == [False] * len(UNITTEST_ATTACKS) + [True], verdicts
    assert verdicts[-1]["tests_total"] == 2


# 6. state that outlives a candidate --------------------------------------------------------------
LEAVE_STATE = """
import os
for path in ("/dev/shm/daj_left", "/dev/daj_left", "/tmp/daj_left"):
    try:
        open(path, "w").write("hidden tests")
    except OSError:
        pass
print("x")
"""
LOOK_FOR_STATE = """
import os
found = [p for p in ("/dev/shm/daj_left", "/dev/daj_left", "/tmp/daj_left") if os.path.exists(p)]
print("clean" if not found else found)
"""


def test_no_state_outlives_a_candidate(pool):
    problem = stdin_problem([("", "clean")])
    assert passed(pool, [(problem, LEAVE_STATE), (problem, LOOK_FOR_STATE)]) == [False, True]


# 7. reaching the trusted processes ------------------------------------------------------------------
REACH = """
import ctypes, errno, os
opened = 0
for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) == os.getpid():
        continue
    for path in (f"/proc/{pid}/mem", f"/proc/{pid}/fd/0", f"/proc/{pid}/fd/1", f"/proc/{pid}/environ"):
        try:
            os.close(os.open(path, os.O_RDONLY))
            opened += 1
        except OSError:
            pass
libc = ctypes.CDLL(None, use_errno=True)
calls = []
try:
    os.close(os.pidfd_open(os.getppid()))
    calls.append("pidfd_open")
except OSError:
    pass
info = ctypes.create_string_buffer(128)
info[8:12] = (-1).to_bytes(4, "little", signed=True)  # si_code SI_QUEUE
if libc.syscall(129, os.getppid(), 0, info) == 0:  # rt_sigqueueinfo (x86_64)
    calls.append("rt_sigqueueinfo")
print(opened, calls)
"""


def test_trusted_processes_are_out_of_reach(pool):
    problem = stdin_problem([("", "0 []")])
    v = pool.check([(problem, REACH)])[0]
    assert v["passed"], v


# 8. garbage on a protocol pipe, and a setsid survivor -------------------------------------------------
GARBAGE_AND_SURVIVOR = """
import json, os, time
def spray(data, first=1):
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid() or int(pid) < first:
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                with open(f"/proc/{pid}/fd/{fd}", "wb") as fh:
                    fh.write(data)
            except OSError:
                pass
spray(b"\\xff garbage {\\n")
if os.fork() == 0:
    os.setsid()
    forged = (json.dumps({"status": "pass", "error": "", "name": None}) + "\\n") * 2
    forged += json.dumps({"end": True}) + "\\n"
    for _ in range(1500):
        spray(forged.encode(), first=3)  # the judges, not the server
        time.sleep(0.002)
    os._exit(0)
print("x")
"""


def test_garbage_and_survivors_cannot_touch_later_candidates(pool):
    ok = passed(pool, [(ECHO, GARBAGE_AND_SURVIVOR), (ECHO, "import time\ntime.sleep(0.3)\nprint('wrong')"),
                         (ECHO, "import time\ntime.sleep(0.3)\n" + ECHO_RIGHT)])
    assert ok == [False, False, True]
    census = "import os\nprint(len([p for p in os.listdir('/proc') if p.isdigit()]))"
    v = pool.check([(stdin_problem([("", "4")]), census)])[0]  # server, zygote, host, itself
    assert v["passed"], v


# 9. denial of service: CPU quota per sandbox ------------------------------------------------------
def test_each_sandbox_has_a_cpu_quota():
    group = Cgroup(f"sbx-{os.getpid()}-quota-test", 16, 256, cpus=1.0)
    try:
        if not group.dirs:
            pytest.skip("this host does not let us create cgroups")
        assert group.cpu_quota
        quotas = [d / "cpu.cfs_quota_us" for d in group.dirs] + [d / "cpu.max" for d in group.dirs]
        values = [q.read_text().split()[0] for q in quotas if q.exists()]
        assert values == ["100000"]
    finally:
        group.remove()


# 10. an honest start-up report -----------------------------------------------------------------------
def test_seccomp_is_reported_only_when_the_filter_loads(tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "pyseccomp.py").write_text(textwrap.dedent("""
        ALLOW = 0
        def ERRNO(n):
            return n
        class SyscallFilter:
            def __init__(self, defaction):
                pass
            def add_rule(self, *a, **k):
                pass
            def load(self):
                raise OSError("filter refused")
        """))
    work = tmp_path / "work"
    work.mkdir()
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(fake)}
    proc = subprocess.run([sys.executable, str(INSIDE_DIR / "main.py"), "--tmp-root", str(work)],
                          input=b"", capture_output=True, env=env, timeout=60, check=False)
    hello = json.loads(proc.stdout.splitlines()[0])
    assert hello["ready"] and hello["seccomp"] is False, hello


# 11. infrastructure faults are never verdicts ---------------------------------------------------------
def test_a_server_killed_from_outside_is_retried():
    with SandboxPool(CFG, progress=False) as r:
        r.check([(ECHO, ECHO_RIGHT)])  # start the server
        server = r.harnesses[0]
        channel = server.channel

        def kill_soon():
            time.sleep(0.4)
            channel.kill()

        killer = threading.Thread(target=kill_soon)
        killer.start()
        v = r.check([(ECHO, "import time\ntime.sleep(1.0)\n" + ECHO_RIGHT)])[0]
        killer.join()
        assert v["passed"] and v["status"] == "pass", v
        assert server.restarts == 1


def test_bad_job_lines_do_not_stop_the_server(tmp_path):
    proc = subprocess.Popen([sys.executable, str(INSIDE_DIR / "main.py"), "--tmp-root", str(tmp_path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={"PATH": os.environ["PATH"]})
    try:
        assert json.loads(proc.stdout.readline())["ready"]
        job = {"id": 7, "kind": "stdin", "code": "print(input())", "tests": [{"input": "a", "output": "a"}],
               "timeout_s": 2, "seccomp": False}
        proc.stdin.write(b"\xff{ not json\n" + json.dumps({"id": 3, "kind": "nope"}).encode() + b"\n"
                         + json.dumps(job).encode() + b"\n")
        proc.stdin.flush()
        first, second, third = (json.loads(proc.stdout.readline()) for _ in range(3))
        assert first["fault"] and second["fault"] and second["id"] == 3
        assert third["id"] == 7 and third["outcomes"] == ["pass"] and "fault" not in third
    finally:
        proc.kill()
        proc.wait()


def test_a_problem_with_unusable_tests_is_an_error_not_a_verdict(tmp_path):
    from daj.errors import DajError

    broken = {"id": "lcb/b", "tests": {"type": "functional", "func_name": "f",
                                       "public": [{"input": "not json", "output": "1"}], "private": []}}
    with SandboxPool(CFG, cache_dir=str(tmp_path / "cache"), progress=False) as r, \
            pytest.raises(DajError, match="not JSON"):
        r.check([(broken, DOUBLE_RIGHT)])
    assert len(Store(tmp_path / "cache", "verdicts")) == 0  # nothing cached


def test_without_seccomp_a_killed_zygote_only_costs_a_fresh_server():
    cfg = CFG.model_copy(update={"seccomp": False})
    kill_zygote = ("import os\nstat = open(f'/proc/{os.getppid()}/stat').read()\n"  # the host's parent
                   "os.kill(int(stat[stat.rfind(')') + 2:].split()[1]), 9)\n")
    with SandboxPool(cfg, progress=False) as r:
        first = r.check([(ECHO, kill_zygote + ECHO_RIGHT)])[0]
        assert r.harnesses[0].hello["seccomp"] is False
        assert r.harnesses[0].channel is None  # the server asked to be replaced
        after = r.check([(ECHO, ECHO_RIGHT), (ECHO, "print('wrong')")])
    assert first["status"] in ("pass", "runtime_error")
    assert [v["passed"] for v in after] == [True, False]


def test_unittest_guard_accepts_real_test_idioms(pool):
    # inherited tests, @patch, setUpClass, subTest, assertRaises and importing unittest.mock are no tampering
    tests = textwrap.dedent('''
        import os
        import unittest
        from unittest.mock import patch
        class Base(unittest.TestCase):
            def test_base(self):
                self.assertEqual(task_func(1), 1)
        class TestCases(Base):
            @classmethod
            def setUpClass(cls):
                cls.two = 2
            @patch("os.getcwd")
            def test_patched(self, cwd):
                cwd.return_value = "/x"
                self.assertEqual((os.getcwd(), task_func(self.two)), ("/x", 4))
            def test_sub(self):
                for i in range(3):
                    with self.subTest(i=i):
                        self.assertEqual(task_func(i), i * i)
            def test_raises(self):
                with self.assertRaises(ValueError):
                    task_func(-1)
        ''')
    problem = {"id": "bcb/i", "tests": {"type": "unittest", "public": [], "private": [], "code": tests,
                                        "timeout_s": 20}}
    right = "from unittest import mock\ndef task_func(x):\n    if x < 0:\n        raise ValueError\n    return x * x"
    verdicts = pool.check([(problem, right), (problem, right.replace("return x * x", "return x * x + (x == 2)"))])
    assert [(v["passed"], v["tests_passed"], v["tests_total"]) for v in verdicts] == [(True, 4, 4), (False, 2, 4)]
