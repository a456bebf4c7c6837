"""Run the queued experiment grid with one worker per GPU (or group of GPUs), each pinned to its own.

    dvc exp run --queue -S reweight=none,domain -S train.objective=dpo,kto   # queue the cells as usual
    python -m daj.grid --devices 0 1 2 3      # instead of `dvc queue start`: four workers, one GPU each
    python -m daj.grid --devices 0,1 2,3      # two workers with two GPUs each (GRPO: policy + judge)
    dvc exp show                              # every cell, side by side

Why not `dvc queue start -j N`: its workers cannot be pinned to devices (they share one environment),
and parallel DVC processes in one repository race: queue workers fail experiments without logs
(treeverse/dvc#10673) or leave them queued (#10562), and concurrent `dvc exp run --temp` stop on the
repository lock (#8417; measured here: 5 of 16 runs, 8 at a time, failed with "Unable to acquire
lock"). So no two DVC processes ever share a repository here: every worker has a private clone of the
project under .dvc/tmp/daj-grid/ that shares the project's DVC cache. A worker takes the next queued
cell, applies exactly that cell's changes (the diff between its baseline and its queue entry) to the
committed tree of its clone, and runs `dvc exp run --temp` there with CUDA_VISIBLE_DEVICES set. Only
then, one worker at a time, the experiment is pulled into the project (`dvc exp pull`) and its entry
leaves the queue. Every cell starts from the committed params plus its own overrides: a cell never
sees another cell's overrides, and the project's workspace is never touched. A cell that fails stays
queued (rerun the launcher to retry it); its log is in .dvc/tmp/daj-grid/logs/<name>.log.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from daj.errors import DajError
from daj.paths import shared_dir

log = logging.getLogger(__name__)
WORKDIR = Path(".dvc/tmp/daj-grid")
# `dvc exp run` flags a queued entry may carry (its .dvc/tmp/repro.dat) and how to pass them on
FLAGS = {"force": "--force", "single_item": "--single-item", "pipeline": "--pipeline",
         "recursive": "--recursive", "downstream": "--downstream", "pull": "--pull",
         "allow_missing": "--allow-missing"}


@dataclass(frozen=True)
class Cell:
    """One queued experiment: its name, its queue entry (a stash commit) and what it runs."""

    name: str
    stash_rev: str
    baseline_rev: str
    targets: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()


@dataclass
class Outcome:
    cell: str
    devices: str
    ok: bool
    log: str
    error: str = ""


def git(root: Path, *args: str, binary: bool = False) -> str | bytes:
    out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, check=False)
    if out.returncode != 0:
        raise DajError(f"git {' '.join(args)}: {out.stderr.decode(errors='replace').strip()}", path=str(root))
    return out.stdout if binary else out.stdout.decode().strip()


def queued_cells(root: Path) -> list[Cell]:
    """The experiments `dvc exp run --queue` left in the project's queue, oldest first."""
    from dvc.repo import Repo
    from dvc.repo.experiments.executor.base import BaseExecutor

    with Repo(str(root)) as repo:
        entries = list(repo.experiments.celery_queue.iter_queued())
    cells = []
    for entry in entries:
        kwargs: dict = {}
        try:  # the arguments `dvc exp run --queue` was given (targets, --force, ...)
            blob = git(root, "show", f"{entry.stash_rev}:.dvc/tmp/repro.dat", binary=True)
        except DajError:
            blob = b""
        if blob:
            with tempfile.NamedTemporaryFile() as tmp:
                tmp.write(blob)
                tmp.flush()
                _, kwargs = BaseExecutor.unpack_repro_args(tmp.name)
        flags = tuple(flag for key, flag in FLAGS.items() if kwargs.get(key))
        cells.append(Cell(name=entry.name or entry.stash_rev[:7], stash_rev=entry.stash_rev,
                          baseline_rev=entry.baseline_rev, targets=tuple(kwargs.get("targets") or ()),
                          flags=flags))
    return cells


def cell_changes(root: Path, cell: Cell) -> list[tuple[str, str]]:
    """(status, path) of the files the queue entry changed from its baseline (DVC's own .dvc/tmp aside)."""
    out = git(root, "diff", "--no-renames", "--name-status", "-z", cell.baseline_rev, cell.stash_rev)
    parts = [p for p in out.split("\0") if p]
    changes = list(zip(parts[0::2], parts[1::2], strict=True))
    return [(status, path) for status, path in changes if not path.startswith(".dvc/tmp/")]


def run_dvc(args: list[str], cwd: Path, env: dict | None = None, log_file: Path | None = None,
            procs: list | None = None) -> int:
    """A dvc command in its own session (Ctrl-C reaches it through stop()), output to `log_file`."""
    sink = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(["dvc", *args], cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
        if procs is not None:
            procs.append(proc)
        return proc.wait()
    finally:
        if log_file:
            sink.close()


def dvc_output(args: list[str], cwd: Path) -> str:
    out = subprocess.run(["dvc", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise DajError(f"dvc {' '.join(args)}: {(out.stderr or out.stdout).strip()}", path=str(cwd))
    return out.stdout.strip()


@dataclass
class Worker:
    """One device group and its private clone of the project."""

    devices: str
    clone: Path
    procs: list = field(default_factory=list)

    def prepare(self, root: Path, head: str, cache_dir: str) -> None:
        if self.clone.exists():
            shutil.rmtree(self.clone)
        self.clone.parent.mkdir(parents=True, exist_ok=True)
        git(root, "clone", "--quiet", "--no-checkout", str(root), str(self.clone))
        git(self.clone, "checkout", "--quiet", "--detach", head)
        local = root / ".dvc" / "config.local"
        if local.is_file():  # remotes' credentials and the like
            shutil.copy(local, self.clone / ".dvc" / "config.local")
        dvc_output(["cache", "dir", "--local", cache_dir], self.clone)  # one cache: outputs cross free

    def run(self, root: Path, cell: Cell, head: str, logs: Path, lock: threading.Lock) -> Outcome:
        log_file = logs / f"{cell.name}.log"
        log_file.unlink(missing_ok=True)
        # back to the committed tree, then exactly this cell's changes
        git(self.clone, "reset", "--quiet", "--hard", head)
        git(self.clone, "clean", "--quiet", "-fd")
        for status, path in cell_changes(root, cell):
            target = self.clone / path
            if status == "D":
                target.unlink(missing_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(git(root, "show", f"{cell.stash_rev}:{path}", binary=True))
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": self.devices, "DAJ_SHARED": str(shared_dir())}
        env.pop("DVC_EXP_NAME", None)
        code = run_dvc(["exp", "run", "--temp", "--name", cell.name, *cell.flags, *cell.targets], self.clone,
                       env, log_file, self.procs)
        if code != 0:
            return Outcome(cell.name, self.devices, False, str(log_file), f"dvc exp run exited with {code}")
        with lock:  # the project's repository: one DVC process at a time
            for args in (["exp", "pull", "--no-cache", "--no-run-cache", str(self.clone), cell.name],
                         ["queue", "remove", cell.name]):
                code = run_dvc(args, root, None, log_file)
                if code != 0:
                    return Outcome(cell.name, self.devices, False, str(log_file),
                                   f"dvc {' '.join(args[:2])} exited with {code}")
        ref = git(self.clone, "for-each-ref", "--format=%(refname)", f"refs/exps/*/*/{cell.name}")
        for name in ref.splitlines():  # so that a later cell of the same name cannot collide here
            git(self.clone, "update-ref", "-d", name)
        return Outcome(cell.name, self.devices, True, str(log_file))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass


def run_grid(root: str | Path, devices: list[str], workdir: str | Path | None = None) -> list[Outcome]:
    """Run every queued cell of the project at `root`, one worker per entry of `devices` (a value for
    CUDA_VISIBLE_DEVICES, e.g. "0" or "0,1"). Returns one Outcome per cell run."""
    root = Path(root).resolve()
    if not devices:
        raise DajError("no devices: give --devices (e.g. --devices 0 1 2 3)")
    if len(set(devices)) != len(devices):
        raise DajError(f"a device group is listed twice: {devices}")
    for group in devices:
        if not re.fullmatch(r"[A-Za-z0-9:\-]+(,[A-Za-z0-9:\-]+)*", group):
            raise DajError(f"not a CUDA_VISIBLE_DEVICES value: {group!r}")
    work = (root / (workdir or WORKDIR)).resolve()
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    head = git(root, "rev-parse", "HEAD")
    lock = threading.Lock()
    with lock:
        pending = queued_cells(root)
    stale = [c for c in pending if c.baseline_rev != head]
    if stale:
        log.warning("left in the queue, queued on another commit than HEAD %s: %s", head[:7],
                    ", ".join(f"{c.name} ({c.baseline_rev[:7]})" for c in stale))
    pending = [c for c in pending if c.baseline_rev == head]
    if not pending:
        log.info("nothing queued on HEAD %s", head[:7])
        return []
    cache_dir = dvc_output(["cache", "dir"], root)
    workers = [Worker(group, work / f"worker-{i}") for i, group in enumerate(devices[:len(pending)])]
    for worker in workers:
        worker.prepare(root, head, cache_dir)
    taken: set[str] = set()
    outcomes: list[Outcome] = []

    def next_cell() -> Cell | None:
        with lock:  # cells queued meanwhile on the same commit are picked up too
            for cell in queued_cells(root):
                if cell.baseline_rev == head and cell.stash_rev not in taken:
                    taken.add(cell.stash_rev)
                    return cell
        return None

    def loop(worker: Worker) -> None:
        while (cell := next_cell()) is not None:
            log.info("%s on CUDA_VISIBLE_DEVICES=%s", cell.name, worker.devices)
            try:
                outcome = worker.run(root, cell, head, logs, lock)
            except DajError as e:
                outcome = Outcome(cell.name, worker.devices, False, str(logs / f"{cell.name}.log"), str(e))
            outcomes.append(outcome)
            log.info("%s: %s%s", cell.name, "done" if outcome.ok else "FAILED, left queued: ",
                     "" if outcome.ok else f"{outcome.error} (log: {outcome.log})")

    threads = [threading.Thread(target=loop, args=(w,), name=f"grid-{w.devices}") for w in workers]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except KeyboardInterrupt:
        for worker in workers:
            worker.stop()
        for t in threads:
            t.join()
        raise
    return outcomes


def visible_gpus() -> list[str]:
    """One group per GPU that nvidia-smi lists (none without it)."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m daj.grid", description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", nargs="+", default=None,
                        help="one CUDA_VISIBLE_DEVICES value per worker (default: one per GPU of nvidia-smi)")
    parser.add_argument("--workdir", default=str(WORKDIR), help="clones and logs (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        outcomes = run_grid(".", args.devices if args.devices is not None else visible_gpus(), args.workdir)
    except DajError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the cells not pulled are still queued", file=sys.stderr)
        return 130
    failed = [o for o in outcomes if not o.ok]
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} cells done" +
          (f"; failed (still queued): {', '.join(o.cell for o in failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
