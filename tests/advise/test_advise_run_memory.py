"""The whole-run memory estimate against a real default run, and its parts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunesmith.advise import run_memory
from tunesmith.advise.memory import MemoryArgs, estimate_memory
from tunesmith.advise.run_memory import estimate_run
from tunesmith.train import objectives
from tunesmith.train.precision import cpu_has_amx_bf16

TOLERANCE = 0.15


def test_logit_chunk_of_the_estimate_is_the_losss():
    from tunesmith.advise import memory

    assert memory.LOGIT_CHUNK_ELEMENTS == objectives.CHUNK_ELEMENTS


def test_run_total_adds_fixed_cost_slack_and_best_copy(shape):
    args = MemoryArgs.defaults(device="cpu").replace(batch_size=4, max_length=128)
    run = estimate_run(shape, args, fixed=500e6)
    train = estimate_memory(shape, args)
    size = {p.key: p.bytes for p in train.parts}
    # LoRA: the gradients fill only a little of glibc's slack on the activations.
    assert size["gradients"] < (run_memory.ACTIVATION_SLACK - 1) * size["activations"]
    training = (size["weights"] + size["optimizer"] + train.trainable_params * 4
                + run_memory.ACTIVATION_SLACK * size["activations"] - size["gradients"])
    assert run.total_bytes == pytest.approx(
        500e6 + run_memory.RUN_EXTRA_BYTES + max(run_memory.LOAD_COPIES * size["weights"], training))
    # On CUDA the whole-run terms are not modelled: the training estimate, with a note.
    gpu = estimate_run(shape, args.replace(device="cuda"))
    assert gpu.total_bytes == estimate_memory(shape, args.replace(device="cuda")).total_bytes
    assert gpu.notes


@pytest.mark.integration  # measures in a real subprocess (10-60 s)
def test_fixed_cost_is_measured_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_HOME", str(tmp_path))
    path = run_memory.fixed_cost_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"private_bytes": 100e6, "library_pages_bytes": 23e6,
                                "versions": run_memory._versions()}))
    cached = run_memory.fixed_cost()
    assert (cached.private, cached.library_pages, cached.bytes) == (100e6, 23e6, 123e6)
    assert cached.where == f"measured once on this machine ({path})"
    # Other library versions: the cached figure no longer applies and is measured again.
    path.write_text(json.dumps({"private_bytes": 100e6, "library_pages_bytes": 23e6,
                                "versions": {"torch": "0.0"}}))
    fresh = run_memory.fixed_cost()
    # torch alone is about 230 MB resident; its libraries' pages are mapped from disk.
    assert fresh.private > 200e6 and fresh.library_pages > 20e6 and "measured now" in fresh.where
    assert json.loads(path.read_text())["private_bytes"] == fresh.private


def test_library_pages_are_this_processs_mapped_files_without_model_weights(tmp_path):
    """Reading a mapped weights file adds resident file pages that are not library pages."""
    import mmap

    before = run_memory.library_pages_bytes()
    assert before > 1e6  # the interpreter and its extension modules at least
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(os.urandom(32 * 2**20))
    with weights.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        assert sum(mapped[i] for i in range(0, len(mapped), 4096)) >= 0  # touch every page
        assert run_memory.library_pages_bytes() - before < 8 * 2**20


@pytest.mark.integration
@pytest.mark.parametrize("cached_pages_off_by", [None, 250e6], ids=["first-use", "stale-pages"])
def test_small_default_run_peaks_within_15_percent_of_its_estimate(tmp_path, cached_pages_off_by):
    """A real default `tunesmith run` (MiniLM LoRA) in a fresh process: the whole-run peak
    metrics.json records (the kernel's VmHWM) against the preflight's estimate.

    first-use: an empty TUNESMITH_HOME, as on a fresh machine: the run measures the libraries'
    fixed cost itself. stale-pages: a cached fixed cost whose library pages were measured in
    another page-cache state (250 MB more, as right after pip wrote the libraries): the run's
    estimate must not follow them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = str(Path(run_memory.__file__).resolve().parents[2])
    env["TUNESMITH_HOME"] = str(tmp_path / "home")
    env.pop("TUNESMITH_SET", None)
    cache = tmp_path / "home" / "memory" / "fixed_cost.json"
    if cached_pages_off_by:
        subprocess.run([sys.executable, "-c", "from tunesmith.advise.run_memory import fixed_cost; "
                        "fixed_cost()"], env=env, check=True, timeout=600)
        stale = json.loads(cache.read_text())
        stale["library_pages_bytes"] += cached_pages_off_by
        cache.write_text(json.dumps(stale))
    subprocess.run([sys.executable, "-m", "tunesmith.cli.main", "run", "--no-progress",
                    "--out", "run", "--set", "prepare.limit=200", "--set", "finetune.max_steps=2"],
                   cwd=tmp_path, env=env, check=True, capture_output=True, timeout=600)
    assert cache.is_file()  # measured on first use
    train = json.loads((tmp_path / "run" / "metrics.json").read_text())["train"]
    assert train["estimate_run_mb"] > train["estimate_train_mb"] > 0
    assert 0 < train["train_added_mb"] < train["peak_run_mb"]
    # The two parts of training's peak: memory when the loop began, and what it added.
    assert train["train_start_mb"] + train["train_added_mb"] == pytest.approx(train["peak_memory_mb"], abs=0.2)
    assert train["estimate_run_mb"] == pytest.approx(train["peak_run_mb"], rel=TOLERANCE)
    assert train["gradient_checkpointing"] is False  # activations do not dominate this run
    assert "imported libraries" in train["estimate_dominant"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "peak memory: measured / estimated" in report


@pytest.mark.integration
@pytest.mark.skipif(not cpu_has_amx_bf16(), reason="precision auto is bf16 autocast only on a "
                    "CPU with AMX-BF16 (elsewhere bf16 is emulated: minutes for this run)")
def test_chat_lora_run_where_training_sets_the_peak_is_within_15_percent_of_its_estimate(tmp_path):
    """SmolLM2 chat LoRA, 4 x 256, a default run: training sets its peak, and under bf16
    autocast the frozen linear weights' fp32 pages (425 MB) leave the process while their bf16
    copies train. An estimate that still counts them is 20% high here (measured: 2,480 against
    2,972 MB)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = str(Path(run_memory.__file__).resolve().parents[2])
    env.pop("TUNESMITH_SET", None)
    settings = ["prepare.dataset=chitchat", "prepare.limit=60", "prepare.max_length=256",
                "finetune.model=smollm2-135m-instruct", "finetune.method=lora",
                "finetune.batch_size=4", "finetune.max_steps=3",
                "evaluation.generation_limit=2", "evaluation.max_new_tokens=8",
                "evaluation.forgetting_text=null"]
    command = [sys.executable, "-m", "tunesmith.cli.main", "run", "--no-progress", "--out", "run"]
    for item in settings:
        command += ["--set", item]
    subprocess.run(command, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=900)
    train = json.loads((tmp_path / "run" / "metrics.json").read_text())["train"]
    assert "activations" in train["estimate_dominant"]
    assert train["estimate_run_mb"] == pytest.approx(train["peak_run_mb"], rel=TOLERANCE)


@pytest.mark.integration  # measures the libraries' fixed cost once (10-60 s)
def test_estimate_memory_names_the_largest_terms_and_the_preflights_checkpointing(deep_llama_config):
    """`estimate-memory --device cpu` on a SmolLM2-shaped model at 4 x 512: activations lead the
    whole run's terms, and it says that a run's preflight would turn checkpointing on."""
    from tunesmith.pipelines.advise import estimate_memory as estimate

    run = estimate(model=str(deep_llama_config), device="cpu",
                   settings={"batch_size": 4, "max_length": 512, "precision": "fp32"})
    assert run.peak_terms()[0][0].startswith("activations")
    assert run.dominant(2).startswith("activations") and "allocator slack" in run.dominant(3)
    assert any("gradient checkpointing turned on" in n for n in run.notes)
    short = estimate(model=str(deep_llama_config), device="cpu",
                     settings={"batch_size": 1, "max_length": 32, "precision": "fp32"})
    assert not any("checkpointing" in n for n in short.notes)
