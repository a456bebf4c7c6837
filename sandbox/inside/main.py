"""Entry point of the harness inside the isolation (stdlib only; pyseccomp optional):

    python -s /opt/daj-sandbox/inside/main.py --tmp-root /tmp [--own-pid-ns] [--no-seccomp]
        [--cgroup-fd N | --cgroup-dir DIR] [--user UID:GID]

It writes one JSON hello line, then answers one JSON result line per JSON job line on stdin/stdout
(docs/sandbox.md, "Harness protocol"). Only this package is mounted in the sandbox; it is imported
as the package `inside`, and its directory is not left on sys.path, so that candidate code cannot
import the harness' modules by accident.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if __package__ in (None, ""):
    # run as a script: import this directory as the package `inside`, and take it off sys.path
    if sys.path and os.path.abspath(sys.path[0] or ".") == HERE:
        del sys.path[0]
    sys.path.insert(0, os.path.dirname(HERE))
    import inside  # noqa: F401

    __package__ = "inside"
    del sys.path[0]

from . import hardening  # noqa: E402
from .containment import Processes  # noqa: E402
from .server import Server, reply, serve  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="inside/main.py", description="the daj sandbox harness")
    ap.add_argument("--tmp-root", default="/tmp", help="the scratch directory (wiped after every candidate)")
    ap.add_argument("--own-pid-ns", action="store_true",
                    help="the harness is pid 1 of its own pid namespace (bwrap --as-pid-1, a container)")
    ap.add_argument("--no-seccomp", action="store_true", help="load no seccomp filter")
    cgroup = ap.add_mutually_exclusive_group()
    cgroup.add_argument("--cgroup-fd", type=int, default=None,
                        help="an open directory fd of the cgroup that holds the candidates")
    cgroup.add_argument("--cgroup-dir", default=None, help="the same cgroup as a path (opened before --user)")
    ap.add_argument("--user", default=None, help="UID:GID to become once the cgroup is open")
    return ap.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    os.umask(0o077)
    own_pid_ns = args.own_pid_ns and os.getpid() in (1, 2)
    hardening.harden_trusted()
    dir_fd = args.cgroup_fd
    if args.cgroup_dir:
        try:
            dir_fd = os.open(args.cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            dir_fd = None
    try:
        processes = Processes(dir_fd, own_pid_ns)
    except OSError:
        processes = Processes(None, own_pid_ns)
    if args.user:
        uid, gid = (int(x) for x in args.user.split(":"))
        hardening.drop_to(uid, gid)
        hardening.prctl(hardening.PR_SET_DUMPABLE, 0)  # a change of ids resets it
    protocol_in = os.fdopen(os.dup(0), "rb")
    protocol_out = os.fdopen(os.dup(1), "wb")
    hardening.null_stdio()
    server = Server(args.tmp_root, own_pid_ns, processes, not args.no_seccomp)
    reply(protocol_out, {"ready": True, "pid": os.getpid(), "uid": os.getuid(), "own_pid_ns": own_pid_ns,
                         "seccomp": server.seccomp, "dumpable": hardening.dumpable(),
                         "dev_writable": os.access("/dev", os.W_OK), "containment": processes.kind,
                         "python": sys.version.split()[0]})
    return serve(server, protocol_in, protocol_out)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
