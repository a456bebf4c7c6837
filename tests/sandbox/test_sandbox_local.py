"""The real local sandbox (bubblewrap): semantics per test type, hostile programs, cache, determinism."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from daj.config import ExecuteConfig
from daj.data.humaneval import load_humaneval_package
from daj.errors import DajError
from sandbox import local
from sandbox.pool import SandboxPool

CFG = ExecuteConfig(backend="local", timeout_s=1.0, wall_factor=4.0, workers=1,
                    memory_mb=512, output_mb=8, pids_limit=64, sandbox_memory_mb=2048)


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(CFG, progress=False) as r:
        yield r


def stdin_problem(tests, public=1):
    cases = [{"input": i, "output": o} for i, o in tests]
    return {"id": "lcb/t", "tests": {"type": "stdin", "public": cases[:public], "private": cases[public:]}}


ADD = stdin_problem([("1 2\n", "3\n"), ("5 5", "10"), ("-1 1", "0")])


def judge(pool, problem, code):
    return pool.check([(problem, textwrap.dedent(code))])[0]


def test_stdin_real_stdin_and_stop_at_first_failure(pool):
    v = judge(pool, ADD, "a, b = map(int, input().split())\nprint(a + b)")
    assert (v["status"], v["passed"], v["tests_passed"], v["tests_total"]) == ("pass", True, 3, 3)
    # real stdin: `for line in sys.stdin` and open(0) work (LCB's mock breaks both)
    for code in ("import sys\nfor line in sys.stdin:\n    print(sum(map(int, line.split())))",
                 "print(sum(map(int, open(0).read().split())))"):
        assert judge(pool, ADD, code)["passed"]
    v = judge(pool, ADD, "a, b = map(int, input().split())\nprint(a + b if a != 5 else 0)")
    assert (v["status"], v["public_passed"], v["passed"], v["outcomes"]) == (
        "wrong_answer", True, False, ["pass", "wrong_answer"])
    v = judge(pool, ADD, "print(1/0)")
    assert v["status"] == "runtime_error" and "ZeroDivisionError" in v["error"] and not v["public_passed"]
    assert judge(pool, ADD, "def f(:\n  pass")["status"] == "compile_error"
    assert judge(pool, ADD, "import numpy_not_installed")["status"] == "missing_dependency"
    # the LCB prelude (star imports), exit() as a normal end, big ints, deep recursion
    code = """
        a, b = map(int, input().split())
        def depth(n):
            return 0 if n == 0 else 1 + depth(n - 1)
        assert depth(20000) == 20000 and len(str(10 ** 5000)) == 5001
        print(reduce(add, [a, b]))
        exit()
        """
    assert judge(pool, ADD, code)["passed"]


def test_functional_shared_solution_and_json_arguments(pool):
    problem = {"id": "lcb/f", "tests": {"type": "functional", "func_name": "f",
               "public": [{"input": "[1, 2]\n3", "output": "[2, 3]"}],
               "private": [{"input": "[4]\n1", "output": "[4, 2]"}]}}
    code = """
        class Solution:
            calls = 0
            def f(self, xs: List[int], k: int) -> List[int]:
                self.calls += 1
                return (max(xs), k if self.calls == 1 else self.calls)
        """
    v = judge(pool, problem, code)  # one Solution() for all tests: calls reaches 2; tuple -> list
    assert v["passed"] and v["tests_total"] == 2
    v = judge(pool, problem, "class Solution:\n    def f(self, xs, k):\n        return [0]")
    assert v["status"] == "wrong_answer" and v["outcomes"] == ["wrong_answer"]
    v = judge(pool, problem, "class Solution:\n    def f(self, xs, k):\n        while True: pass")
    assert v["status"] == "timeout"
    assert judge(pool, problem, "class Other: pass")["status"] == "compile_error"


def test_humaneval_canonical_pass_and_wrong_fail(pool):
    problems = load_humaneval_package()
    canon = pool.check([(p, p["reference"]) for p in problems])
    assert sum(v["passed"] for v in canon) == len(problems) == 164
    verdicts = pool.check([(p, p["prompt"] + "\n    return None\n") for p in problems])
    assert not any(v["passed"] for v in verdicts)
    assert {v["status"] for v in verdicts} <= {"wrong_answer", "runtime_error"}


def test_unittest_module_with_per_test_outcomes(pool):
    tests = """
        import unittest
        class TestCases(unittest.TestCase):
            def test_ok(self):
                self.assertEqual(task_func(2), 4)
            def test_env(self):
                import os
                self.assertEqual((os.environ["TZ"], os.environ["MPLBACKEND"]), ("UTC", "Agg"))
        """
    problem = {"id": "bcb/x", "tests": {"type": "unittest", "public": [], "private": [],
                                        "code": textwrap.dedent(tests), "timeout_s": 20}}
    v = judge(pool, problem, "def task_func(x):\n    return x * x")
    assert (v["status"], v["passed"], v["tests_total"]) == ("pass", True, 2)
    v = judge(pool, problem, "def task_func(x):\n    return x + 3")
    assert v["status"] == "wrong_answer" and v["tests_passed"] == 1
    v = judge(pool, problem, "import not_a_real_lib_xyz\ndef task_func(x):\n    return x * x")
    assert v["status"] == "missing_dependency"
    hang = {"id": "bcb/h", "tests": {**problem["tests"], "timeout_s": 1}}
    v = judge(pool, hang, "import time\ndef task_func(x):\n    time.sleep(60)")
    assert v["status"] == "timeout"


HOSTILE = {
    "network": "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)\nprint('connected')",
    "write_outside": "open('{marker}', 'w').write('owned')\nprint('wrote')",
    "write_system": "open('/usr/owned.txt', 'w').write('owned')\nprint('wrote')",
    "read_root": "import os\nprint(sorted(os.listdir('/root')))\nprint(open('{secret}').read())",
    "host_env": "import os\nprint(os.environ.get('DAJ_TEST_SECRET', 'absent'))",
    "fork_bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
    "memory_bomb": "x = []\nwhile True:\n    x.append(bytearray(50 * 2 ** 20))",
    "infinite_loop": "while True:\n    pass",
    "sleep_forever": "import time\ntime.sleep(3600)",
    "huge_output": "import sys\nwhile True:\n    sys.stdout.write('y' * 65536)",
    "kill_parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
    "kill_all": "import os, signal\nos.kill(-1, signal.SIGKILL)",
    "os_exit": "import os\nos._exit(0)",
    "close_stdout": "import os\nos.close(1)\nprint(3)",
    "daemon": "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(3600)\nprint(3)",
}


def test_hostile_programs_are_contained(pool, tmp_path):
    marker = tmp_path / "owned.txt"
    secret = Path("/root/.daj_sandbox_test_secret")
    secret.write_text("top secret")
    os.environ["DAJ_TEST_SECRET"] = "leaked"
    try:
        problem = stdin_problem([("", "3\n")])
        codes = {k: v.format(marker=marker, secret=secret) for k, v in HOSTILE.items()}
        verdicts = dict(zip(codes, pool.check([(problem, c) for c in codes.values()]), strict=True))
    finally:
        secret.unlink()
        del os.environ["DAJ_TEST_SECRET"]
    assert not marker.exists() and not Path("/usr/owned.txt").exists()
    expected = {  # name -> (status, a fragment of the error)
        "network": ("runtime_error", "unreachable"), "write_outside": ("runtime_error", "No such file"),
        "write_system": ("runtime_error", "Read-only"),
        "read_root": ("runtime_error", "No such file"), "host_env": ("wrong_answer", "absent"),
        "memory_bomb": ("runtime_error", "MemoryError"), "infinite_loop": ("timeout", ""),
        "sleep_forever": ("timeout", ""), "huge_output": ("runtime_error", "output limit"),
        "kill_parent": ("runtime_error", ""), "kill_all": ("runtime_error", ""),
        "os_exit": ("wrong_answer", ""), "close_stdout": ("wrong_answer", ""), "daemon": ("pass", ""),
    }
    for name, v in verdicts.items():
        assert v["passed"] == (name == "daemon"), (name, v)  # the daemon printed 3 and exited
        if name in expected:
            status, fragment = expected[name]
            assert v["status"] == status and fragment in v["error"], (name, v)
    assert "top secret" not in verdicts["read_root"]["error"]
    assert verdicts["fork_bomb"]["status"] in ("timeout", "runtime_error"), verdicts["fork_bomb"]
    if pool.harnesses[0].hello.get("seccomp"):  # signals to the judge/server are refused: no restart
        assert "PermissionError" in verdicts["kill_parent"]["error"]
        assert "PermissionError" in verdicts["kill_all"]["error"]
        assert pool.harnesses[0].restarts == 0
    # after all that, the sandbox is intact: a fresh candidate sees only the sandbox's own processes
    # (bwrap init, server, judge, itself) and an empty private tmp
    census = "import os\nprint(len([p for p in os.listdir('/proc') if p.isdigit()]), os.listdir('/tmp'), os.getcwd())"
    v = judge(pool, stdin_problem([("", "4 ['job'] /tmp/job")]), census)
    assert v["passed"], v


def test_verdicts_are_deterministic(pool):
    codes = ["a, b = map(int, input().split())\nprint(a + b)", "print(1/0)", "while True: pass",
             "import random\nprint(random.choice([3, 10, 0]))"]
    first = pool.check([(ADD, c) for c in codes])
    second = pool.check([(ADD, c) for c in codes])
    assert first == second


def test_cache_makes_a_rerun_free(tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    with SandboxPool(CFG, cache_dir=cache, progress=False) as r:
        first = r.check([(ADD, "a, b = map(int, input().split())\nprint(a + b)")])
    calls = []
    with SandboxPool(CFG, cache_dir=cache, progress=False) as r:
        monkeypatch.setattr(r, "_ready", lambda n: calls.append(n))
        again = r.check([(ADD, "a, b = map(int, input().split())\nprint(a + b)")])
        assert r.cache_hits == 1
    assert calls == [] and again == first


def test_bwrap_failure_is_loud_and_unsandboxed_needs_the_param(monkeypatch):
    monkeypatch.setattr(local, "find_bwrap", lambda: None)
    with pytest.raises(DajError, match="allow_unsandboxed"), SandboxPool(CFG, progress=False) as r:
        r.check([(ADD, "print(3)")])
    monkeypatch.setattr(local, "find_bwrap", lambda: "/bin/false")  # a bwrap that cannot start
    with pytest.raises(DajError, match="did not start"), SandboxPool(CFG, progress=False) as r:
        r.check([(ADD, "print(3)")])
    cfg = CFG.model_copy(update={"allow_unsandboxed": True})
    with pytest.warns(UserWarning, match="WITHOUT"), SandboxPool(cfg, progress=False) as r:
        v = r.check([(ADD, "a, b = map(int, input().split())\nprint(a + b)")])[0]
    assert v["passed"]


def test_a_relative_interpreter_path_still_starts_the_sandbox(tmp_path):
    """`PATH=.venv/bin:$PATH dvc repro` makes sys.executable relative; the sandbox starts elsewhere."""
    import os
    import sys

    from sandbox.local import bwrap_command, find_bwrap

    relative = os.path.relpath(sys.executable)
    cmd = bwrap_command(find_bwrap() or "bwrap", relative)
    inner = cmd[cmd.index("--") + 1]
    assert os.path.isabs(inner) and not inner.startswith(".")
