"""How much memory finetuning takes: weights, gradients, optimizer states, activations.

The guide's accounting, made exact and extended: full finetuning of 7B parameters in fp32 with
AdamW is weights 28 GB + gradients 28 GB + optimizer states 56 GB = 112 GB, plus activations.
GB here is 1e9 bytes, as in the guide.

Parameter counts come from the model built on PyTorch's meta device (shapes only: nothing is
downloaded or allocated, so a 70B config is counted on a laptop in a second). A method's
trainable parameters follow from the shapes: LoRA adds ``r x (in + out)`` per target layer
(found with :func:`tunesmith.methods.targets.resolve_targets`, the same lookup training uses),
DoRA adds a magnitude vector of ``out`` per target, a bottleneck adapter adds
``2 x hidden x (hidden / reduction) + biases`` per site, and a classification head trains whole.

Activations are what autograd keeps for the backward pass, per token and per layer, as
``a x hidden + b x intermediate + c x heads x seq_len`` elements. The coefficients were measured
on transformers 5 / torch 2.13 by counting the bytes of every tensor autograd saved (a
``saved_tensors_hooks`` count, parameters excluded) for BERT- and Llama-style layers at several
widths and lengths; the fit was exact to within 1%. Frozen bases (LoRA, adapters) keep fewer
tensors (no weight gradients need the layer inputs). Gradient checkpointing keeps only each
layer's input plus one layer recomputed at a time. Causal LMs add the logits: ``vocab`` floats
per token, held about three times at the peak (logits, log-probabilities, their gradient), which
on small LMs with large vocabularies (SmolLM2: 49k) would be the biggest single part; tunesmith's
loss runs the head over the labelled positions in chunks, so only one chunk's logits count. The backward
pass adds about one more layer's worth of gradient buffers.

The total is the peak, not the guide's plain sum: weights + optimizer states + the larger of
gradients and activations, because gradients are created during the backward pass as the
activations are freed. With activations left out this is the guide's sum; ``sum_gb`` always
gives the guide's addition (an upper bound). ``bench/memory_accuracy.py`` compares the total
with measured peaks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tunesmith import assets
from tunesmith.config import LORA_FAMILY, METHODS, Config
from tunesmith.errors import ConfigError, UsageError

GB = 1e9  # the guide's gigabyte: 7B x 4 bytes = 28 GB

Precision = Literal["fp32", "bf16", "mixed"]
Optimizer = Literal["adamw", "adamw-8bit", "sgd"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "mixed")
OPTIMIZERS: tuple[str, ...] = ("adamw", "adamw-8bit", "sgd")

# Elements saved per token per layer: (a, b, c) in a*hidden + b*intermediate + c*heads*seq_len.
# Measured (see the module docstring). Encoders (BERT, eager/math attention with dropout) keep
# the attention probabilities, their dropout output and mask (c = 3); Llama-style decoders run
# SDPA's fused kernel, which keeps no seq_len x seq_len matrix.
ACTIVATION_COEFFICIENTS: dict[tuple[str, bool], tuple[float, float, float]] = {
    ("encoder", True): (10.0, 2.0, 3.0),  # (kind, base trains)
    ("encoder", False): (8.0, 1.0, 3.0),
    ("causal", True): (9.5, 4.0, 0.0),
    ("causal", False): (6.5, 3.0, 0.0),
}
# Each LoRA target saves its input twice per token (the LoRA dropout's output for lora_A's
# gradient, and the dropout's own bookkeeping): counted with tests/advise/test_advise_memory.py's
# saved-tensor hook, 2.0 x in_features per extra target on BERT and Llama layers. The
# frozen-base coefficients above were fitted with LoRA on the query/value projections, so only
# the targets' inputs beyond those two are added (lora_target_modules: all-linear, the
# classifier default, adds 2 x (3h + i) per token per BERT layer).
LORA_INPUT_COPIES = 2.0
# QLoRA's activations are those of a frozen base: measured peaks of MiniLM with QLoRA and with
# LoRA differed by the same ~8 MB at batch 8 and 32, so no per-token term is added (an earlier
# guess that bitsandbytes keeps each linear layer's input was refuted by bench/memory_accuracy.py).
# Embedding output, its LayerNorm and dropout: elements per token outside the layers (left out
# with freeze_layers: see _activation_part).
EMBEDDING_ELEMENTS_PER_HIDDEN = 3.0
# Copies of the logits alive at the peak of a causal LM's step: logits, log-softmax, gradient.
LOGIT_COPIES = 3.0
# Logit elements per chunk of the causal-LM loss (train/objectives.py's CHUNK_ELEMENTS; the
# estimator does not import the training code).
LOGIT_CHUNK_ELEMENTS = 2**24
# NF4 with double quantisation: 4 bits per weight, an 8-bit absmax per 64 weights and a 32-bit
# constant per 256 absmax blocks (QLoRA paper, section 2).
NF4_BYTES_PER_PARAM = 0.5 + 1 / 64 + 4 / (64 * 256)
# QLoRA on CPU counted, until 2026-12-02, an fp32 copy of the quantised weights held beside
# the 4-bit ones: that was the checkpoint's fp32 pages, which quantising read into the process,
# and the quantisation's freed temporaries (SmolLM2-135M: 405 + 366 MB). The loader hands both
# back now (tunesmith.models.pages), and the term is gone; what a QLoRA run still holds beyond
# the other terms is a small slack on the activations in the whole-run estimate
# (advise/run_memory.py, QLORA_CPU_ACTIVATION_SLACK).
DEVICES: tuple[str, ...] = ("cuda", "cpu")
# Bytes per activation element under bf16 autocast on a CPU (precision auto on a CPU with
# AMX-BF16): not 2 as on a GPU, because CPU autocast runs the norms, softmax and the loss in fp32
# and keeps their fp32 outputs for the backward pass beside the bf16 inputs of the products.
# Chosen on 24 whole default runs (bench/memory_run.py grid, set v5_bf16: MiniLM's four
# methods, SmolLM2 full and LoRA): 2 left them up to 22% above the estimate, 4 up to 17% below
# it, 3 within 13.4%; the 8 SmolLM2 QLoRA and adapter runs measured afterwards are within 12.8%.
CPU_AUTOCAST_ACT_BYTES = 3
# Bytes per element of activations, weights, gradients and optimizer states by precision.
# mixed: fp32 weights and states, bf16 activations, and autocast's bf16 copy of each weight.
_BYTES = {
    "fp32": {"weight": 4, "extra_weight_copy": 0, "grad": 4, "state": 4, "act": 4},
    "bf16": {"weight": 2, "extra_weight_copy": 0, "grad": 2, "state": 2, "act": 2},
    "mixed": {"weight": 4, "extra_weight_copy": 2, "grad": 4, "state": 4, "act": 2},
}

# SmolLM2-135M-Instruct's architecture (its GGUF metadata, as transformers reads it), used when
# the converted copy under $TUNESMITH_HOME/models/ does not exist yet: reading the GGUF's config
# takes about 18 s.
SMOLLM2_135M_CONFIG: dict[str, Any] = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "vocab_size": 49152,
    "max_position_embeddings": 8192,
    "rope_theta": 100000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
}
ENCODER_TYPES = frozenset({
    "bert", "roberta", "distilbert", "deberta", "deberta-v2", "electra", "albert", "xlm-roberta",
    "mpnet", "modernbert", "camembert",
})


@dataclass(frozen=True)
class ModelShape:
    """What the estimator needs to know about a model: sizes, not weights."""

    name: str
    kind: str  # "encoder" | "causal"
    total_params: int
    layers: int | None = None
    hidden: int | None = None
    heads: int | None = None
    intermediate: int | None = None
    vocab: int | None = None
    # Body linear layers (outside heads): (full name, in_features, out_features).
    linears: tuple[tuple[str, int, int], ...] = ()
    head_params: int = 0  # classification head (trains with every method)
    standin: bool = False  # built from --params, not a real config
    # The stack of transformer blocks (methods.full.find_layout's): its name ("model.layers"),
    # each block's parameter count, and the embeddings' count (what freeze_layers freezes).
    blocks_prefix: str | None = None
    block_params: tuple[int, ...] = ()
    embedding_params: int = 0

    def block_of(self, name: str) -> int | None:
        """The index of the block a (linear layer's) full name sits in, None outside them."""
        if not self.blocks_prefix or not name.startswith(self.blocks_prefix + "."):
            return None
        index = name[len(self.blocks_prefix) + 1:].split(".", 1)[0]
        return int(index) if index.isdigit() else None

    @property
    def has_dimensions(self) -> bool:
        return bool(self.layers and self.hidden)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "total_params": self.total_params,
            "layers": self.layers, "hidden": self.hidden, "heads": self.heads,
            "intermediate": self.intermediate, "vocab": self.vocab,
        }


@dataclass(frozen=True)
class MemoryPart:
    key: str  # weights | gradients | optimizer | activations
    bytes: float
    formula: str


@dataclass
class MemoryEstimate:
    shape: ModelShape
    method: str
    batch_size: int
    max_length: int
    precision: str
    optimizer: str
    gradient_checkpointing: bool
    trainable_params: int
    parts: list[MemoryPart]
    notes: list[str] = field(default_factory=list)
    # Bytes of fp32 weights the weights part leaves out because the process hands their pages
    # back while training (CPU, bf16 autocast, frozen linear weights from a safetensors map);
    # they are resident again when the model is loaded and evaluated.
    released_bytes: float = 0.0

    @property
    def total_bytes(self) -> float:
        """The peak: weights + optimizer states + the larger of activations and gradients.

        Gradients are created during the backward pass as the activations it consumed are
        freed (and dropped after each step), so the two never peak together; the guide adds
        them, which is :attr:`sum_bytes`, an upper bound. Measured: bench/memory_accuracy.py.
        """
        size = {p.key: p.bytes for p in self.parts}
        return (size.get("weights", 0) + size.get("optimizer", 0)
                + max(size.get("gradients", 0), size.get("activations", 0)))

    @property
    def sum_bytes(self) -> float:
        return sum(p.bytes for p in self.parts)

    @property
    def total_gb(self) -> float:
        return self.total_bytes / GB

    def part(self, key: str) -> MemoryPart | None:
        return next((p for p in self.parts if p.key == key), None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.shape.to_dict(),
            "method": self.method,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "precision": self.precision,
            "optimizer": self.optimizer,
            "gradient_checkpointing": self.gradient_checkpointing,
            "trainable_params": self.trainable_params,
        }
        for key in ("weights", "gradients", "optimizer", "activations"):
            part = self.part(key)
            out[f"{key}_gb"] = round(part.bytes / GB, 4) if part else None
        out["total_gb"] = round(self.total_gb, 4)
        out["sum_gb"] = round(self.sum_bytes / GB, 4)  # the guide's addition, an upper bound
        out["formulas"] = {p.key: p.formula for p in self.parts}
        out["notes"] = self.notes
        return out


# ---------------------------------------------------------------------------------------------
# Model shapes


def _config_source(model: str) -> tuple[Any, str | None]:
    """A transformers config for ``model`` (built-in name, folder, config.json or hub id) and
    the kind when known."""
    from transformers import AutoConfig

    builtin = assets.BUILTIN_MODELS.get(model)
    if builtin is not None and builtin.gguf:
        from tunesmith.models import converted_gguf_dir

        converted = converted_gguf_dir(builtin.name) / "config.json"
        if converted.is_file():
            return AutoConfig.from_pretrained(str(converted.parent)), builtin.kind
        if builtin.name != "smollm2-135m-instruct":  # pragma: no cover - one GGUF built-in today
            raise UsageError(f"no architecture known for {builtin.name} before its conversion.")
        data = dict(SMOLLM2_135M_CONFIG)
        return AutoConfig.for_model(data.pop("model_type"), **data), builtin.kind
    if builtin is not None:
        return AutoConfig.from_pretrained(str(assets.builtin_model_path(builtin.name))), builtin.kind
    path = Path(model)
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: not a readable config.json ({exc}).") from None
        if "model_type" not in data:
            raise ConfigError(f"{path}: no 'model_type' field, so its architecture is unknown.",
                              hint="Point --model at a transformers config.json.")
        return AutoConfig.for_model(data.pop("model_type"), **data), None
    from tunesmith.models.loader import locate_model

    try:
        return AutoConfig.from_pretrained(locate_model(model)), None
    except (OSError, ValueError) as exc:
        raise assets.unknown_model_error(model, str(exc).splitlines()[0]) from None


def _kind(config: Any) -> str:
    archs = getattr(config, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "causal"
    if config.model_type in ENCODER_TYPES:
        return "encoder"
    return "causal"


def _dim(config: Any, *names: str) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _in_out(module: Any) -> tuple[int, int]:
    """(in, out) features of a linear layer; GPT-2's Conv1D stores its weight as (in, out)."""
    import torch

    rows, columns = module.weight.shape
    return (int(columns), int(rows)) if isinstance(module, torch.nn.Linear) else (int(rows), int(columns))


def model_shape(model: str, *, num_labels: int = 2) -> ModelShape:
    """The shape of ``model`` from its config, built on the meta device (nothing allocated).

    Encoders are counted with a ``num_labels`` classification head, causal LMs with their LM
    head (tied embeddings counted once). Raises AssetError for an unknown name, ConfigError for
    an unreadable config file.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from tunesmith.methods.full import find_layout
    from tunesmith.methods.targets import HEAD_NAMES, linear_layers

    config, kind = _config_source(model)
    kind = kind or _kind(config)
    if kind == "encoder":
        config.num_labels = num_labels
    auto = AutoModelForSequenceClassification if kind == "encoder" else AutoModelForCausalLM
    with torch.device("meta"):
        built = auto.from_config(config)
    total = sum(p.numel() for p in built.parameters())
    linears = tuple((name, *_in_out(module)) for name, module in linear_layers(built).items())
    head_params = 0
    if kind == "encoder":
        head_params = sum(
            p.numel() for n, p in built.named_parameters() if HEAD_NAMES.intersection(n.split("."))
        )
    hidden = _dim(config, "hidden_size", "n_embd", "d_model", "dim")
    heads = _dim(config, "num_attention_heads", "n_head", "n_heads")
    # Per-block and embedding counts, with the layout full finetuning freezes by (tied
    # parameters counted once, under their first name, as named_parameters and the freezing do).
    try:
        layout = find_layout(built)
    except ConfigError:  # no stack of blocks: freeze_layers cannot apply (the estimate says so)
        layout = None
    per_depth: dict[int, int] = {}
    for name, param in built.named_parameters() if layout else ():
        depth = layout.depth(name)  # type: ignore[union-attr]
        if depth is not None:
            per_depth[depth] = per_depth.get(depth, 0) + param.numel()
    return ModelShape(
        name=model,
        kind=kind,
        total_params=total,
        layers=_dim(config, "num_hidden_layers", "n_layer", "n_layers", "num_layers"),
        hidden=hidden,
        heads=heads,
        intermediate=_dim(config, "intermediate_size", "n_inner", "ffn_dim", "hidden_dim")
        or (4 * hidden if hidden else None),
        vocab=_dim(config, "vocab_size") if kind == "causal" else None,
        linears=linears,
        head_params=head_params,
        blocks_prefix=layout.blocks_prefix if layout else None,
        block_params=tuple(per_depth.get(d, 0) for d in range(1, layout.num_blocks + 1))
        if layout else (),
        embedding_params=per_depth.get(0, 0),
    )


def standin_shape(
    params: float,
    *,
    layers: int | None = None,
    hidden: int | None = None,
    heads: int | None = None,
    intermediate: int | None = None,
    vocab: int | None = None,
    kind: str = "causal",
) -> ModelShape:
    """A model known only by its size (``--params 7e9``); dimensions make activations possible."""
    if params <= 0:
        raise UsageError(f"--params must be a positive number of parameters, got {params:g}.")
    return ModelShape(
        name=f"{params:.3g} parameters",
        kind=kind,
        total_params=int(params),
        layers=layers,
        hidden=hidden,
        heads=heads or (max(1, hidden // 64) if hidden else None),
        intermediate=intermediate or (4 * hidden if hidden else None),
        vocab=vocab,
        standin=True,
    )


# ---------------------------------------------------------------------------------------------
# Trainable parameters by method


def _targets(shape: ModelShape, targets: str | list[str]) -> list[tuple[str, int, int]]:
    from tunesmith.methods.targets import ATTENTION_NAMES

    leaves = {name.rsplit(".", 1)[-1] for name, _, _ in shape.linears}
    if targets == "attention":
        chosen = next((set(f) for f in ATTENTION_NAMES if set(f) <= leaves), set())
        if not chosen:
            raise ConfigError(
                f"could not find the attention query/value projections of {shape.name}.",
                hint="Give finetune.lora_target_modules as a list, chosen from: "
                + ", ".join(sorted(leaves)),
            )
    elif targets == "all-linear":
        chosen = leaves
    else:
        missing = [t for t in targets if t not in leaves]
        if missing:
            raise ConfigError(
                f"finetune.lora_target_modules: {', '.join(missing)} not among the linear layers "
                f"of {shape.name}.",
                hint="Available: " + ", ".join(sorted(leaves)),
            )
        chosen = set(targets)
    return [lin for lin in shape.linears if lin[0].rsplit(".", 1)[-1] in chosen]


def trainable_params(
    shape: ModelShape, args: MemoryArgs | None = None, **changes: Any
) -> tuple[int, str, list[str]]:
    """(trainable count, its formula, notes) for ``args.method`` on ``shape``, without building
    it. ``args`` and ``changes`` as for :func:`estimate_memory` (only the method's own fields
    matter). Raises UsageError for an unknown method or argument name."""
    a = (args or MemoryArgs.defaults()).replace(**changes)
    method, lora_r, lora_targets = a.method, a.lora_r, a.lora_targets
    adapter_type, adapter_reduction_factor = a.adapter_type, a.adapter_reduction_factor
    freeze = a.freeze_layers
    notes: list[str] = []
    head = shape.head_params
    head_text = f" + head {head:,}" if head else ""
    if method == "full":
        if not freeze:
            return shape.total_params, f"all {shape.total_params:,} parameters", notes
        if not shape.block_params:
            notes.append(f"freeze_layers {freeze} not counted: the block sizes of {shape.name} "
                         "are unknown (every parameter counted as trainable).")
            return shape.total_params, f"all {shape.total_params:,} parameters", notes
        _check_freeze(shape, freeze, len(shape.block_params))
        frozen = shape.embedding_params + sum(shape.block_params[:freeze])
        return (shape.total_params - frozen,
                f"{shape.total_params:,} parameters less the embeddings and the lowest {freeze} "
                f"blocks ({frozen:,}, frozen by freeze_layers)", notes)
    if method in LORA_FAMILY:
        if shape.standin:
            if not shape.has_dimensions:
                notes.append("LoRA parameters left out (give --layers and --hidden to count them).")
                return 0, "LoRA parameters unknown", notes
            # Stand-in: the guide's q_proj/v_proj, square hidden x hidden, on the blocks above
            # the lowest freeze_layers.
            _check_freeze(shape, freeze, shape.layers - 1)  # type: ignore[operator]
            adapted = shape.layers - freeze  # type: ignore[operator]
            count = adapted * 2 * lora_r * 2 * shape.hidden  # type: ignore[operator]
            return count, f"{adapted} layers x 2 targets x r {lora_r} x (h + h)", notes
        targets = _targets(shape, lora_targets)
        if freeze and not shape.blocks_prefix:
            notes.append(f"freeze_layers {freeze} not counted: no stack of blocks found in "
                         f"{shape.name} (LoRA counted on every target).")
        elif freeze:
            # PEFT's layers_to_transform: no LoRA on the lowest freeze_layers blocks.
            _check_freeze(shape, freeze, len(shape.block_params) - 1)
            targets = [t for t in targets if (shape.block_of(t[0]) or 0) >= freeze]
        count = sum(lora_r * (i + o) for _, i, o in targets)
        formula = f"r {lora_r} x (in + out) over {len(targets)} target layers"
        if freeze and shape.blocks_prefix:
            formula += f" (above the lowest {freeze} blocks)"
        if method == "dora":
            count += sum(o for _, _, o in targets)
            formula += " + magnitude (out) per target"
        return count + head, formula + head_text, notes
    if method == "adapter":
        if freeze:
            raise ConfigError(
                f"finetune.freeze_layers is {freeze}, but bottleneck adapters go into every "
                "block: freeze_layers applies to full finetuning and the LoRA family.",
                hint="Set freeze_layers to 0, or estimate method lora.")
        if not shape.has_dimensions:
            notes.append("adapter parameters left out (give --layers and --hidden to count them).")
            return 0, "adapter parameters unknown", notes
        width = max(1, shape.hidden // adapter_reduction_factor)  # type: ignore[operator]
        sites = shape.layers * (2 if adapter_type == "houlsby" else 1)  # type: ignore[operator]
        per_site = 2 * shape.hidden * width + width + shape.hidden  # type: ignore[operator]
        return (
            sites * per_site + head,
            f"{sites} sites x (2 x h {shape.hidden} x {width} + biases){head_text}",
            notes,
        )
    raise UsageError(f"unknown method '{method}' (allowed: {', '.join(METHODS)}).")


def _check_freeze(shape: ModelShape, freeze: int, most: int) -> None:
    """Refuse ``freeze_layers`` above ``most`` (the method's limit), as training would."""
    if freeze > most:
        raise ConfigError(
            f"finetune.freeze_layers is {freeze} but {shape.name} has {shape.layers} blocks.",
            hint=f"Use 0..{most} (full finetuning may freeze every block; the LoRA family needs "
            "one block left to adapt).",
        )


# ---------------------------------------------------------------------------------------------
# The estimate


def _extra_lora_inputs(shape: ModelShape, method: str, targets: str | list[str]) -> float:
    """Input features per layer of the LoRA targets beyond the query/value pair the activation
    coefficients were fitted with (0 for other methods and stand-ins)."""
    if method not in LORA_FAMILY or shape.standin or not shape.layers:
        return 0.0
    chosen = sum(i for _, i, _ in _targets(shape, targets))
    fitted = sum(i for _, i, _ in _targets(shape, "attention"))
    return max(0.0, (chosen - fitted) / shape.layers)


def _activation_part(
    shape: ModelShape, method: str, batch: int, seq: int, act_bytes: int, checkpointing: bool,
    notes: list[str], freeze: int = 0, extra_inputs: float = 0.0,
) -> MemoryPart | None:
    if not shape.has_dimensions:
        notes.append("activations left out: give --layers and --hidden (and --vocab for an LM's "
                     "logits) to include them.")
        return None
    h, layers = shape.hidden, shape.layers
    i = shape.intermediate or 4 * h  # type: ignore[operator]
    heads = shape.heads or max(1, h // 64)  # type: ignore[operator]
    a, b, c = ACTIVATION_COEFFICIENTS[(shape.kind, method == "full")]
    per_layer = a * h + b * i + c * heads * seq + LORA_INPUT_COPIES * extra_inputs  # type: ignore[operator]
    tokens = batch * seq
    # Autograd saves nothing for blocks below the first that trains: their inputs need no
    # gradient (the lowest freeze_layers blocks are frozen or carry no LoRA). Counted with
    # tests/advise/test_advise_memory.py's saved-tensor hook: each frozen block removes one
    # block's tensors, and freezing the first also removes about the per-token embedding term
    # (full: the embeddings stop training; frozen bases: the coefficients, fitted with that term
    # on unfrozen runs, under-count a block whose input needs a gradient by about as much).
    saving = layers - freeze  # type: ignore[operator]
    embedding_term = not freeze
    # The backward pass needs about one layer's worth of gradient buffers on top (measured:
    # bench/memory_accuracy.py); with checkpointing also one layer recomputed at a time.
    if checkpointing:
        # The LoRA family and adapters make the embedding output require a gradient under
        # checkpointing (methods.apply_method), so every block keeps its input, frozen or not.
        kept = saving if method == "full" else layers
        layer_elems = tokens * (kept * h + 2 * per_layer)  # type: ignore[operator]
        layer_text = (f"B x L x (inputs of {kept} layers x h {h} + 2 layers x {per_layer:,.0f}: "
                      "one recomputed, one of backward buffers)")
    else:
        layer_elems = tokens * (saving + 1) * per_layer
        lora_text = (f" + {LORA_INPUT_COPIES:g} x {extra_inputs:,.0f} LoRA inputs"
                     if extra_inputs else "")
        layer_text = (f"B x L x ({saving} layers{f' above the lowest {freeze}' if freeze else ''}"
                      f" + 1 for backward buffers) x ({a:g}h + {b:g}i + {c:g} heads x L{lora_text}"
                      f" = {per_layer:,.0f})")
    total = layer_elems
    text = f"({layer_text}"
    if embedding_term:
        total += tokens * EMBEDDING_ELEMENTS_PER_HIDDEN * h  # type: ignore[operator]
        text += f" + {EMBEDDING_ELEMENTS_PER_HIDDEN:g}h per token"
    text += f") x {act_bytes} bytes"
    if shape.kind == "causal":
        if shape.vocab:
            # Logits stay fp32 (the loss upcasts them) whatever the activation precision. The
            # loss runs the head over the labelled positions in chunks (train/objectives.py),
            # so at most one chunk's logits exist at a time.
            rows = min(tokens, max(1, LOGIT_CHUNK_ELEMENTS // shape.vocab))
            total_bytes = total * act_bytes + LOGIT_COPIES * rows * shape.vocab * 4
            text += (f" + logits {LOGIT_COPIES:g} x min(B x L, chunk {rows}) x vocab "
                     f"{shape.vocab:,} x 4 bytes")
            return MemoryPart("activations", total_bytes, text)
        notes.append("LM logits left out: give --vocab to include them.")
    return MemoryPart("activations", total * act_bytes, text)


@dataclass(frozen=True)
class MemoryArgs:
    """Everything the estimate depends on besides the model's shape: one typed group.

    Build it from a run's config with :meth:`from_config` (what the preflight and ``advise``
    do); ``MemoryArgs.defaults()`` is the built-in config's values (what ``estimate-memory``
    starts from). Values are checked by :func:`estimate_memory`, not here.
    """

    method: str
    batch_size: int
    max_length: int
    precision: str  # the estimator's precision: fp32 | bf16 | mixed (see config_precision)
    optimizer: str
    gradient_checkpointing: bool
    lora_r: int
    lora_targets: str | list[str]
    adapter_type: str
    adapter_reduction_factor: int
    keep_best_copy: bool = False  # the loop keeps the best trainable weights in memory
    device: str = "cuda"
    freeze_layers: int = 0  # the lowest N blocks do not train (full: frozen; LoRA family: no LoRA)

    @classmethod
    def from_config(cls, cfg: Any, *, device: str = "cuda", **changes: Any) -> MemoryArgs:
        """The arguments a run of ``cfg`` (a :class:`tunesmith.config.Config`) trains with on
        ``device``; ``changes`` replace fields (e.g. the preflight's ``batch_size``). Raises
        UsageError for a field that does not exist."""
        ft = cfg.finetune
        args = cls(
            method=ft.method, batch_size=ft.batch_size, max_length=cfg.prepare.max_length,
            precision=config_precision(ft.precision, cuda=device == "cuda"),
            optimizer="adamw",  # the loop's optimizer
            gradient_checkpointing=ft.gradient_checkpointing, lora_r=ft.lora_r,
            lora_targets=ft.lora_target_modules, adapter_type=ft.adapter_type,
            adapter_reduction_factor=ft.adapter_reduction_factor, keep_best_copy=True,
            device=device, freeze_layers=ft.freeze_layers,
        )
        return args.replace(**changes)

    @classmethod
    def defaults(cls, *, device: str = "cuda") -> MemoryArgs:
        """The built-in config's values (config.py is the one place defaults live); no
        best-checkpoint copy, as for a plain training script."""
        return cls.from_config(Config(), device=device, keep_best_copy=False)

    def replace(self, **changes: Any) -> MemoryArgs:
        from dataclasses import fields, replace

        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise UsageError(f"unknown memory-estimate argument(s): {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(known))}).")
        return replace(self, **changes)


def estimate_memory(shape: ModelShape, args: MemoryArgs | None = None, **changes: Any) -> MemoryEstimate:
    """Peak training memory for one micro-batch of ``batch_size`` x ``max_length`` tokens.

    ``args`` (default :meth:`MemoryArgs.defaults`) with ``changes`` applied on top (keyword
    shorthand: ``estimate_memory(shape, method="full")``). ``keep_best_copy`` adds the copy of
    the trainable weights that tunesmith's loop keeps for the best checkpoint (counted with the
    weights). ``device`` ("cuda" or "cpu") decides the default precision and, for QLoRA under
    bf16 autocast, whether the casts of the dequantised weights count. Cost: arithmetic only.
    Raises UsageError for unknown choices or argument names.
    """
    # Without args the defaults follow the device asked for (precision auto: see config_precision).
    a = (args or MemoryArgs.defaults(device=changes.get("device", "cuda"))).replace(**changes)
    method, batch_size, max_length, precision = a.method, a.batch_size, a.max_length, a.precision
    optimizer, gradient_checkpointing, device = a.optimizer, a.gradient_checkpointing, a.device
    keep_best_copy = a.keep_best_copy
    if device not in DEVICES:
        raise UsageError(f"--device must be one of {', '.join(DEVICES)}, got '{device}'.")
    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got '{precision}'.")
    if optimizer not in OPTIMIZERS:
        raise UsageError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got '{optimizer}'.")
    if batch_size < 1 or max_length < 1:
        raise UsageError("--batch-size and --max-length must be at least 1.")
    sizes = dict(_BYTES[precision])
    released = 0.0
    if precision == "mixed" and device == "cpu":
        sizes["act"] = CPU_AUTOCAST_ACT_BYTES
    trainable, trainable_text, notes = trainable_params(shape, a)
    total = shape.total_params
    parts: list[MemoryPart] = []

    added = 0 if method == "full" else trainable - shape.head_params
    if method == "qlora":
        if shape.standin:
            quantised = total
            notes.append("QLoRA stand-in: every parameter counted as 4-bit.")
        else:
            quantised = sum(i * o for _, i, o in shape.linears)
        rest = total - quantised
        # The method's matrices train in fp32 over the 4-bit base; the rest stays unquantised.
        weight_bytes = quantised * NF4_BYTES_PER_PARAM + (rest + added) * sizes["weight"]
        weight_text = (f"{quantised:,} linear weights x {NF4_BYTES_PER_PARAM:.4f} bytes (NF4) + "
                       f"{rest + added:,} others x {sizes['weight']} bytes")
        if device == "cpu":
            # bf16 autocast casts each dequantised weight: counted as a held bf16 copy (measured
            # on the AMX machine before the loader's release; not measured again since).
            if sizes["extra_weight_copy"]:
                weight_bytes += quantised * sizes["extra_weight_copy"]
                weight_text += f" + bf16 autocast copy {quantised:,} x {sizes['extra_weight_copy']} bytes"
    else:
        weight_bytes = (total + added) * sizes["weight"]
        weight_text = f"{total + added:,} parameters x {sizes['weight']} bytes"
        if sizes["extra_weight_copy"]:
            weight_bytes += total * sizes["extra_weight_copy"]
            weight_text += f" + bf16 autocast copy {total:,} x {sizes['extra_weight_copy']} bytes"
            if device == "cpu" and method != "full" and shape.linears:
                # The loop holds frozen linear weights in bf16 and hands the pages of their fp32
                # numbers, which a safetensors checkpoint leaves in its file map, back to the
                # page cache while training (tunesmith.train.precision.FrozenWeightsInBf16).
                released = sum(i * o for _, i, o in shape.linears) * sizes["weight"]
                weight_bytes -= released
                weight_text += (f" - {released / sizes['weight']:,.0f} frozen linear weights x "
                                f"{sizes['weight']} bytes left in the checkpoint's page cache "
                                "while their bf16 copies train")
    if keep_best_copy and trainable:
        weight_bytes += trainable * sizes["weight"]
        weight_text += f" + best-checkpoint copy {trainable:,} x {sizes['weight']} bytes"
    parts.append(MemoryPart("weights", weight_bytes, weight_text))

    parts.append(MemoryPart(
        "gradients", trainable * sizes["grad"],
        f"{trainable:,} trainable ({trainable_text}) x {sizes['grad']} bytes",
    ))
    if optimizer == "adamw":
        state_bytes, state_text = 2 * sizes["state"], f"2 states x {sizes['state']} bytes"
    elif optimizer == "adamw-8bit":
        state_bytes, state_text = 2, "2 states x 1 byte (8-bit)"
    else:
        state_bytes, state_text = sizes["state"], f"1 momentum state x {sizes['state']} bytes"
    parts.append(MemoryPart(
        "optimizer", trainable * state_bytes, f"{trainable:,} trainable x {state_text}"
    ))
    activations = _activation_part(
        shape, method, batch_size, max_length, sizes["act"], gradient_checkpointing, notes,
        a.freeze_layers, _extra_lora_inputs(shape, method, a.lora_targets),
    )
    if activations is not None:
        parts.append(activations)
    return MemoryEstimate(
        shape=shape, method=method, batch_size=batch_size, max_length=max_length,
        precision=precision, optimizer=optimizer, gradient_checkpointing=gradient_checkpointing,
        trainable_params=trainable, parts=parts, notes=notes, released_bytes=released,
    )


def config_precision(precision: str, *, cuda: bool) -> str:
    """The estimator's precision for ``finetune.precision`` on this machine, by the loop's rule
    (:func:`tunesmith.train.precision.autocast_for`: auto is bf16 autocast on a GPU with bf16
    and on a CPU with AMX-BF16, fp32 on other CPUs): ``fp32``, or ``mixed`` for autocast."""
    from tunesmith.train.precision import cpu_has_amx_bf16

    if precision == "fp32" or (precision == "auto" and not cuda and not cpu_has_amx_bf16()):
        return "fp32"
    return "mixed"


def largest_batch_that_fits(
    shape: ModelShape, budget_bytes: float, args: MemoryArgs | None = None, *, limit: int = 4096,
    total: Callable[[MemoryArgs], float] | None = None, **changes: Any,
) -> int:
    """The largest micro-batch (a power of two, at most ``limit``) whose estimate fits in
    ``budget_bytes``; 0 when even a batch of 1 does not fit. ``total`` (arguments -> bytes)
    replaces the training estimate, e.g. by the whole run's."""
    base = (args or MemoryArgs.defaults(device=changes.get("device", "cuda"))).replace(**changes)
    need = total or (lambda a: estimate_memory(shape, a).total_bytes)
    best = 0
    batch = 1
    while batch <= limit:
        if need(base.replace(batch_size=batch)) > budget_bytes:
            break
        best = batch
        batch *= 2
    return best


def format_bytes(n: float) -> str:
    return f"{n / GB:.2f} GB" if n >= 0.1 * GB else f"{n / 1e6:.0f} MB"


def human_params(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            value = n / size
            return f"{value:.{0 if value >= 100 or math.isclose(value, round(value)) else 1}f}{unit}"
    return str(int(n))
