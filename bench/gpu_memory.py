"""The CUDA half of the memory table: the training estimate against measured GPU memory.

For the same grid as ``bench/memory_run.py`` (MiniLM and SmolLM2, full, LoRA, QLoRA and
bottleneck adapters, two micro-batches and two lengths each) this trains each row for a few
steps with tunesmith's own ``apply_method`` + ``fit`` (``finetune.precision: auto``, which is
bf16 autocast on a GPU; QLoRA's compute dtype bf16) and records, per row:

- ``estimate_mb``: :func:`tunesmith.advise.memory.estimate_memory` with ``device="cuda"`` (the
  training terms: weights, gradients, optimizer states, activations);
- ``allocated_mb``: ``torch.cuda.max_memory_allocated()``, the peak of live tensors, which the
  training terms model;
- ``reserved_mb``: ``torch.cuda.max_memory_reserved()``, what the caching allocator held at
  its peak (the allocator's slack on top of the tensors);
- once per process, ``context_mb``: the device memory in use (``cudaMemGetInfo``) beyond what
  the allocator reserved: the CUDA context, cuBLAS workspaces and kernels' modules.

A process on the GPU needs about ``context + reserved``; the estimate's error is reported
against the allocated peak and against that sum. Nothing can be downloaded on the borrowed GPU
machines, so the models are built from their architectures (MiniLM: all-MiniLM-L6-v2's
BertConfig; SmolLM2: :data:`tunesmith.advise.memory.SMOLLM2_135M_CONFIG`) with random weights,
and the data are random token ids of exactly ``length`` tokens per row: memory depends on
shapes, not on what weights or tokens mean.

    RESULTS_DIR=$OUT python bench/gpu_memory.py     # on the GPU machine (bench/gpu_smoke.sh
                                                    # runs it after its throughput check)
    DRY_RUN=1 python bench/gpu_memory.py            # here, on CPU: 2-layer models, 2 rows per
                                                    # model, nothing written

Writes ``$RESULTS_DIR/gpu_memory.json`` (default bench/results/) after each row. About 2-4
minutes on one H100/H200 (most of it building the models).
"""

from __future__ import annotations

import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from memory_run import GRID, label  # noqa: E402  (the CPU table's rows)

DRY = os.environ.get("DRY_RUN") == "1"
STEPS = 3
# all-MiniLM-L6-v2's config.json (the fields that set its shape).
MINILM_CONFIG = {
    "model_type": "bert", "architectures": ["BertModel"], "hidden_size": 384,
    "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536,
    "vocab_size": 30522, "max_position_embeddings": 512, "type_vocab_size": 2,
}


def configs(tmp: Path) -> dict[str, Path]:
    """A config.json per grid model (2 layers in a dry run), written under ``tmp``."""
    from tunesmith.advise.memory import SMOLLM2_135M_CONFIG

    out = {}
    for name, data in (("minilm", MINILM_CONFIG), ("smollm2-135m-instruct", SMOLLM2_135M_CONFIG)):
        data = dict(data, **({"num_hidden_layers": 2} if DRY else {}))
        path = tmp / name / "config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
        out[name] = path
    return out


def build(config_path: Path, method: str, device: str):
    """The model with random weights on ``device``; QLoRA's base saved once and reloaded in
    4-bit (bitsandbytes quantises while loading)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    from tunesmith.methods.qlora import bnb_config

    config = AutoConfig.from_pretrained(config_path.parent)
    encoder = config.model_type == "bert"
    auto = AutoModelForSequenceClassification if encoder else AutoModelForCausalLM
    if encoder:
        config.num_labels = 2
    torch.manual_seed(0)
    if method != "qlora":
        return auto.from_config(config).to(device)
    saved = config_path.parent / "weights"
    if not saved.is_dir():
        auto.from_config(config).save_pretrained(saved)
    return auto.from_pretrained(saved, quantization_config=bnb_config("float32" if DRY else "bfloat16"),
                                device_map={"": 0} if device == "cuda" else "cpu")


def measure(row: tuple, config_path: Path, device: str) -> dict:
    import torch

    from tunesmith.advise.memory import MemoryArgs, estimate_memory, model_shape
    from tunesmith.config import Config, FinetuneConfig
    from tunesmith.methods import apply_method
    from tunesmith.train.encoding import EncodedDataset
    from tunesmith.train.loop import fit
    from tunesmith.train.objectives import CausalLMObjective, ClassificationObjective

    model_name, _, method, batch, length, _ = row
    encoder = model_name == "minilm"
    cfg = FinetuneConfig(method=method, batch_size=batch, max_steps=STEPS,
                         qlora_compute_dtype="float32" if DRY else "bfloat16",
                         precision="fp32" if DRY else "auto")
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = apply_method(build(config_path, method, device), cfg,
                         task="classification" if encoder else "chat")
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    examples = []
    for i in range(batch * STEPS):
        ids = torch.randint(5, vocab, (length,), generator=g).tolist()
        examples.append({"input_ids": ids, "label": i % 2} if encoder
                        else {"input_ids": ids, "labels": ids})
    started = time.perf_counter()
    fit(model, EncodedDataset(examples, [length] * len(examples)),
        objective=ClassificationObjective() if encoder else CausalLMObjective(), cfg=cfg,
        pad_token_id=0, progress=False)
    seconds = time.perf_counter() - started
    # fit() without an evaluation keeps no best-weights copy.
    whole = Config.model_validate({"finetune": cfg.model_dump(), "prepare": {"max_length": length}})
    args = MemoryArgs.from_config(whole, device=device, keep_best_copy=False)
    est = estimate_memory(model_shape(str(config_path)), args)
    out = {"label": label(row), "row": list(row), "seconds": round(seconds, 1),
           "estimate_mb": round(est.total_bytes / 2**20, 1),
           "estimate_parts_mb": {p.key: round(p.bytes / 2**20, 1) for p in est.parts}}
    if device == "cuda":
        allocated = torch.cuda.max_memory_allocated() / 2**20
        reserved = torch.cuda.max_memory_reserved() / 2**20
        out.update(allocated_mb=round(allocated, 1), reserved_mb=round(reserved, 1),
                   error_vs_allocated=round(out["estimate_mb"] / allocated - 1, 4),
                   reserved_over_allocated=round(reserved / allocated, 3))
    del model
    return out


def context_mb() -> float:
    """Device memory in use beyond the allocator's reserve (the CUDA context and libraries'
    workspaces), in MB, with one matmul run so that cuBLAS has set itself up."""
    import torch

    x = torch.randn(256, 256, device="cuda")
    (x @ x).sum().item()
    free, total = torch.cuda.mem_get_info()
    return (total - free - torch.cuda.memory_reserved()) / 2**20


def main() -> int:
    import torch
    import transformers

    device = "cpu" if DRY else "cuda"
    assert DRY or torch.cuda.is_available(), "this check needs a CUDA GPU (DRY_RUN=1 tries it on CPU)"
    rows = GRID
    if DRY:  # two rows per model: the smallest, and a QLoRA one
        rows = [r for r in GRID if (r[2], r[3], r[4]) in {("lora", 8, 32), ("qlora", 1, 128), ("adapter", 1, 128),
                                                          ("full", 8, 32)}]
    results = {
        "what": "training estimate (estimate_memory, device cuda) against torch.cuda peak "
                "allocated and reserved memory (MB = 2**20 bytes), tunesmith's apply_method + fit, "
                f"{STEPS} steps, bf16 autocast, random weights and tokens",
        "device": "cpu (dry run)" if DRY else torch.cuda.get_device_name(0),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "platform": platform.platform(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "context_mb": None if DRY else round(context_mb(), 1), "rows": []}
    path = Path(os.environ.get("RESULTS_DIR", HERE / "results")) / "gpu_memory.json"
    with tempfile.TemporaryDirectory(prefix="gpu-memory-") as tmp:
        paths = configs(Path(tmp))
        for row in rows:
            try:
                entry = measure(row, paths[row[0]], device)
            except Exception as exc:  # one failing row (e.g. out of memory) does not lose the rest
                entry = {"label": label(row), "row": list(row), "error": f"{type(exc).__name__}: {exc}"}
            results["rows"].append(entry)
            print(json.dumps({k: v for k, v in entry.items() if k != "estimate_parts_mb"}), flush=True)
            if not DRY:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(results, indent=2) + "\n")
    print("dry run: the script works on CPU; nothing written" if DRY else f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
