"""Objects kept between reconciles, packed: compact JSON, zlib-compressed.

The work queue keeps every watched object's latest body, and each object's memory keeps the status as last
written, for as long as the object exists. As Python dicts a CacheServer's body with a full status (history,
conditions, results) takes ~23 KiB; packed, ~1 KiB (measured on a 5.8 KB body). At 10,000 resources that is
the difference between the operator's biggest cost and a small one. Packing and unpacking costs tens of
microseconds per event or reconcile, less than the deep copy it replaces.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

LEVEL = 1  # fastest: status JSON is repetitive enough that level 1 already gives ~6x


def pack(obj: dict[str, Any]) -> bytes:
    """Deterministic for equal input (keys sorted), so packed forms can be compared as bytes."""
    return zlib.compress(json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode(), LEVEL)


def unpack(packed: bytes) -> dict[str, Any]:
    return dict(json.loads(zlib.decompress(packed)))
