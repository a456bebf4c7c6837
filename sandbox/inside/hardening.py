"""What keeps the trusted processes out of a candidate's reach: prctl, signals, seccomp, fds, ids."""

from __future__ import annotations

import ctypes
import errno
import os
import signal

PR_GET_DUMPABLE, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 3, 4, 36

# syscalls a judged program never needs: kernel attack surface, escapes from the namespaces, every
# way to trace, read, write or signal another process without naming its pid to kill(), and the
# System V / POSIX message-queue IPC objects that would outlive a candidate in the sandbox's IPC
# namespace (shared memory between processes goes through /dev/shm, which is wiped)
DENIED_SYSCALLS = ("ptrace", "process_vm_readv", "process_vm_writev", "pidfd_open", "pidfd_getfd",
                   "pidfd_send_signal", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "kcmp",
                   "process_madvise", "mount", "umount2", "pivot_root", "unshare", "setns", "keyctl",
                   "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "kexec_load",
                   "init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff",
                   "syslog", "acct", "quotactl", "chroot", "open_by_handle_at", "name_to_handle_at",
                   "shmget", "semget", "msgget", "mq_open")
# signals a stray candidate process could aim at a trusted one; they do nothing there
IGNORED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM",
                   "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGPIPE", "SIGVTALRM", "SIGPROF", "SIGXCPU",
                   "SIGXFSZ", "SIGWINCH", "SIGIO", "SIGURG")


def prctl(option: int, arg: int = 0) -> int:
    """prctl(2); -1 where it is unavailable."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, arg, 0, 0, 0)
    except (OSError, AttributeError):
        return -1


def dumpable() -> bool:
    return prctl(PR_GET_DUMPABLE) != 0


def harden_trusted() -> None:
    """Not dumpable (no ptrace, /proc/<pid>/mem or /proc/<pid>/fd for other processes of our uid)
    and deaf to the signals a candidate could send."""
    prctl(PR_SET_DUMPABLE, 0)
    _set_handlers(signal.SIG_IGN)


def default_signals() -> None:
    """A runner's signals: the defaults, with Ctrl-C as KeyboardInterrupt."""
    _set_handlers(signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _set_handlers(handler) -> None:
    for name in IGNORED_SIGNALS:
        if hasattr(signal, name):
            try:
                signal.signal(getattr(signal, name), handler)
            except (OSError, ValueError):
                pass


def become_subreaper() -> None:
    """Orphans of a candidate are re-parented to us, so that we can reap them."""
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def close_fds_except(keep: tuple[int, ...]) -> None:
    """Close every fd from 3 up, except `keep`."""
    low = 3
    for fd in sorted(k for k in keep if k >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)


def null_stdio() -> None:
    """fds 0-2 on /dev/null (a trusted process has nothing to read or say there)."""
    null = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(null, target)
    if null > 2:
        os.close(null)


def drop_to(uid: int, gid: int) -> None:
    """Become uid/gid for good (a container's entry point starts as root only to open its cgroup)."""
    if os.getuid() == uid and os.getgid() == gid:
        return
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise OSError(errno.EPERM, "could not drop privileges")


def load_seccomp(protect: tuple[int, ...], base: bool = True) -> bool:
    """Load a seccomp filter (needs pyseccomp + libseccomp); True only if it is in force.

    base: EPERM for DENIED_SYSCALLS and for signals to every process (kill(-1)); always: EPERM for
    signals to the `protect`ed pids and their process groups. Filters stack, so a host adds its
    own pid to the zygote's filter."""
    try:
        import pyseccomp as sc
    except ImportError:
        return False
    try:
        f = sc.SyscallFilter(defaction=sc.ALLOW)
        deny = sc.ERRNO(errno.EPERM)
        if base:
            for name in DENIED_SYSCALLS:
                try:
                    f.add_rule(deny, name)
                except Exception:  # noqa: BLE001 - a syscall this architecture lacks
                    pass
        targets = {p & 0xFFFFFFFF for p in protect if p > 0}
        targets |= {(-p) & 0xFFFFFFFF for p in protect if p > 0}
        if base:
            targets.add(0xFFFFFFFF)  # kill(-1)
        for name in ("kill", "tkill", "tgkill"):
            for value in targets:
                f.add_rule(deny, name, sc.Arg(0, sc.MASKED_EQ, 0xFFFFFFFF, value))
        f.load()
        return True
    except Exception:  # noqa: BLE001 - libseccomp missing or too old
        return False
