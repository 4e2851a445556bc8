"""The CPU dropout swapped in while training: the distribution nn.Dropout has, and the model's
own modules back afterwards."""

from __future__ import annotations

import pytest
import torch
from core_tiny import finetune_cfg, tiny_bert, tokenizer, toy_data

from tunesmith.methods import apply_method
from tunesmith.train.dropout import CpuDropout
from tunesmith.train.loop import Callback, fit
from tunesmith.train.objectives import ClassificationObjective

N = 4_000_000
# Five standard deviations of the kept share over N elements at p = 0.1.
SPREAD = 5 * (0.1 * 0.9 / N) ** 0.5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_each_element_is_kept_with_probability_1_minus_p_and_scaled(dtype):
    """About 90% kept at p = 0.1 (within 5 standard deviations, 0.075 points), each survivor
    exactly x / 0.9 and the rest 0. bf16 inputs too: a mask drawn in bf16 keeps 89.85%."""
    torch.manual_seed(0)
    x = torch.full((N,), 1.5, dtype=dtype)
    out = CpuDropout(0.1).train()(x)
    kept = out != 0
    assert out.dtype == dtype
    assert kept.float().mean().item() == pytest.approx(0.9, abs=SPREAD)
    assert torch.equal(out[kept], torch.full_like(out[kept], 1.5).mul_(1 / 0.9))


def test_the_gradient_is_the_mask_scaled_and_eval_is_the_identity():
    torch.manual_seed(0)
    x = torch.randn(64, 128, requires_grad=True)
    drop = CpuDropout(0.25).train()
    out = drop(x)
    out.sum().backward()
    kept = out != 0
    assert torch.equal(x.grad, kept.float() * (1 / 0.75))
    assert not torch.equal(drop(x), out)  # a fresh mask on every call
    assert drop.eval()(x) is x


@pytest.mark.parametrize("failing", [False, True])
def test_fit_trains_with_cpu_dropout_and_gives_the_models_modules_back(failing):
    """While fit runs on the CPU, the model's nn.Dropout modules are CpuDropout of the same p;
    when it returns or raises, the model holds its own modules again."""
    cfg = finetune_cfg(max_steps=2)
    model = apply_method(tiny_bert(0, 0.1), cfg, task="classification")
    before = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert before
    seen: dict[str, tuple[str, float]] = {}

    class Look(Callback):
        def on_micro_batch(self, step, batch):
            seen.update({n: (type(m).__name__, m.p) for n, m in model.named_modules()
                         if n in before})
            if failing and step >= 1:
                raise RuntimeError("stopped on purpose")

    def run():
        return fit(model, toy_data(16), objective=ClassificationObjective(), cfg=cfg,
                   pad_token_id=tokenizer().pad_token_id, progress=False, callbacks=[Look()])

    if failing:
        with pytest.raises(RuntimeError, match="on purpose"):
            run()
    else:
        run()
    assert seen == {n: ("CpuDropout", m.p) for n, m in before.items()}
    after = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert after.keys() == before.keys() and all(after[n] is before[n] for n in before)
