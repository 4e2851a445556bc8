"""The training loop on a tiny random BERT: learning, accumulation, early stopping, best
weights, resume and out-of-memory recovery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from core_tiny import finetune_cfg, tiny_bert, tokenizer, toy_data, trainable

from tunesmith.errors import ConfigError, DataError
from tunesmith.methods import apply_method
from tunesmith.train.loop import Callback, fit
from tunesmith.train.objectives import ClassificationObjective

PAD = 0


def _model(seed=0, dropout=0.1, cfg=None):
    return apply_method(tiny_bert(seed, dropout), cfg or finetune_cfg(), task="classification")


def _fit(model, data, cfg, **kw):
    kw.setdefault("progress", False)
    return fit(model, data, objective=ClassificationObjective(), cfg=cfg,
               pad_token_id=tokenizer().pad_token_id, **kw)


def _val_loss(data):
    objective = ClassificationObjective()

    def evaluate(model):
        from tunesmith.train.encoding import collate

        loss, n = objective.loss(model, collate(data.examples, tokenizer().pad_token_id))
        return {"loss": float(loss) / n}

    return evaluate


def test_loss_decreases_and_history_is_written(tmp_path):
    data = toy_data(64)
    cfg = finetune_cfg(num_epochs=6, learning_rate=3e-3, logging_steps=4)
    result = _fit(_model(), data, cfg, evaluate=_val_loss(toy_data(16)), out_dir=tmp_path)
    train = [r for r in result.history if r["kind"] == "train"]
    assert train[-1]["loss"] < 0.6 * train[0]["loss"]
    assert result.steps == 6 * 8 and result.epochs_run == 6
    lines = [json.loads(x) for x in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert lines == result.history
    assert {"step", "epoch", "loss", "lr", "grad_norm", "tokens", "samples"} <= set(train[0])
    evals = [r for r in lines if r["kind"] == "eval"]
    assert len(evals) == 6 and "val_loss" in evals[0]  # once per epoch
    assert result.tokens_per_second > 0 and result.peak_memory_mb > 0
    assert (tmp_path / "checkpoints" / "last" / "state.json").is_file()


def test_accumulation_is_normalised_by_targets():
    # 6 examples: one batch of 6, or micro-batches of 4 and 2 (one optimizer step each way).
    # Averaging per micro-batch would weight the 2 like the 4; normalising by targets does not.
    data = toy_data(6)
    one = _model(dropout=0.0, cfg=finetune_cfg(batch_size=6, max_steps=1))
    _fit(one, data, finetune_cfg(batch_size=6, max_steps=1))
    two = _model(dropout=0.0, cfg=finetune_cfg(batch_size=4, max_steps=1))
    _fit(two, data, finetune_cfg(batch_size=4, gradient_accumulation_steps=2, max_steps=1))
    start = trainable(tiny_bert(0, 0.0))
    a, b = trainable(one), trainable(two)
    assert any(not torch.equal(a[k], start[k]) for k in a)  # it did train
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)


def test_early_stopping_and_best_weights_restored(tmp_path):
    losses = iter([0.5, 0.3, 0.9, 0.8, 0.7, 0.6])
    snapshots = {}

    def scripted(model):
        snapshots[len(snapshots) + 1] = trainable(model)
        return {"loss": next(losses)}

    model = _model()
    cfg = finetune_cfg(max_steps=6, eval_every=1, early_stopping_patience=2)
    result = _fit(model, toy_data(48), cfg, evaluate=scripted, out_dir=tmp_path)
    assert result.stopped_early and result.steps == 4  # no better than 0.3 at steps 3 and 4
    assert (result.best_step, result.best_value) == (2, 0.3)
    events = [r["event"] for r in result.history if r["kind"] == "event"]
    assert events == ["early_stop", "best_restored"]
    now = trainable(model)
    for key, value in snapshots[2].items():
        assert torch.equal(now[key], value)
    assert any(not torch.equal(now[k], snapshots[4][k]) for k in now)


def test_a_tie_on_accuracy_goes_to_the_lower_validation_loss(tmp_path):
    # Accuracy on 19 validation records moves in steps of 1/19: equal accuracy is common.
    scores = iter([(0.79, 0.45), (0.79, 0.38), (0.79, 0.50), (0.74, 0.30)])
    snapshots = {}

    def scripted(model):
        snapshots[len(snapshots) + 1] = trainable(model)
        accuracy, loss = next(scores)
        return {"accuracy": accuracy, "loss": loss}

    model = _model()
    cfg = finetune_cfg(max_steps=4, eval_every=1, early_stopping_patience=0)
    result = _fit(model, toy_data(48), cfg, evaluate=scripted, best_metric="accuracy")
    assert (result.best_step, result.best_value) == (2, 0.79)
    assert [r["is_best"] for r in result.history if r["kind"] == "eval"] == [True, True, False, False]
    now = trainable(model)
    assert all(torch.equal(now[key], value) for key, value in snapshots[2].items())


class _Interrupt(Callback):
    def __init__(self, at_step):
        self.at_step = at_step

    def on_log(self, record):
        if record["step"] == self.at_step:
            raise KeyboardInterrupt


def test_resume_equals_uninterrupted_run(tmp_path):
    data, val = toy_data(40), _val_loss(toy_data(8))
    # Logs every 4 steps, checkpoints every 3: the checkpoint at step 6 falls inside a log window.
    cfg = finetune_cfg(max_steps=10, eval_every=3, group_by_length=True, weight_decay=0.01,
                       warmup_ratio=0.2, logging_steps=4)
    straight = _model()
    full = _fit(straight, data, cfg, evaluate=val, out_dir=tmp_path / "a")

    with pytest.raises(KeyboardInterrupt):  # killed after the checkpoint at step 6
        _fit(_model(), data, cfg, evaluate=val, out_dir=tmp_path / "b", callbacks=[_Interrupt(8)])
    state = json.loads((tmp_path / "b" / "checkpoints" / "last" / "state.json").read_text())
    assert state["step"] == 6
    resumed_model = _model(seed=1)  # other init: everything that trains comes from the checkpoint
    resumed = _fit(resumed_model, data, cfg, evaluate=val, out_dir=tmp_path / "b", resume=True)

    a, b = trainable(straight), trainable(resumed_model)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    assert resumed.steps == full.steps and resumed.best_step == full.best_step
    strip = [r for r in resumed.history if r.get("event") != "resumed"]
    assert [r.get("loss") for r in strip] == pytest.approx([r.get("loss") for r in full.history])


class _OomOnce(Callback):
    """Records the rows of every micro-batch; at step 1 an allocation fails once.

    ``cpu``: a real failure of torch's CPU allocator (asking it for 1 PiB), whose message reads
    "DefaultCPUAllocator: can't allocate memory"; ``cuda``: the error CUDA's allocator raises.
    """

    def __init__(self, kind):
        self.kind, self.raised, self.rows = kind, False, []

    def on_micro_batch(self, step, batch):
        self.rows.append((step, int(batch["input_ids"].shape[0])))
        if step == 1 and not self.raised:
            self.raised = True
            if self.kind == "cpu":
                torch.empty(2**50, dtype=torch.uint8)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.mark.parametrize("kind", ["cpu", "cuda"])
def test_out_of_memory_halves_micro_batch_and_keeps_the_step(tmp_path, kind):
    data, cfg = toy_data(32), finetune_cfg(max_steps=3)
    plain = _model(dropout=0.0)
    _fit(plain, data, cfg)
    recovered = _model(dropout=0.0)
    oom = _OomOnce(kind)
    result = _fit(recovered, data, cfg, callbacks=[oom], out_dir=tmp_path)
    events = [r for r in result.history if r["kind"] == "event"]
    assert [e["event"] for e in events] == ["oom_recovered"] and events[0]["step"] == 1
    assert "micro-batch cut to about 4 with 2 accumulation steps" in events[0]["message"]
    # Step 0 ran whole; step 1 failed at 8 rows and ran again as two halves; so did step 2.
    assert oom.rows == [(0, 8), (1, 8), (1, 4), (1, 4), (2, 4), (2, 4)]
    # The effective batch is kept: every optimizer step still saw 8 examples.
    assert [r["samples"] for r in result.history if r["kind"] == "train"] == [8, 8, 8]
    assert result.steps == 3
    a, b = trainable(plain), trainable(recovered)
    assert any(not torch.equal(a[k], trainable(_model(dropout=0.0))[k]) for k in a)  # it trained
    for key in a:  # same effective batch, so the same weights
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(not hasattr(__import__("resource"), "RLIMIT_AS"), reason="needs RLIMIT_AS (Linux)")
def test_out_of_memory_under_a_real_memory_limit(tmp_path):
    """In a child process capped with RLIMIT_AS, a micro-batch of 8 cannot get its memory and
    one of 4 can: training recovers by halving and ends with the uncapped run's weights."""
    script = Path(__file__).with_name("oom_under_rlimit.py")
    out = tmp_path / "result.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, str(script), str(out)], env=env, capture_output=True,
                          text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert "can't allocate memory" in result["first_error"]
    assert result["events"] == ["oom_recovered"]
    # The first micro-batch of 8 could not get its memory; from then on halves of 4 ran.
    assert result["rows"] == [[0, 8], [0, 4], [0, 4], [1, 4], [1, 4], [2, 4], [2, 4]]
    assert result["samples"] == [8, 8, 8]
    assert result["max_weight_difference"] < 1e-5


def test_other_errors_are_not_swallowed():
    class Boom(Callback):
        def on_micro_batch(self, step, batch):
            raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        _fit(_model(), toy_data(16), finetune_cfg(max_steps=1), callbacks=[Boom()])


def test_lr_schedulers_after_warmup():
    def lrs(name):
        cfg = finetune_cfg(max_steps=20, warmup_ratio=0.2, learning_rate=1e-3, logging_steps=1,
                           lr_scheduler=name)
        result = _fit(_model(), toy_data(64), cfg)
        return [r["lr"] for r in result.history if r["kind"] == "train"]

    linear, cosine, constant = lrs("linear"), lrs("cosine"), lrs("constant")
    assert len(linear) == len(cosine) == len(constant) == 20
    assert linear[:4] == cosine[:4] == constant[:4]  # the same warmup (4 of 20 steps)
    assert all(v == pytest.approx(1e-3) for v in constant[5:])
    # Cosine decays slower than linear in the first half of the decay and faster in the second.
    assert cosine[7] > linear[7] and cosine[17] < linear[17]
    assert all(a > b for a, b in zip(linear[4:], linear[5:], strict=False))


def test_resume_refuses_a_planted_pickle_payload(tmp_path):
    """Checkpoints load with weights_only=True: a rng.pt holding a Python object that would run
    code when unpickled is refused, naming the file, and the code does not run."""
    data, cfg = toy_data(16), finetune_cfg(max_steps=2)
    _fit(_model(), data, cfg, out_dir=tmp_path)
    marker = tmp_path / "payload-ran"
    torch.save({"python": _Payload(str(marker))}, tmp_path / "checkpoints" / "last" / "rng.pt")
    with pytest.raises(DataError, match=r"rng\.pt: refused to load") as err:
        _fit(_model(), data, cfg, out_dir=tmp_path, resume=True)
    assert "trust" in err.value.hint
    assert not marker.exists()


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_gradients_are_clipped_to_max_grad_norm_before_each_step():
    """What the optimizer steps with has a global norm of at most max_grad_norm, while the
    logged grad_norm is the norm before clipping."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    seen = []

    def norm_at_step(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        seen.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    handle = register_optimizer_step_pre_hook(norm_at_step)
    try:
        clipped = _fit(_model(), toy_data(16), finetune_cfg(max_steps=3, max_grad_norm=0.05))
        seen_clipped, seen[:] = list(seen), []
        free = _fit(_model(), toy_data(16), finetune_cfg(max_steps=3, max_grad_norm=0.0))
    finally:
        handle.remove()
    logged = [r["grad_norm"] for r in clipped.history if r["kind"] == "train"]
    assert all(n > 0.05 for n in logged)  # the raw gradients were larger than the limit ...
    assert seen_clipped == pytest.approx([0.05] * 3, rel=1e-3)  # ... and were cut to it
    # max_grad_norm 0 disables clipping: the optimizer sees the raw norm that is logged.
    assert seen == pytest.approx([r["grad_norm"] for r in free.history if r["kind"] == "train"], rel=1e-4)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_gradient_checkpointing_recomputes_activations_and_trains_the_same(method):
    """With gradient_checkpointing the encoder layers keep far fewer activations for backward
    and run their forward again during backward instead; training ends with the same weights."""
    results = {}
    for checkpointing in (False, True):
        cfg = finetune_cfg(method=method, max_steps=2, gradient_checkpointing=checkpointing,
                           learning_rate=1e-2)
        model = _model(dropout=0.0, cfg=cfg)
        bert = model.get_base_model().bert if method == "lora" else model.bert
        calls = []
        bert.encoder.layer[0].intermediate.dense.register_forward_hook(
            lambda *_, calls=calls: calls.append(1))
        saved = [0]

        def pack(tensor, saved=saved):
            saved[0] += tensor.numel() * tensor.element_size()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            _fit(model, toy_data(16), cfg)
        results[checkpointing] = (len(calls), saved[0], trainable(model))
    assert results[False][0] == 2 and results[True][0] == 4  # 2 steps of one micro-batch
    assert results[True][1] < results[False][1] / 3  # activations kept for backward
    plain, checkpointed = results[False][2], results[True][2]
    start = trainable(_model(dropout=0.0, cfg=finetune_cfg(method=method)))
    assert any(not torch.equal(plain[k], start[k]) for k in plain)  # it trained
    for key in plain:
        torch.testing.assert_close(checkpointed[key], plain[key], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_mixed_precision_runs_the_forward_pass_in_the_chosen_dtype(precision):
    """finetune.precision bf16 autocasts the forward pass to bfloat16 (here on CPU) while the
    weights stay float32; fp32 keeps float32. In this process: the loop resets accelerate's
    one-precision-per-process state when a fit asks for another (tested below)."""
    import math

    cfg = finetune_cfg(max_steps=2, precision=precision)
    model = _model(dropout=0.0, cfg=cfg)
    seen: set[str] = set()
    model.bert.encoder.layer[0].intermediate.dense.register_forward_hook(
        lambda _m, _i, out: seen.add(str(out.dtype)))
    fitted = _fit(model, toy_data(16), cfg)
    result = {"forward": sorted(seen),
              "weights": sorted({str(p.dtype) for p in model.parameters()}),
              "finite": all(math.isfinite(r["loss"]) for r in fitted.history if r["kind"] == "train")}
    expected = {"fp32": "torch.float32", "bf16": "torch.bfloat16"}[precision]
    assert result == {"forward": [expected], "weights": ["torch.float32"], "finite": True}


def test_auto_precision_follows_the_hardware(monkeypatch):
    """auto is bf16 autocast on a CPU with AMX-BF16 (measured 1.16-1.40x faster, same loss:
    docs/performance.md) and fp32 on other CPUs; fp32 and bf16 are what they say."""
    from tunesmith.train import precision

    monkeypatch.setattr(precision, "cpu_has_amx_bf16", lambda: True)
    assert [precision.autocast_for(p, cuda=False) for p in ("auto", "fp32", "bf16")] == ["bf16", "no", "bf16"]
    monkeypatch.setattr(precision, "cpu_has_amx_bf16", lambda: False)
    assert [precision.autocast_for(p, cuda=False) for p in ("auto", "fp32", "bf16")] == ["no", "no", "bf16"]
    assert precision.cpu_autocast_note("auto") is None
    monkeypatch.setattr(precision, "cpu_has_amx_bf16", lambda: True)
    if not torch.cuda.is_available():  # the run says what auto chose, and how to turn it off
        assert "bf16 autocast" in precision.cpu_autocast_note("auto")
        assert "finetune.precision=fp32" in precision.cpu_autocast_note("auto")
    assert precision.cpu_autocast_note("fp32") is None


def test_fits_with_different_precisions_in_one_process_each_run_in_their_own():
    """Accelerate keeps one precision per process; the loop resets it when a later fit asks for
    another (a notebook, compare-methods), instead of failing or training in the first's."""
    seen: list[set[str]] = []
    for chosen in ("fp32", "bf16", "fp32"):
        model = _model(dropout=0.0)
        dtypes: set[str] = set()
        model.bert.encoder.layer[0].intermediate.dense.register_forward_hook(
            lambda _m, _i, out, dtypes=dtypes: dtypes.add(str(out.dtype)))
        _fit(model, toy_data(16), finetune_cfg(max_steps=1, precision=chosen))
        seen.append(dtypes)
    assert seen == [{"torch.float32"}, {"torch.bfloat16"}, {"torch.float32"}]


def test_a_model_trained_under_bf16_autocast_computes_in_fp32_afterwards():
    """fit leaves the model as it came: accelerate wraps its forward in autocast, and a
    prediction or merge after training would otherwise still run in bf16."""
    from tunesmith.train.encoding import collate

    model = _model(dropout=0.0)
    _fit(model, toy_data(16), finetune_cfg(max_steps=1, precision="bf16"))
    dtypes: set[str] = set()
    model.bert.encoder.layer[0].intermediate.dense.register_forward_hook(
        lambda _m, _i, out: dtypes.add(str(out.dtype)))
    batch = collate(toy_data(4).examples, tokenizer().pad_token_id)
    with torch.no_grad():
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert dtypes == {"torch.float32"}


def test_fp16_needs_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        _fit(_model(), toy_data(16), finetune_cfg(max_steps=1, precision="fp16"))


@pytest.mark.parametrize("failing", [False, True])
def test_frozen_linear_weights_train_in_bf16_and_come_back_exactly(failing):
    """Under bf16 autocast the frozen linear weights are held in bf16 while fit runs (no
    per-step casts); when it returns, or raises, each is its exact fp32 self again, and the
    weights that train stay fp32 throughout."""
    from tunesmith.train.loop import Callback

    cfg = finetune_cfg(method="lora", max_steps=2, precision="bf16")
    model = _model(dropout=0.0, cfg=cfg)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    linears = [m for m in model.modules()
               if isinstance(m, torch.nn.Linear) and not m.weight.requires_grad]
    assert linears
    during: set[str] = set()
    for module in linears:
        module.register_forward_hook(lambda m, _i, _o: during.add(str(m.weight.dtype)))
    trained: set[str] = set()
    model.register_forward_hook(lambda m, _i, _o: trained.update(
        str(p.dtype) for p in m.parameters() if p.requires_grad))

    class Stop(Callback):
        def on_micro_batch(self, step, batch):
            if failing and step >= 1:
                raise RuntimeError("stopped on purpose")

    if failing:
        with pytest.raises(RuntimeError, match="on purpose"):
            _fit(model, toy_data(16), cfg, callbacks=[Stop()])
    else:
        _fit(model, toy_data(16), cfg)
    assert during == {"torch.bfloat16"} and trained == {"torch.float32"}
    after = {n: p for n, p in model.named_parameters() if not p.requires_grad}
    assert all(after[n].dtype == torch.float32 and torch.equal(after[n], v) for n, v in frozen.items())


def test_frozen_weights_loaded_from_a_checkpoint_file_come_back_from_its_memory_map(tmp_path):
    """Weights safetensors left in the file's memory map keep their fp32 numbers there while
    their bf16 copies train (no second copy in memory), and are given back exactly."""
    from transformers import AutoModelForSequenceClassification

    from tunesmith.train.precision import FrozenWeightsInBf16

    tiny_bert().save_pretrained(tmp_path)
    cfg = finetune_cfg(method="lora", max_steps=1, precision="bf16")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    model = apply_method(loaded, cfg, task="classification")
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    held = FrozenWeightsInBf16(model)
    assert held.count > 0 and held.from_file == held.count  # every one still in the file's map
    held.restore()
    _fit(model, toy_data(16), cfg)
    after = dict(model.named_parameters())
    assert all(after[n].dtype == torch.float32 and torch.equal(after[n], v) for n, v in frozen.items())


def _resident_weight_file_bytes() -> int:
    """The resident bytes of this process's mappings of .safetensors files (/proc/self/smaps)."""
    total, weights = 0, False
    with open("/proc/self/smaps", encoding="utf-8") as fh:
        for line in fh:
            fields = line.split()
            if fields and "-" in fields[0] and not fields[0].endswith(":"):
                weights = fields[-1].endswith(".safetensors")
            elif weights and fields[0] == "Rss:":
                total += int(fields[1]) * 1024
    return total


def _minilm_with_lora():
    from tunesmith.models.loader import load_model

    cfg = finetune_cfg(method="lora", max_steps=1, precision="bf16")
    loaded = load_model("minilm", task="classification", labels=["fresh", "rotten"])
    return apply_method(loaded.model, cfg, task="classification")


@pytest.mark.skipif(not Path("/proc/self/smaps").is_file(), reason="reads Linux's /proc/self/smaps")
def test_held_weights_pages_leave_the_process_while_bf16_copies_train():
    """MiniLM's frozen linear weights stay in the checkpoint's memory map while their bf16
    copies train: their pages are handed back to the page cache, not kept resident beside the
    copies, and the fp32 numbers are read back exactly when the hold ends."""
    from tunesmith.train.precision import FrozenWeightsInBf16

    model = _minilm_with_lora()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    # The encoder's 36 linear layers come from the file (the classifier's frozen original
    # beside its trained copy was made in memory).
    mapped_bytes = sum(m.weight.numel() * 4 for name, m in model.named_modules()
                       if isinstance(m, torch.nn.Linear) and ".encoder." in f".{name}"
                       and not m.weight.requires_grad)
    resident = _resident_weight_file_bytes()  # the clones above read every page
    held = FrozenWeightsInBf16(model)
    assert held.from_file == 36
    # Only the pages straddling two tensors may stay (one or two per weight).
    assert held.released_bytes > 0.95 * mapped_bytes > 30e6
    assert resident - _resident_weight_file_bytes() > 0.95 * mapped_bytes
    held.restore()
    after = dict(model.named_parameters())
    assert all(after[n].dtype == torch.float32 and torch.equal(after[n], v) for n, v in frozen.items())


def test_a_weight_written_in_its_memory_map_is_not_handed_back():
    """A weight changed in place after loading (e.g. an adapter merged into it) lives in a page
    the process copied from the file: handing that page back would bring the file's old
    numbers back. The hold keeps such a mapping resident, and the changed weight returns as
    it was changed."""
    from tunesmith.train.precision import FrozenWeightsInBf16

    model = _minilm_with_lora()
    target = next(m.weight for m in model.modules()
                  if isinstance(m, torch.nn.Linear) and not m.weight.requires_grad)
    with torch.no_grad():
        target.add_(1.0)
    changed = target.detach().clone()
    held = FrozenWeightsInBf16(model)
    from_file = held.from_file
    held.restore()
    assert torch.equal(target, changed)
    assert from_file == 36 and held.released_bytes == 0
