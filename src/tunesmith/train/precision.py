"""What ``finetune.precision`` computes in on this machine: fp32, or bf16/fp16 autocast.

``auto`` picks bf16 autocast wherever the hardware multiplies bf16 matrices natively: a GPU
that supports bf16 (fp16 autocast on an older GPU), and a CPU with Intel AMX-BF16 (Sapphire
Rapids and later Xeons), where oneDNN runs bf16 matrix products on the AMX tiles. Elsewhere
(a CPU without AMX) it stays fp32: there the bf16 products run on AVX-512 BF16 instructions or
are emulated, and whether that pays for autocast's casts was not measured (no such CPU here).

Measured on a 2-core Xeon with AMX (docs/performance.md, issue 17): a 1024 x 576 x 1536 fp32
product ran at 332 GFLOP/s and the same product in bf16 at 2,444; a whole LoRA training run,
autocast's casts included, ran 1.40x the real tokens/s of fp32 on SmolLM2-135M chat (4 x 256)
and 1.16x on MiniLM classification (16 x ~30, LoRA on query/value; about 1.05x with LoRA on
every linear layer, a classifier's default), with the same validation loss to 3 digits
(master weights and optimizer states stay fp32; only the products run in bf16).
"""

from __future__ import annotations

from typing import Any, Literal

from tunesmith.models.pages import file_mappings, release_tensor_pages

Autocast = Literal["no", "bf16", "fp16"]


def cpu_has_amx_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices on AMX tiles (torch's own CPU feature check)."""
    import torch

    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    try:
        return bool(check and bf16 and check() and bf16())
    except (RuntimeError, AttributeError):  # an older or unusual build: fp32 is the safe side
        return False


def autocast_for(precision: str, *, cuda: bool) -> Autocast:
    """The autocast ``finetune.precision`` runs with: ``no`` (fp32), ``bf16`` or ``fp16``.
    ``auto`` follows the hardware (module docstring); fp16 on a CPU is refused by the loop."""
    if precision == "auto":
        if cuda:
            import torch

            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_amx_bf16() else "no"
    return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]  # type: ignore[return-value]


def cpu_autocast_note(precision: str) -> str | None:
    """The line a run logs when ``auto`` chose bf16 autocast on this CPU; None otherwise (a GPU,
    a CPU without AMX-BF16, or a precision the user set)."""
    import torch

    if precision != "auto" or torch.cuda.is_available() or not cpu_has_amx_bf16():
        return None
    return ("precision: bf16 autocast (auto: this CPU multiplies bf16 matrices on its AMX units; "
            "weights and optimizer states stay fp32; finetune.precision=fp32 turns it off)")


class FrozenWeightsInBf16:
    """Under bf16 autocast, a frozen linear weight is cast to bf16 on every forward pass (autocast
    caches casts only of weights that require a gradient) and the copy is kept for the backward
    pass. This holds such weights in bf16 for the duration of training instead: no per-step
    casts, no copies beside them (docs/performance.md has what it measured).

    Only ``torch.nn.Linear`` weights that are frozen, fp32 and not shared with another module
    (a tied LM head shares the embedding's) are held; everything else is left alone. The fp32
    values come back exactly on :meth:`restore`:

    - a weight that still lives in the checkpoint file's memory map (safetensors loads that way;
      its pages are the page cache's, which the kernel can drop and read again) is kept as it
      is, beside its bf16 copy, and given back. Making the copy reads all its pages into the
      process, so they are unmapped from it again at once (``madvise(MADV_DONTNEED)``, only in
      mappings none of whose pages was written, :func:`tunesmith.models.pages.release_tensor_pages`): while training,
      the process holds the bf16 copy alone, and the fp32 pages come back from the page cache
      (or the file) when the weight is next read. SmolLM2-135M: 415 MB of the process's
      resident memory;
    - any other weight is split into its upper 16 bits (a bf16 number: the fp32 value truncated
      to bf16's 8-bit mantissa) and its lower 16 bits, kept as int16: holding costs no more
      memory than fp32 did.
    """

    def __init__(self, model: Any) -> None:
        import sys

        import torch

        # (parameter, its fp32 tensor from the file's map, or its lower 16 bits)
        self._held: list[tuple[Any, Any]] = []
        self.released_bytes = 0  # file-mapped pages handed back to the page cache
        if sys.byteorder != "little":  # the halves below are read in little-endian order
            return
        counts: dict[int, int] = {}
        for _, param in model.named_parameters(remove_duplicate=False):
            counts[id(param)] = counts.get(id(param), 0) + 1
        mappings = file_mappings()
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if not (isinstance(module, torch.nn.Linear) and isinstance(weight, torch.nn.Parameter)
                    and not weight.requires_grad and weight.dtype == torch.float32
                    and counts.get(id(weight), 0) == 1 and weight.is_contiguous()):
                continue
            # Each fp32 number is two 16-bit halves, the lower first; copying a half out makes
            # the new tensor and nothing else (no 32-bit temporaries).
            halves = weight.data.view(torch.int16).view(*weight.shape, 2)
            address = weight.data.data_ptr()
            if weight.device.type == "cpu" and any(m.start <= address < m.end for m in mappings):
                keep = weight.data
            else:
                keep = halves[..., 0].clone()
            weight.data = halves[..., 1].clone().view(torch.bfloat16)
            self._held.append((weight, keep))
        # Copying the upper halves read every page of the file-mapped weights into this
        # process; hand those pages back (the page cache keeps them), so that while training
        # only the bf16 copies are resident.
        self.released_bytes = release_tensor_pages(
            [keep for _, keep in self._held if keep.dtype == torch.float32], mappings)

    @property
    def count(self) -> int:
        return len(self._held)

    @property
    def from_file(self) -> int:
        """How many of the held weights keep their fp32 numbers in the checkpoint's memory map."""
        import torch

        return sum(keep.dtype == torch.float32 for _, keep in self._held)

    def restore(self) -> None:
        """Give every held weight its exact fp32 value back."""
        import torch

        for weight, keep in self._held:
            if keep.dtype == torch.float32:  # the file's own numbers
                weight.data = keep
                continue
            whole = torch.empty(weight.shape, dtype=torch.float32, device=weight.device)
            halves = whole.view(torch.int16).view(*weight.shape, 2)
            halves[..., 0] = keep
            halves[..., 1] = weight.data.view(torch.int16)
            weight.data = whole
        self._held = []
