"""Request bodies, gzip'd: one home for the level and the call."""

from __future__ import annotations

import sys
import zlib

__all__ = ["gzip_body"]

# Level 1: bodies of real batches come out about 9 % larger than at the default level 6,
# for half the CPU (gzip was a fifth of the process CPU per event at 1,000 per request).
_LEVEL = 1


def gzip_body(body: bytes) -> bytes:
    """``body`` as one gzip member (``Content-Encoding: gzip``), in a single zlib call.

    zlib releases the GIL for every call, and while an application thread keeps the
    interpreter busy each release costs the flush thread up to a switch interval (5 ms)
    before it runs again: ``compress`` + ``flush`` on a ``compressobj`` made the same
    bytes with one release more per request (``benchmarks/README.md``). Python 3.10's
    ``zlib.compress`` takes no ``wbits``: there, the two calls."""
    if sys.version_info >= (3, 11):
        return zlib.compress(body, _LEVEL, 31)
    compressor = zlib.compressobj(_LEVEL, zlib.DEFLATED, 31)
    return compressor.compress(body) + compressor.flush()
