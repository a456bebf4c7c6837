"""The candidate's side of every channel it can write, fuzzed in the real local sandbox (issue 21.5).

Hypothesis plays a candidate that writes random and adversarial bytes on its result channel, its
stdout, its stderr, its exit status, in its scratch and on a unittest result line. Whatever it
writes: no harness fault (no sandbox_error, no restart), the verdict is a failure (the expected
answers are secrets a candidate cannot print by chance), and the next candidate on the same sandbox
finds nothing left. Example counts are bounded: 40 per channel, about 15 s in all.
"""

from __future__ import annotations

import textwrap

import pytest
from _sandbox_backends import pool_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.inside.protocol import TEST_STATUSES
from sandbox.pool import SandboxPool

SECRET = "81927364519283746"
EXAMPLES = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
ADVERSARIAL = st.sampled_from([b"[" * 100000 + b"\n", b"{\"call\": 1, \"value\": " + b"[" * 5000 + b"\n",
                               b"\xff\xfe\n", b'{"ready": true}\n{"call": 1, "status": "pass"}\n',
                               b'{"name": "test_a", "status": "pass", "error": ""}\n' * 3, b"\n" * 1000,
                               b"NaN\n", b'{"call": 1, "value": NaN}\n', b"sNaN\n", b"\x00" * 100])
PAYLOAD = ADVERSARIAL | st.binary(max_size=2000)
STDIN = {"id": "lcb/fuzz", "tests": {"type": "stdin", "public": [{"input": "1\n", "output": SECRET}],
                                     "private": [{"input": "2\n", "output": SECRET}]}}
FUNCTIONAL = {"id": "lcb/fuzz-f", "tests": {"type": "functional", "func_name": "f",
                                            "public": [{"input": "1", "output": SECRET}], "private": []}}
UNITTEST = {"id": "bcb/fuzz", "tests": {"type": "unittest", "public": [], "private": [], "timeout_s": 30,
                                        "code": textwrap.dedent(f"""
                                            import unittest
                                            class TestCases(unittest.TestCase):
                                                def test_a(self):
                                                    self.assertEqual(task_func(), {SECRET})
                                            """)}}
LOOK_AROUND = """
import os
here = os.getcwd()
left = [n for n in os.listdir(here) if n not in (".in", ".out", ".err")]
for root in ("/tmp", "/dev/shm"):
    left += [os.path.join(root, n) for n in os.listdir(root) if os.path.join(root, n) != here.rsplit("/", 1)[0]
             and not here.startswith(os.path.join(root, n))]
procs = [p for p in os.listdir("/proc") if p.isdigit()]
print("clean" if not left and len(procs) <= 4 else (left, procs))
"""
PROBE = {"id": "lcb/probe", "tests": {"type": "stdin", "public": [{"input": "", "output": "clean"}]}}


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(pool_config("local", timeout_s=2.0, wall_factor=2.0), progress=False) as p:
        yield p


def judged_alone(pool, problem: dict, code: str) -> dict:
    """The verdict, after checking that nothing was a harness fault and the sandbox is clean."""
    restarts = sum(h.restarts for h in pool.harnesses)
    verdict = pool.check([(problem, code)])[0]
    assert verdict["status"] in TEST_STATUSES, verdict  # not sandbox_error
    assert sum(h.restarts for h in pool.harnesses) == restarts, verdict  # no harness fault
    probe = pool.check([(PROBE, LOOK_AROUND)])[0]
    assert probe["passed"], probe
    return verdict


def write_everywhere(payload: bytes) -> str:
    return f"import os\nfor fd in range(3, 40):\n    try:\n        os.write(fd, {payload!r})\n    except OSError:\n" \
           "        pass\n"


@EXAMPLES
@given(PAYLOAD, st.booleans())
def test_result_channel(pool, payload, early):
    body = write_everywhere(payload)
    code = (body + "class Solution:\n    def f(self, x):\n        return 0\n") if early else (
        "class Solution:\n    def f(self, x):\n" + textwrap.indent(body, "        ") + "        return 0\n")
    assert not judged_alone(pool, FUNCTIONAL, code)["passed"]


@EXAMPLES
@given(PAYLOAD, PAYLOAD, st.integers(0, 255))
def test_stdout_stderr_and_exit_status(pool, out, err, status):
    code = f"import os, sys\nos.write(1, {out!r})\nos.write(2, {err!r})\nsys.stdout.flush()\nos._exit({status})\n"
    verdict = judged_alone(pool, STDIN, code)
    assert not verdict["passed"] and isinstance(verdict["error"], str)


@EXAMPLES
@given(st.integers(0, 255))
def test_exit_status_after_the_right_answer(pool, status):
    verdict = judged_alone(pool, STDIN, f"import os\nprint({SECRET}, flush=True)\nos._exit({status})\n")
    assert verdict["passed"] == (status == 0), verdict


NAMES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1,
                max_size=20).filter(lambda n: n not in (".", ".."))


@EXAMPLES
@given(st.lists(st.tuples(NAMES, st.sampled_from(["dir", "file", "fifo", "link", "deep"]),
                          st.integers(0, 0o7777)), max_size=6),
       st.sampled_from(["/tmp", "/dev/shm", "."]))
def test_files_in_scratch(pool, entries, root):
    code = textwrap.dedent(f"""
        import os
        os.chdir({root!r})
        for name, kind, mode in {entries!r}:
            try:
                if kind == "dir":
                    os.makedirs(os.path.join(name, "inner"), exist_ok=True)
                elif kind == "file":
                    open(name, "wb").write(b"answers")
                elif kind == "fifo":
                    os.mkfifo(name)
                elif kind == "link":
                    os.symlink("/proc/1/fd/1", name)
                else:
                    os.makedirs("/".join([name[:5] or "d"] * 50), exist_ok=True)
                os.chmod(name, mode)
            except (OSError, ValueError):
                pass
        for n in (".out", ".err"):
            try:
                os.unlink(os.path.join({'"/tmp/job"'}, n))
                os.mkfifo(os.path.join({'"/tmp/job"'}, n))
            except OSError:
                pass
        print("done")
        """)
    assert not judged_alone(pool, STDIN, code)["passed"]


@EXAMPLES
@given(PAYLOAD)
def test_unittest_result_channel(pool, payload):
    code = write_everywhere(payload) + "def task_func():\n" + textwrap.indent(write_everywhere(payload), "    ") + \
        "    return 0\n"
    assert not judged_alone(pool, UNITTEST, code)["passed"]
