"""Run by test_core_loop: provoke a real allocation failure under an address-space limit.

The child trains the tiny BERT twice: once uncapped, once with RLIMIT_AS set a little above what
the process already maps, while each micro-batch asks the allocator for memory in proportion to
its rows (600 MB a row, never touched, so it costs address space, not RAM): 8 rows cannot get
it, 4 can. Writes what happened as JSON to the path given.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import torch
from core_tiny import finetune_cfg, tiny_bert, tokenizer, toy_data, trainable

from tunesmith.methods import apply_method
from tunesmith.train.loop import Callback, fit
from tunesmith.train.objectives import ClassificationObjective

ROW_BYTES = 600 * 2**20


class RowSizedAllocation(Callback):
    def __init__(self) -> None:
        self.rows: list[list[int]] = []
        self.first_error = ""

    def on_micro_batch(self, step, batch):
        rows = int(batch["input_ids"].shape[0])
        self.rows.append([step, rows])
        try:
            held = torch.empty(rows * ROW_BYTES, dtype=torch.uint8)
        except RuntimeError as exc:
            self.first_error = self.first_error or str(exc)
            raise
        del held


def train(callbacks):
    cfg = finetune_cfg(max_steps=3)
    model = apply_method(tiny_bert(0, 0.0), cfg, task="classification")
    result = fit(model, toy_data(32), objective=ClassificationObjective(), cfg=cfg,
                 pad_token_id=tokenizer().pad_token_id, callbacks=callbacks, progress=False)
    return model, result


def mapped_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def main(out: str) -> None:
    torch.set_num_threads(1)
    plain, _ = train([])
    limit = mapped_bytes() + 6 * ROW_BYTES  # 4 rows fit with room to spare; 8 do not
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    probe = RowSizedAllocation()
    capped, result = train([probe])
    a, b = trainable(plain), trainable(capped)
    Path(out).write_text(json.dumps({
        "first_error": probe.first_error,
        "events": [r["event"] for r in result.history if r["kind"] == "event"],
        "rows": probe.rows,
        "samples": [r["samples"] for r in result.history if r["kind"] == "train"],
        "max_weight_difference": max(float((a[k] - b[k]).abs().max()) for k in a),
    }))


if __name__ == "__main__":
    main(sys.argv[1])
