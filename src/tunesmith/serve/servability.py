"""Which servers can serve a run's adapter, and the exact command for each route that works.

Reads only the run's ``adapter/`` metadata (``tunesmith_adapter.json`` and, for PEFT methods,
``adapter_config.json``): no model is loaded, so it costs milliseconds. The rules are the
servers' documented limits:

- vLLM serves LoRA adapters of causal LMs with ``--enable-lora``, for ranks in its supported
  set, without DoRA and without full copies of other modules (``modules_to_save``: embeddings,
  ``lm_head``, a classification head).
- llama.cpp applies LoRA adapters converted to GGUF (``convert_lora_to_gguf.py``) to a causal
  LM, under the same restrictions (no DoRA magnitudes, no extra full modules).
- Merged weights (``tunesmith merge``) work for LoRA, DoRA and QLoRA (and a fully finetuned run
  is already a whole model); bottleneck adapters add layers and cannot merge.
- ``tunesmith serve`` serves every tunesmith run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tunesmith import runfiles
from tunesmith.serve.predict import adapter_dir

# vLLM's --max-lora-rank choices (vllm/config/lora.py).
VLLM_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


@dataclass(frozen=True)
class Route:
    server: str  # "tunesmith serve", "vLLM", "llama.cpp", "merged weights"
    works: bool
    reason: str  # why not, or a caveat
    command: str | None = None


@dataclass(frozen=True)
class Servability:
    run: Path
    method: str
    task: str
    routes: tuple[Route, ...]

    def summary(self) -> str:
        """One line per route: the server, yes/no, and the command or the reason."""
        lines = [f"serving {self.run} ({self.method}, {self.task}):"]
        for route in self.routes:
            mark = "yes" if route.works else "no "
            detail = route.command if route.works and route.command else route.reason
            lines.append(f"  {mark} {route.server}: {detail}"
                         + (f" ({route.reason})" if route.works and route.reason and route.command else ""))
        return "\n".join(lines)


def check_servability(run: str | Path) -> Servability:
    """The routes for run folder (or adapter folder) ``run``; UsageError when it has no adapter."""
    from tunesmith.methods import read_adapter_meta

    folder = adapter_dir(run)
    root = folder.parent if folder.name == runfiles.ADAPTER_DIR else folder
    meta = read_adapter_meta(folder)
    method, fmt, task = meta.get("method", "?"), meta.get("format"), meta.get("task", "?")
    name = root.resolve().name
    base = meta.get("base_model", "?")
    causal = task != "classification"
    peft_config = _peft_config(folder) if fmt == "peft" else {}
    rank = peft_config.get("r")
    extra_modules = list(peft_config.get("modules_to_save") or [])
    dora = bool(peft_config.get("use_dora")) or method == "dora"

    problems = []
    if fmt != "peft":
        problems.append(f"method '{method}' is not a LoRA adapter")
    if dora:
        problems.append("DoRA's magnitude vectors are not supported")
    if not causal:
        problems.append("classification adapters (a trained head) are served as whole models only")
    elif extra_modules:
        problems.append(f"the adapter carries full copies of {', '.join(extra_modules)}")
    vllm_problems = list(problems)
    if fmt == "peft" and rank not in VLLM_RANKS:
        vllm_problems.append(f"rank {rank} is not one of vLLM's {', '.join(map(str, VLLM_RANKS))}")

    routes = [Route("tunesmith serve", True, "", f"tunesmith serve --run {root}")]
    if vllm_problems:
        routes.append(Route("vLLM", False, "; ".join(vllm_problems)))
    else:
        caveat = "trained on a 4-bit base: outputs differ slightly on a full-precision one" if method == "qlora" else ""
        routes.append(Route("vLLM", True, caveat,
                            f"vllm serve {_model_folder(base)} --enable-lora --lora-modules {name}={folder} "
                            f"--max-lora-rank {rank}"))
    if problems:
        routes.append(Route("llama.cpp", False, "; ".join(problems)))
    else:
        routes.append(Route("llama.cpp", True, "",
                            f"python convert_lora_to_gguf.py {folder} --base BASE_HF_FOLDER --outfile {name}.gguf"
                            f" && llama-server -m BASE.gguf --lora {name}.gguf"))
    if fmt == "bottleneck":
        routes.append(Route("merged weights", False,
                            "bottleneck adapters are extra layers in series; no weight matrix absorbs them"))
    elif fmt == "full":
        routes.append(Route("merged weights", True, "the run already holds whole-model weights",
                            f"tunesmith merge {root} --out {name}-merged"))
    else:
        then = f" && vllm serve {name}-merged" if causal else ""
        routes.append(Route("merged weights", True, "", f"tunesmith merge {root} --out {name}-merged{then}"))
    return Servability(root, method, task, tuple(routes))


def _model_folder(base: str) -> str:
    """What another server loads for ``base``: a built-in's folder (SmolLM2's converted copy)."""
    from tunesmith import assets

    builtin = assets.BUILTIN_MODELS.get(base)
    if builtin is None:
        return base
    if builtin.gguf:
        from tunesmith.models.loader import converted_gguf_dir

        return str(converted_gguf_dir(base))
    return str(assets.builtin_model_path(base))


def _peft_config(folder: Path) -> dict:
    path = folder / "adapter_config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
