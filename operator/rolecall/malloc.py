"""glibc's allocator, tuned for a long-running Python process that holds little and churns a lot.

- Two malloc arenas instead of up to 8 per core: each thread that allocates gets its own arena, and memory
  freed in one is not reused by another (with the blocking-call thread pool that showed as ~125 KiB of RSS
  per watched resource in benchmarks/scale.py), at no measurable CPU cost.
- `trim()` hands free heap pages back to the system. A pod listing parses megabytes of JSON a page at a time
  and frees them; without a trim glibc keeps those pages, and the RSS the kubelet counts stays at the peak
  (parsing and dropping a synthetic 15,000-pod listing left 26 MiB of freed pages in RSS; one trim returned
  them).

Outside glibc (e.g. musl) both do nothing.
"""

from __future__ import annotations

import ctypes
import functools
import os
from typing import Any

M_ARENA_MAX = -8


@functools.cache
def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def fewer_arenas(arenas: int = 2) -> None:
    if os.environ.get("MALLOC_ARENA_MAX") or _libc() is None:
        return  # the operator's environment decided, or not glibc
    _libc().mallopt(M_ARENA_MAX, arenas)


def trim() -> None:
    if _libc() is not None:
        _libc().malloc_trim(0)
