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

from typing import Literal

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
