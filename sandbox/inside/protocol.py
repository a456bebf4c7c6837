"""What crosses a process boundary, on both sides of the sandbox (stdlib only).

Statuses and test kinds (the one list, imported by the host side too), limits, job validation,
bounded JSON-line decoding and writing, and the plain-data codec with which values leave a
candidate's process: the trusted side rebuilds fresh built-in values and never trusts the sender.
"""

from __future__ import annotations

import json
import os

PASS, WRONG, TIMEOUT, RUNTIME, COMPILE, MISSING = (
    "pass", "wrong_answer", "timeout", "runtime_error", "compile_error", "missing_dependency")
# a candidate that broke the harness on every retry: a recorded failure, never a pass
SANDBOX_ERROR = "sandbox_error"
TEST_STATUSES = (PASS, WRONG, TIMEOUT, RUNTIME, COMPILE, MISSING)  # what one test can end with
STATUSES = (*TEST_STATUSES, SANDBOX_ERROR)                         # what a verdict can say
KINDS = ("stdin", "functional", "humaneval", "unittest")

INT_DIGITS = 50000  # recursion limit and int<->str digits of candidate code, as LCB
# one message whether CPU time or the wall-clock backstop ran out: verdicts must not depend on load
TIME_LIMIT = "time limit exceeded"
MAX_LINE = 64 << 20    # longest line accepted from a candidate's side (bytes)
MAX_DEPTH = 512        # deepest nesting of a decoded message (the codec's own limit is 200 values deep)
PLAIN_DEPTH = 200
# a wall-clock backstop is extended by the time the runner waited for a CPU, by at most this factor
LOAD_SLACK = 3.0
STDERR_KEEP = 2000
ERROR_TEXT = 300       # longest error text kept per test


class BadMessage(ValueError):
    """A line that is too long, not UTF-8, not JSON, nested too deeply or not what was expected."""


def decode(line: bytes, limit: int = MAX_LINE, depth: int = MAX_DEPTH) -> object:
    """The JSON value of one line, bounded in size and depth; BadMessage for anything else.

    Never raises anything but BadMessage, whatever the bytes: the trusted side's only parser."""
    if len(line) > limit:
        raise BadMessage(f"line longer than {limit} bytes")
    try:
        value = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError, MemoryError) as e:  # UnicodeDecodeError is a ValueError
        raise BadMessage(f"not JSON ({type(e).__name__})") from None
    if nesting(value) > depth:
        raise BadMessage(f"nested deeper than {depth}")
    return value


def decode_object(line: bytes, limit: int = MAX_LINE) -> dict:
    """A decoded line that must be a JSON object."""
    value = decode(line, limit)
    if not isinstance(value, dict):
        raise BadMessage("not a JSON object")
    return value


def nesting(value: object) -> int:
    """Depth of nested lists and dicts, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, list | dict):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def encode(obj: object) -> bytes | None:
    """One JSON line, or None when `obj` cannot be written as JSON."""
    try:
        return (json.dumps(obj) + "\n").encode("utf-8", "surrogatepass")
    except (ValueError, TypeError, RecursionError):
        return None


def send(fd: int, obj: object) -> bool:
    """Write one JSON line to a blocking fd; False when it cannot be encoded or written."""
    data = encode(obj)
    if data is None:
        return False
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        return True
    except OSError:
        return False


class LineReader:
    """Lines of a blocking fd (a trusted process' control channel), each bounded in size."""

    def __init__(self, fd: int, limit: int = MAX_LINE):
        self.fd, self.buf, self.limit = fd, b"", limit

    def read(self) -> dict | None:
        """The next line as a JSON object; None at EOF or for anything that is not one."""
        while b"\n" not in self.buf:
            if len(self.buf) > self.limit:
                return None
            try:
                chunk = os.read(self.fd, 1 << 16)
            except OSError:
                return None
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            return decode_object(line, self.limit)
        except BadMessage:
            return None


def text(value: object, limit: int = ERROR_TEXT) -> str:
    """A candidate-supplied error text: a string, cut short; anything else is no text."""
    return value[:limit] if isinstance(value, str) else ""


def test_status(value: object) -> str:
    """A failing status named by the candidate's side: one of ours, else runtime_error."""
    return value if value in TEST_STATUSES and value != PASS else RUNTIME


# ----------------------------------------------------------------------------- job validation
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
    if job["kind"] == "functional":
        if not isinstance(job.get("func_name"), str):
            return "functional jobs need func_name"
        for i, t in enumerate(tests):
            try:
                [json.loads(line) for line in t["input"].split("\n")]
                json.loads(t["output"])
            except (ValueError, RecursionError):
                return f"test {i} is not JSON"
    if job["kind"] == "humaneval" and not (isinstance(job.get("entry_point"), str)
                                           and isinstance(job.get("test_code"), str)):
        return "humaneval jobs need entry_point and test_code"
    if job["kind"] == "unittest" and not isinstance(job.get("test_code"), str):
        return "unittest jobs need test_code"
    return ""


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
    if depth > PLAIN_DEPTH:
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
    """Fresh built-in values from the decoded JSON of to_plain (the trusted side's only view).

    Raises BadMessage for anything to_plain cannot have written (unhashable keys included)."""
    try:
        return _from_plain(value)
    except (TypeError, ValueError, RecursionError, MemoryError) as e:
        raise BadMessage(f"not a plain value ({type(e).__name__})") from None


def _from_plain(value: object) -> object:
    t = type(value)
    if value is None or t in (bool, int, float, str):
        return value
    if t is list:
        return [_from_plain(v) for v in value]
    if t is dict and len(value) == 1:
        (tag, inner), = value.items()
        if tag == "b" and type(inner) is str:
            return bytes.fromhex(inner)
        if type(inner) is list:
            if tag == "t":
                return tuple(_from_plain(v) for v in inner)
            if tag == "s":
                return {_from_plain(v) for v in inner}
            if tag == "d" and all(type(p) is list and len(p) == 2 for p in inner):
                return {_from_plain(k): _from_plain(v) for k, v in inner}
    raise ValueError("not a plain value")
