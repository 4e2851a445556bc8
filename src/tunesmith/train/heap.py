"""Hand the C heap's free memory back to the system between the phases of a run.

On Linux, glibc keeps the blocks a process frees (training's activations, gradients, the
optimizer's temporaries) in its heap for later allocations, so the process's resident memory
stays near training's high-water mark after training. The evaluation that follows in the same
process (``tunesmith run``) loads the model again and computes in fp32 in other batch shapes
than bf16-autocast training, which fit few of the kept blocks, and grows the heap on top of
them. :func:`trim_heap` returns the free blocks first (``malloc_trim(0)``, which also gives back
free pages inside the heap), so the evaluation grows from what is really in use. Measured on
whole default runs (``bench/memory_run.py lean``, docs/performance.md): MiniLM LoRA 1,126 ->
1,066 MB; SmolLM2 chat LoRA 4 x 512, whose peak is in training, 3,374 / 3,383 MB (no change).

Trimming before training does not lower the peak (training reuses the blocks glibc kept; tried
and measured on 2026-12-01): it pays between phases that allocate differently.
"""

from __future__ import annotations

import ctypes
import gc


def trim_heap() -> bool:
    """Collect Python's garbage, then return the C heap's free memory to the system (glibc's
    ``malloc_trim(0)``). Returns whether glibc was there to ask (False on another C library or
    system, where nothing happens); raises nothing. Costs a garbage collection and a pass over
    the heap's free blocks (milliseconds to a few hundred on a heap of gigabytes)."""
    gc.collect()
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True
