"""Give freed tensor memory back to the operating system while training on CPU.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves large blocks with their
own memory mapping (returned to the system on ``free``) only above a threshold, and it raises that
threshold, up to 32 MB, each time such a block is freed. After the first few training steps,
most activation tensors are therefore carved from the heap, and the heap keeps what they free:
the process's resident memory climbs towards the sum of everything ever alive at once plus
fragmentation, not what the tensors hold. Fixing the threshold at 128 kB (``mallopt``; the same
as the ``MALLOC_MMAP_THRESHOLD_=131072`` environment setting) keeps every tensor above 128 kB in
its own mapping, so freed activations leave the process. bench/memory_accuracy.py measured peak
RSS 1.5-1.8x higher without it on MiniLM; bench/throughput.py measures what it saves and costs
in a real run.

It is a process-wide setting, applied when training starts on CPU (not on CUDA, whose caching
allocator holds GPU memory and where host RSS is not the limit). ``TUNESMITH_MALLOC=default``
leaves glibc as it is; an explicit ``MALLOC_MMAP_THRESHOLD_`` in the environment is respected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
THRESHOLD_BYTES = 128 * 1024

_applied: bool | None = None


def release_freed_memory() -> bool:
    """Fix glibc's mmap threshold at 128 kB in this process; True when it is (now or before).

    A no-op returning False off Linux/glibc, with ``TUNESMITH_MALLOC=default``, or when the
    user set ``MALLOC_MMAP_THRESHOLD_`` themselves.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if (sys.platform != "linux" or os.environ.get("TUNESMITH_MALLOC", "").lower() == "default"
            or "MALLOC_MMAP_THRESHOLD_" in os.environ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES) == 1
    return _applied
