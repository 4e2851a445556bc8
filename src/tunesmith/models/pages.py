"""The process's mapped files and handing their pages back: /proc/self/smaps and ``madvise``.

A safetensors checkpoint is loaded as a memory map of the file: a tensor's numbers stay in the
kernel's page cache, and a page becomes part of this process's resident memory (RSS, what
``ru_maxrss``, ``top`` and the OOM killer count) once it is read. Pages that were read but are
not needed now can be unmapped from the process again with ``madvise(MADV_DONTNEED)``: they
stay in the page cache, and the next read maps them again (or reads the file, where the kernel
dropped them). The mapping is private (copy-on-write), so a page the process wrote holds
numbers the file does not have, and DONTNEED would throw them away: mappings with a written
page (smaps' ``Anonymous``) are never touched here. Linux only; elsewhere nothing is found and
nothing is released.

Used by :func:`tunesmith.models.loader.load_model` (a 4-bit load reads every weight to quantise
it), :class:`tunesmith.train.precision.FrozenWeightsInBf16` (the fp32 pages of weights held in
bf16) and :func:`tunesmith.advise.run_memory.library_pages_bytes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FileMapping:
    """One mapping of a file into this process's memory, as /proc/self/smaps describes it."""

    start: int
    end: int
    path: str
    resident_bytes: int
    # Pages of a private mapping the process wrote, which the kernel copied on the first write
    # (smaps' ``Anonymous``): the file no longer holds their numbers.
    written_bytes: int


def file_mappings() -> list[FileMapping]:
    """This process's mappings of files (Linux: /proc/self/smaps, a few ms); empty where that
    cannot be read."""
    found: list[FileMapping] = []
    head: list[Any] | None = None  # start, end, path, Rss, Anonymous of the mapping being read

    def close() -> None:
        if head is not None:
            found.append(FileMapping(*head))

    try:
        with open("/proc/self/smaps", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                fields = line.split(maxsplit=5)
                if fields and "-" in fields[0] and not fields[0].endswith(":"):  # a mapping's head
                    close()
                    head = None
                    if len(fields) == 6 and fields[5].strip().startswith("/"):
                        start, end = (int(x, 16) for x in fields[0].split("-"))
                        head = [start, end, fields[5].strip(), 0, 0]
                elif head is not None and fields[:1] == ["Rss:"]:
                    head[3] = int(fields[1]) * 1024
                elif head is not None and fields[:1] == ["Anonymous:"]:
                    head[4] = int(fields[1]) * 1024
        close()
    except (OSError, ValueError):
        return []
    return found


def release_range(start: int, end: int) -> int:
    """``madvise(MADV_DONTNEED)`` over the whole pages inside ``[start, end)``; returns the
    bytes released (0 where madvise is not available or fails). The caller makes sure the range
    lies in an unwritten file mapping (module docstring)."""
    import ctypes
    import mmap

    try:
        madvise = ctypes.CDLL(None).madvise  # the C library already loaded into this process
    except (OSError, AttributeError):
        return 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    page = mmap.PAGESIZE
    first, last = -(-start // page) * page, end // page * page
    if last > first and madvise(first, last - first, getattr(mmap, "MADV_DONTNEED", 4)) == 0:
        return last - first
    return 0


def release_tensor_pages(tensors: list[Any], mappings: list[FileMapping]) -> int:
    """Unmap from this process the whole pages of ``tensors`` that lie inside one unwritten
    file mapping of ``mappings``; returns the bytes released. The tensors keep their numbers:
    the next read maps the pages again."""
    released = 0
    for tensor in tensors:
        start = tensor.data_ptr()
        end = start + tensor.numel() * tensor.element_size()
        if any(m.start <= start and end <= m.end and not m.written_bytes for m in mappings):
            released += release_range(start, end)
    return released


def release_checkpoint_pages(folder: str | Path) -> int:
    """Unmap from this process the resident pages of every unwritten mapping of a
    ``.safetensors`` file under ``folder``; returns the bytes released.

    After a 4-bit load (bitsandbytes quantises each linear weight from the fp32 numbers it reads
    from the map) every page of the checkpoint is resident, though only the weights that stayed
    unquantised (embeddings, norms) still point into it: SmolLM2-135M, 405 MB of a 1,293 MB
    process. Those weights read their pages again when they are next used."""
    root = Path(folder).resolve()
    released = 0
    for mapping in file_mappings():
        if (Path(mapping.path).is_relative_to(root) and mapping.path.endswith(".safetensors")
                and not mapping.written_bytes and mapping.resident_bytes):
            released += release_range(mapping.start, mapping.end)
    return released


def trim_heap() -> bool:
    """Collect Python's garbage, then hand the C heap's free memory back to the system (glibc's
    ``malloc_trim(0)``, which also gives back free pages inside the heap). Returns whether glibc
    was there to ask (False on another C library or system, where nothing happens); raises
    nothing. Costs a garbage collection and a pass over the heap's free blocks (milliseconds to
    a few hundred on a heap of gigabytes).

    On Linux, glibc keeps the blocks a process frees in its heap for later allocations, so the
    process's resident memory stays near its high-water mark. That pays where the next phase
    allocates alike (trimming before training does not lower the peak: training reuses the
    blocks; measured 2026-12-01 and 2026-12-02), and not between phases that allocate
    differently: the evaluation after training (MiniLM LoRA whole run 1,126 -> 1,066 MB,
    ``bench/memory_run.py lean``, docs/performance.md) and a 4-bit load, whose quantisation frees
    its fp32 temporaries (SmolLM2-135M: 366 MB handed back)."""
    import ctypes
    import gc

    gc.collect()
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True
