"""Atomic artifact writing and validated JSON Lines reading.

Every stage writes through these helpers: output appears whole or not at all, and a bad input line
raises a DajError naming the file, the line and the field.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from daj.errors import DajError


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, briefly, for every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temp file next to `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600: artifacts honour the umask
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp directory; on success it replaces `path` (a directory) whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700: artifacts honour the umask
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def dumps(obj: Any, **kwargs: Any) -> str:
    """json.dumps that always gives valid UTF-8 text: lone surrogates (a candidate's output or
    exception message may hold them) are written as \\udXXX escapes, which read back unchanged."""
    text = json.dumps(obj, ensure_ascii=False, **kwargs)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(obj, ensure_ascii=True, **kwargs)
    return text


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write one JSON document atomically (pretty, sorted keys off, trailing newline)."""
    with atomic_open(path) as fh:
        fh.write(dumps(obj, indent=2) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Write rows as JSON Lines atomically; return the number of rows. Any string survives."""
    n = 0
    with atomic_open(path) as fh:
        for row in rows:
            fh.write(dumps(row) + "\n")
            n += 1
    return n


def write_csv(path: str | os.PathLike, rows: Iterable[dict], header: Sequence[str] = ()) -> None:
    """Rows as CSV, atomically; the columns are `header`, then every other key in first-seen order
    (a header line even when there is no row)."""
    rows = list(rows)
    fields: list[str] = list(header)
    for row in rows:
        fields += [k for k in row if k not in fields]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_open(path) as fh:
        fh.write(buffer.getvalue())


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_json(path: str | os.PathLike) -> Any:
    """Read one JSON document (optionally .gz) with a clear error."""
    path = Path(path)
    try:
        with _open_text(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise DajError("file not found", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DajError(f"cannot read file: {e}", path=str(path)) from None
    except json.JSONDecodeError as e:
        raise DajError(f"invalid JSON: {e.msg}", path=str(path), line=e.lineno) from None


def iter_jsonl(path: str | os.PathLike, required: Sequence[str] = ()) -> Iterator[tuple[int, dict]]:
    """Yield (line number, row) from a JSON Lines file (optionally .gz); blank lines are skipped.

    Raises DajError naming the file and line for unreadable files, malformed JSON, non-object rows
    and rows missing a `required` field.
    """
    path = Path(path)
    try:
        fh = _open_text(path)
    except FileNotFoundError:
        raise DajError("file not found", path=str(path)) from None
    except OSError as e:
        raise DajError(f"cannot read file: {e}", path=str(path)) from None
    with fh:
        lineno = 0
        try:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DajError(f"malformed JSON ({e.msg})", path=str(path), line=lineno) from None
                if not isinstance(row, dict):
                    raise DajError("expected a JSON object", path=str(path), line=lineno)
                for key in required:
                    if key not in row:
                        raise DajError("missing required field", path=str(path), line=lineno, field=key)
                yield lineno, row
        except (OSError, UnicodeDecodeError, EOFError) as e:
            raise DajError(f"cannot read file: {e}", path=str(path), line=lineno or None) from None


def read_jsonl(path: str | os.PathLike, required: Sequence[str] = ()) -> list[dict]:
    """Read all rows of a JSON Lines file; see iter_jsonl for the errors."""
    return [row for _, row in iter_jsonl(path, required)]
