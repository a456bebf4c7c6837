"""Nothing of a candidate outlives it: its processes (a cgroup, frozen then emptied) and its scratch.

The backend gives the server a cgroup of its own for candidates (an fd of the directory, or a path
mounted where only root could write, opened before the server drops root), and the server moves
its zygote into it: every host and runner, and whatever they fork, setsid or thread, is in it.
`Processes.stop(keep)` freezes the cgroup, kills every task but `keep`, thaws it and waits until
only `keep` is left, or says it could not. Without a cgroup, it falls back to /proc, which in the
sandbox's own pid namespace shows every process (zombies included: a thread group whose main thread
has exited still runs).
"""

from __future__ import annotations

import ctypes
import os
import signal
import stat
import time

STOP_TIMEOUT_S = 5.0


class Processes:
    """The candidates' processes: stop them all, verify none is left."""

    def __init__(self, cgroup_dir_fd: int | None, own_pid_ns: bool):
        self.own_pid_ns = own_pid_ns
        self.dir_fd = cgroup_dir_fd
        self.version = 0
        self.write_fds: dict[str, int] = {}
        if cgroup_dir_fd is not None:
            names = os.listdir(cgroup_dir_fd)
            if "freezer.state" in names:
                self.version, controls = 1, ("freezer.state", "cgroup.procs")
            elif "cgroup.freeze" in names:
                self.version, controls = 2, ("cgroup.freeze", "cgroup.procs", "cgroup.kill")
            else:
                raise OSError("the cgroup has no freezer")
            # opened now: in a container the server drops root after this
            for name in controls:
                if name in names:
                    self.write_fds[name] = os.open(name, os.O_WRONLY | os.O_CLOEXEC, dir_fd=cgroup_dir_fd)

    @property
    def kind(self) -> str:
        return f"cgroup v{self.version} freezer" if self.version else (
            "pid namespace sweep" if self.own_pid_ns else "process groups only")

    def adopt(self, pid: int) -> None:
        """Move `pid` (the zygote, before it forks anything) into the candidates' cgroup."""
        if self.version:
            os.write(self.write_fds["cgroup.procs"], str(pid).encode())

    def _read(self, name: str) -> str:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.dir_fd)  # fresh: v1 caches pid lists
        try:
            return os.read(fd, 1 << 20).decode()
        finally:
            os.close(fd)

    def _members(self) -> set[int]:
        """Processes (thread groups) in the cgroup, in our pid namespace's numbers."""
        return {int(p) for p in self._read("cgroup.procs").split()}

    def _freeze(self, frozen: bool, deadline: float) -> bool:
        if self.version == 1:
            os.write(self.write_fds["freezer.state"], b"FROZEN" if frozen else b"THAWED")
            if not frozen:
                return True
            while self._read("freezer.state").strip() != "FROZEN":
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.0002)
            return True
        os.write(self.write_fds["cgroup.freeze"], b"1" if frozen else b"0")
        if not frozen:
            return True
        while "frozen 1" not in self._read("cgroup.events"):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0002)
        return True

    def stop(self, keep: set[int], reap) -> bool:
        """Kill every candidate process but `keep`; True once none is left (`reap()` collects the
        children of the server). False: the state of the sandbox is unknown, replace it."""
        deadline = time.monotonic() + STOP_TIMEOUT_S
        if self.version:
            try:
                return self._stop_cgroup(keep, reap, deadline)
            except OSError:
                return False
        if self.own_pid_ns:
            return self._stop_pid_ns(keep, reap, deadline)
        return True  # no isolation to rely on (unsandboxed): the caller kills the process groups

    def _stop_cgroup(self, keep: set[int], reap, deadline: float) -> bool:
        if not self._members() - keep:
            return True
        if not self._freeze(True, deadline):
            self._freeze(False, deadline)
            return False
        try:
            for pid in self._members() - keep:  # frozen: none can fork, exit or move now
                _kill(pid)
        finally:
            self._freeze(False, deadline)
        while self._members() - keep:
            reap()
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0002)
        return True

    def _stop_pid_ns(self, keep: set[int], reap, deadline: float) -> bool:
        keep = keep | {1, os.getpid()}
        while True:
            left = [pid for pid in _all_pids() if pid not in keep]
            if not left:
                return True
            for pid in left:  # zombies too: a thread group whose leader has exited still runs
                _kill(pid)
            reap()
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0002)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _all_pids() -> list[int]:
    """Every process that still runs: a zombie whose threads have all ended is not one, a thread
    group whose main thread has exited (a zombie leader with live threads) is."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                line = fh.read()
            state = line[line.rfind(b")") + 2:line.rfind(b")") + 3]
            if state in (b"Z", b"X") and len(os.listdir(f"/proc/{name}/task")) <= 1:
                continue
        except OSError:
            continue  # gone meanwhile
        out.append(int(name))
    return out


# ----------------------------------------------------------------------------- scratch
WIPE_ENTRIES = 200_000  # more than a candidate can make within its limits; beyond: replace the sandbox
WIPE_DEPTH = 800        # directories open at once (one fd each); deeper: replace the sandbox


def wipe(roots: list[str]) -> bool:
    """Remove everything under each root, whatever its permissions or depth; True when nothing is
    left (False: the caller replaces the sandbox)."""
    budget = [WIPE_ENTRIES]
    for root in roots:
        try:
            root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return False
        try:
            for name in os.listdir(root_fd):
                _remove(root_fd, name, budget)
            if os.listdir(root_fd):
                return False
        except OSError:
            return False
        finally:
            os.close(root_fd)
    return True


def _remove(parent_fd: int, name: str, budget: list[int]) -> None:
    """Remove one entry (a tree: without recursion, by fds, restoring the permissions a candidate
    took away); what cannot be removed is left for the caller's check."""
    stack: list[tuple[int, str, int | None]] = [(parent_fd, name, None)]
    try:
        while stack and budget[0] > 0:
            budget[0] -= 1
            pfd, entry, dfd = stack[-1]
            if dfd is not None:  # its children are gone (or left for the check)
                stack.pop()
                os.close(dfd)
                _quietly(os.rmdir, entry, dir_fd=pfd)
                continue
            try:
                mode = os.stat(entry, dir_fd=pfd, follow_symlinks=False).st_mode
            except OSError:
                stack.pop()
                continue
            if not stat.S_ISDIR(mode):
                stack.pop()
                _quietly(os.unlink, entry, dir_fd=pfd)
                continue
            if len(stack) > WIPE_DEPTH:
                return
            _quietly(os.chmod, entry, 0o700, dir_fd=pfd)
            try:
                dfd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=pfd)
            except OSError:
                stack.pop()
                continue
            stack[-1] = (pfd, entry, dfd)
            stack.extend((dfd, child, None) for child in os.listdir(dfd))
    finally:
        for _, _, dfd in stack:
            if dfd is not None:
                os.close(dfd)


def _quietly(fn, *args, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
    except OSError:
        pass


def wipe_ipc() -> bool:
    """Remove the System V IPC objects of this IPC namespace (seccomp denies creating them; this is
    for a sandbox without the filter); True when none is left."""
    libc = ctypes.CDLL(None, use_errno=True)
    removers = {"shm": lambda i: libc.shmctl(i, 0, None), "sem": lambda i: libc.semctl(i, 0, 0),
                "msg": lambda i: libc.msgctl(i, 0, None)}  # 0 = IPC_RMID
    left = False
    for kind, remove in removers.items():
        for ident in _ipc_ids(kind):
            if remove(ident) != 0:
                left = True
    return not left and not any(_ipc_ids(kind) for kind in removers)


def _ipc_ids(kind: str) -> list[int]:
    try:
        with open(f"/proc/sysvipc/{kind}") as fh:
            rows = fh.read().splitlines()[1:]
    except OSError:
        return []
    ids = []
    for row in rows:
        fields = row.split()
        if len(fields) > 1 and fields[1].isdigit():
            ids.append(int(fields[1]))
    return ids
