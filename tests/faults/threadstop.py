"""Stops one thread of another process, and only that one: PTRACE_SEIZE + PTRACE_INTERRUPT act on a single
thread, where SIGSTOP stops every thread of the process. Stopping the operator's event loop thread (its main
thread) while its Lease thread goes on is how a starved event loop looks from inside: a renewal is sent,
answered and waits to be handled. Needs CAP_SYS_PTRACE or the same user (the tests run the operator as a
child process of the same user), on Linux x86-64."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_DETACH = 0x4206, 0x4207, 17
WAIT_ALL_THREADS = 0x40000000  # __WALL: wait for a traced thread that is not our child
FUTEX, EPOLL_WAIT, EPOLL_PWAIT = 202, 232, 281  # x86-64 system call numbers

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.ptrace.restype = ctypes.c_long


def _ptrace(request: int, tid: int) -> None:
    if _libc.ptrace(request, tid, None, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"ptrace({request:#x}, {tid}): {os.strerror(err)}")


def thread_named(pid: int, name: str) -> int:
    """The id of the thread of `pid` whose OS name (comm) is `name`."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        if (task / "comm").read_text().strip() == name:
            return int(task.name)
    raise LookupError(f"no thread named {name!r} in process {pid}")


def stop(tid: int) -> None:
    """Stops thread `tid` (returns once it is stopped). Only the thread that stopped it may `resume` it."""
    _ptrace(PTRACE_SEIZE, tid)
    _ptrace(PTRACE_INTERRUPT, tid)
    os.waitpid(tid, WAIT_ALL_THREADS)


def resume(tid: int) -> None:
    _ptrace(PTRACE_DETACH, tid)


def blocked_in(pid: int, tid: int) -> int | None:
    """The system call a stopped thread is blocked in (None when it was stopped outside one: for a Python
    thread that may mean it holds the GIL, and every other Python thread of the process would wait for it)."""
    first = Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split()[0]
    return None if first in ("running", "-1") else int(first)
