"""The in-sandbox package's trusted-side parsing and comparison, without a sandbox: whatever a
candidate writes, they answer or refuse, and never raise anything else (hypothesis, bounded)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.inside import compare
from sandbox.inside.checks import Deadline
from sandbox.inside.containment import wipe
from sandbox.inside.protocol import (
    MAX_DEPTH,
    BadMessage,
    LineReader,
    NotPlain,
    decode,
    decode_object,
    from_plain,
    to_plain,
    validate_job,
)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HOSTILE_LINES = [b"[" * 100000, b"{\"a\":" * 50000, b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),
                 b"\xff\xfe{}", b'{"a": NaN, "b": Infinity, "c": -Infinity}', b"1e999999", b"-" * 10,
                 b'"\\ud800"', b"", b"  ", b"{" * 10 + b"}", b'{"call": 1, "value": ' + b"[" * 3000]
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                                  max_size=4), max_leaves=30)


@pytest.mark.parametrize("line", HOSTILE_LINES)
def test_hostile_lines_are_bad_messages_or_values(line):
    try:
        value = decode(line)
    except BadMessage:
        return
    json.dumps(value)  # a value it returns is plain JSON


@FAST
@given(st.binary(max_size=300))
def test_decode_raises_nothing_but_bad_message(data):
    try:
        decode_object(data)
    except BadMessage:
        pass


def test_decode_bounds_size_and_depth():
    with pytest.raises(BadMessage, match="longer"):
        decode(b"[" + b"1," * 100 + b"1]", limit=50)
    with pytest.raises(BadMessage, match="deeper"):
        decode(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    assert decode(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None


@FAST
@given(JSON)
def test_from_plain_raises_nothing_but_bad_message(value):
    try:
        from_plain(value)
    except BadMessage:
        pass


PLAIN = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10) | st.binary(max_size=5),
                     lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
                     | st.dictionaries(st.integers() | st.text(max_size=3), inner, max_size=3)
                     | st.frozensets(st.integers(), max_size=3), max_leaves=20)


@FAST
@given(PLAIN)
def test_plain_values_cross_unchanged(value):
    wire = json.loads(json.dumps(to_plain(value)))
    back = from_plain(wire)
    expected = set(value) if isinstance(value, frozenset) else value
    assert back == expected


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def test_objects_of_the_candidate_do_not_cross():
    class Yes:
        def __eq__(self, other):
            return True

    with pytest.raises(NotPlain):
        to_plain([1, Yes()])
    with pytest.raises(NotPlain):
        to_plain(nested(300))  # deeper than the codec allows


NUMBERISH = st.sampled_from(["sNaN", "NaN", "-NaN", "Infinity", "-inf", "1e999999999", "1E-999999999",
                             "0", "-0", "1.0", "1_000", "0x10", "١٢", "\u00a0", "\x00", "nan1", "sNaN123"])
TOKENS = st.lists(NUMBERISH | st.text(max_size=6), max_size=5).map(" ".join)


@FAST
@given(st.lists(TOKENS, max_size=4).map("\n".join), st.lists(TOKENS, max_size=4).map("\n".join))
def test_the_output_comparison_never_raises(actual, expected):
    assert compare.stdout_matches(actual, expected) in (True, False)


def test_a_signalling_nan_is_a_wrong_answer():
    assert compare.stdout_matches("sNaN", "1.5") is False
    assert compare.stdout_matches("sNaN", "sNaN") is True  # equal as text, as LiveCodeBench's rule says
    assert compare.stdout_matches("1.50", "1.5") is True


@FAST
@given(JSON, JSON)
def test_the_value_comparison_never_raises(got, want):
    assert compare.functional_matches(got, want) in (True, False)
    assert compare.equal(got, want) in (True, False)


def test_deep_values_compare_without_raising():
    deep = nested(5000)  # deeper than the interpreter's recursion limit
    assert compare.functional_matches(deep, deep) in (True, False)


@FAST
@given(st.dictionaries(st.text(max_size=8), JSON, max_size=8))
def test_job_validation_raises_nothing(job):
    assert isinstance(validate_job(job), str)
    assert validate_job({**job, "kind": "functional", "code": "", "timeout_s": 1, "func_name": "f",
                         "tests": [{"input": "[", "output": "1"}]}) == "test 0 is not JSON"


def test_control_lines_past_the_limit_are_refused():
    r, w = os.pipe()
    os.write(w, b"x" * 5000 + b"\n" + b'{"ok": 1}\n')
    os.close(w)
    reader = LineReader(r, limit=1000)
    assert reader.read() is None  # too long: refused, not parsed
    os.close(r)


# ----------------------------------------------------------------------------- the backstop
BUSY = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}:\n    pass\n"


def _pinned(code: str, n: int = 1) -> list[subprocess.Popen]:
    """`n` copies of `code`, all on CPU 0."""
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]
    for p in procs:
        os.sched_setaffinity(p.pid, {0})
    return procs


def test_the_backstop_does_not_count_waiting_for_a_cpu():
    """A runner that gets a fifth of a CPU is not stopped at its nominal backstop; one that sleeps is."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time\ntime.sleep(5)"])
    hogs = _pinned(BUSY.format(s=5), 4)
    runner = _pinned(BUSY.format(s=0.6))[0]
    try:
        time.sleep(0.5)  # both started: from now on one waits for the CPU, the other sleeps
        busy, idle = Deadline(0.5, lambda: runner.pid), Deadline(0.5, lambda: sleeper.pid)
        time.sleep(0.8)
        assert not busy.passed(), "the starved runner's backstop should have been extended"
        assert idle.passed()
        assert busy.end - busy.start <= 0.5 * 4 + 1e-6  # at most LOAD_SLACK times more
        assert Deadline(0.0).passed() and not math.isinf(busy.left())
    finally:
        for p in hogs + [runner, sleeper]:
            p.kill()
            p.wait()


# ----------------------------------------------------------------------------- scratch
def test_wipe_removes_deep_trees_and_special_files(tmp_path):
    root = tmp_path / "scratch"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY)
    for _ in range(300):  # paths longer than PATH_MAX
        os.mkdir("d" * 40, dir_fd=fd)
        inner = os.open("d" * 40, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(fd)
    os.mkfifo(root / "fifo")
    os.symlink("/proc/1/fd/0", root / "link")
    (root / "plain").write_text("x")
    assert wipe([str(root)]) is True and os.listdir(root) == []
    assert wipe([str(tmp_path / "missing")]) is False  # never raises
