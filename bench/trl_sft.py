"""The chat case with TRL's SFTTrainer: side (c) of ``bench/throughput.py``.

What a user who knows the ecosystem writes for supervised finetuning of a chat model: TRL's
``SFTTrainer`` with a PEFT ``LoraConfig``. TRL is a bench-only extra, not a dependency of
tunesmith:

    pip install -c constraints.txt -e ".[bench]"     # trl==1.16.0, the version measured

Three settings, chosen with ``--setting``:

- ``best``: TRL's best setting on this CPU, found by trying its switches (2026-12-01, quiet
  machine, ``bench/results/throughput_amx_*.json``): bf16 autocast on (this CPU multiplies bf16
  on its AMX units: 262.6 real tokens/s against 201.6 with fp32), activation checkpointing off
  (SFTConfig turns it on by default: one more forward pass per step), plain right padding to
  the longest in the batch, no packing and no padding-free batches (its padding-free path with
  sdpa was slower here). With ``--fit-threads`` (what bench/throughput.py passes) torch's CPU
  threads are also fitted to the cores other jobs leave free, by the same function as
  tunesmith's (``tunesmith.train.threads``): on a shared machine that is part of the best
  setting, and on a quiet one it changes nothing. On a CPU without AMX, ``fp32`` may be faster:
  try both there.
- ``fp32``: the same with bf16 off: what ``best`` was before the AMX measurement (issue 17 had
  assumed this CPU emulates bf16; the ``trl-best`` rows of result files written before
  2026-12-01 22:00 UTC are this setting).
- ``defaults``: SFTConfig's own defaults for everything but the hyperparameters the benchmark
  fixes for every side (steps, batch, learning rate, warmup, weight decay, seed, max length):
  bf16 on, activation checkpointing on.

Data: the examples are tokenized by the same function as sides (a) and (b)
(``plain_trainer.encode_chat``: the chat template, only the assistant turns labelled) and
handed to SFTTrainer as an already tokenized dataset with an ``assistant_masks`` column, from
which TRL builds its labels. That is how TRL trains on assistant tokens only for this data:
its own ``assistant_only_loss=True`` needs ``{% generation %}`` markers in the chat template,
which SmolLM2's template does not have, and its prompt/completion format labels only the last
reply, while these conversations have several. So all three sides learn the same tokens.

Run alone (``bench/throughput.py`` does this for you):

    python bench/trl_sft.py --setting best --model-dir MODEL_DIR --data DATA_DIR --out OUT \\
        --max-steps 10 --batch-size 4 --learning-rate 2e-4 --max-length 256

The result (speed, peak memory, validation loss by ``plain_trainer.validation_loss``) goes to
``OUT/result.json`` with the same keys as side (a)'s.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

INSTALL_HINT = (
    "TRL is not installed: it is a bench-only extra, side (c) of bench/throughput.py. Install it "
    'into this environment with `pip install -c constraints.txt -e ".[bench]"` (trl==1.16.0, the '
    "version the figures in docs/performance.md were measured with), or leave side (c) out with "
    "`python bench/throughput.py --sides plain tunesmith`."
)

# What each setting changes in SFTConfig; everything else is SFTConfig's default.
SETTINGS: dict[str, dict] = {
    "best": {"bf16": True, "gradient_checkpointing": False, "packing": False, "padding_free": False},
    "fp32": {"bf16": False, "gradient_checkpointing": False, "packing": False, "padding_free": False},
    "defaults": {},
}


def trl_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("trl") is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="TRL SFTTrainer + PEFT LoRA on chat data (bench side c)")
    from plain_trainer import add_training_arguments

    parser.add_argument("--setting", choices=list(SETTINGS), default="best")
    add_training_arguments(parser, max_steps=10, batch_size=4, max_length=256)
    parser.add_argument("--fit-threads", action="store_true",
                        help="torch's CPU threads fitted to the free cores, as tunesmith does")
    args = parser.parse_args(argv)
    if not trl_available():
        print(INSTALL_HINT, file=sys.stderr)
        return 2

    from datasets import Dataset
    from peft import LoraConfig, TaskType
    from plain_trainer import (
        IGNORE,
        CountingCollator,
        LoopTimer,
        encode_chat,
        loop_figures,
        model_shape,
        peak_rss_mb,
        read_jsonl,
        validation_loss,
        write_result,
    )
    from transformers import AutoTokenizer, DataCollatorForSeq2Seq
    from trl import SFTConfig, SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    encoded = [encode_chat(r["messages"], tokenizer, args.max_length)
               for r in read_jsonl(args.data / "train.jsonl")]
    train_set = Dataset.from_list([
        {"input_ids": e["input_ids"], "assistant_masks": [int(x != IGNORE) for x in e["labels"]]}
        for e in encoded
    ])
    val_set = [encode_chat(r["messages"], tokenizer, args.max_length)
               for r in read_jsonl(args.data / "val.jsonl")]

    setting = SETTINGS[args.setting]
    config = SFTConfig(
        output_dir=str(args.out / "trainer"),
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_steps=args.max_steps,
        warmup_steps=args.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio
        weight_decay=args.weight_decay,
        max_length=args.max_length,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        seed=args.seed,
        use_cpu=not torch.cuda.is_available(),  # SFTConfig refuses bf16 on CPU without it
        **setting,
    )
    # The collator SFTTrainer builds by itself for this config, wrapped to count real tokens.
    collator = CountingCollator(DataCollatorForLanguageModeling(
        pad_token_id=tokenizer.pad_token_id, padding_free=config.padding_free,
        pad_to_multiple_of=config.pad_to_multiple_of))
    lora = LoraConfig(task_type=TaskType.CAUSAL_LM, r=args.lora_r, lora_alpha=args.lora_alpha,
                      lora_dropout=args.lora_dropout, target_modules=["q_proj", "v_proj"])
    timer = LoopTimer()
    trainer = SFTTrainer(model=args.model_dir, args=config, train_dataset=train_set,
                         processing_class=tokenizer, data_collator=collator, peft_config=lora,
                         callbacks=[timer])
    threads = None
    if args.fit_threads:
        from tunesmith.train.threads import cpu_threads

        with cpu_threads() as threads:
            trainer.train()
    else:
        trainer.train()
    peak = peak_rss_mb()  # before validation, as on the other sides

    model = trainer.model
    result = {
        "side": f"trl-{args.setting}",
        "setting": {k: getattr(config, k) for k in ("bf16", "gradient_checkpointing", "packing",
                                                    "padding_free", "max_length")},
        **loop_figures(collator, timer, args.max_steps, args.batch_size, peak),
        "val_loss": validation_loss(
            model, val_set, DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE)),
        "threads": threads or torch.get_num_threads(),
        "model_shape": model_shape(model),
        "pid": os.getpid(),
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
