"""The zygote: forked by the server at start-up, before any job is read, so it never holds test data.
It loads the seccomp filter that every host and runner inherits, then forks one host per request."""

from __future__ import annotations

import os
import socket

from . import hardening
from .host import host_main


def zygote_main(sock: socket.socket, use_seccomp: bool, server_pid: int) -> None:
    """First message: b"S1"/b"S0" (seccomp filter loaded or not). Then, per request (four fds over
    SCM_RIGHTS), it forks a host and answers its pid."""
    hardening.close_fds_except((sock.fileno(),))
    hardening.null_stdio()
    protect = tuple(sorted({1, server_pid, os.getpid()}))
    loaded = hardening.load_seccomp(protect) if use_seccomp else False
    sock.sendall(b"S1\n" if loaded else b"S0\n")
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 64, 4)
        except OSError:
            os._exit(0)
        if not msg:
            os._exit(0)
        _reap_hosts()
        if len(fds) != 4:
            for fd in fds:
                os.close(fd)
            sock.sendall(b"0\n")
            continue
        try:
            pid = os.fork()
        except OSError:
            pid = -1
        if pid == 0:
            try:
                sock.close()
                host_main(list(fds), protect)
            finally:
                os._exit(0)
        for fd in fds:
            os.close(fd)
        sock.sendall(f"{max(pid, 0)}\n".encode())


def _reap_hosts() -> None:
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return
