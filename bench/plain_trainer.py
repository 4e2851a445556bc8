"""The script a user writes from the guide without tunesmith: Hugging Face Trainer + PEFT LoRA.

It is side (a) of ``bench/throughput.py``: the guide's recipe with the libraries' defaults,
dynamic padding (``DataCollatorWithPadding`` / ``DataCollatorForSeq2Seq``) and a random sampler.
Nothing is tuned for speed. Run it alone like this:

    python bench/plain_trainer.py --task classification --model-dir MODEL_DIR \\
        --data DATA_DIR --out OUT_DIR --max-steps 40 --batch-size 16 --learning-rate 2e-3

``DATA_DIR`` holds ``train.jsonl`` and ``val.jsonl`` in the guide's formats
(``{"text", "label"}`` or ``{"messages": [...]}``). The result (speed, peak memory, validation
loss) is written to ``OUT_DIR/result.json``.

The part under "Measurement" is benchmark instrumentation, not what a user writes: it counts the
real (non-padding) tokens of the batches the Trainer trained on and computes the validation loss
with one definition that ``bench/throughput.py`` applies to both sides (mean cross-entropy per
example for classification, per response token for chat).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import torch
from peft import LoraConfig, TaskType, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

IGNORE = -100  # label of tokens that take no part in the loss (prompt, padding)


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ------------------------------------------------------------------------------------------------
# Data: tokenize every example; batches are padded to their longest member by the collator.


def encode_classification(rows: list[dict], tokenizer, label2id: dict, max_length: int) -> list[dict]:
    encoded = tokenizer([r["text"] for r in rows], truncation=True, max_length=max_length)
    return [
        {"input_ids": ids, "attention_mask": mask, "labels": label2id[r["label"]]}
        for ids, mask, r in zip(encoded["input_ids"], encoded["attention_mask"], rows, strict=True)
    ]


def encode_chat(messages: list[dict], tokenizer, max_length: int) -> dict:
    """Chat template over the conversation; only the assistant turns are learned (labels)."""
    ids: list[int] = []
    labels: list[int] = []
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            # The assistant header belongs to the prompt; its reply (and end-of-turn) is learned.
            prompt = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
            prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            header = prompt_ids[len(ids):]
            ids += header
            labels += [IGNORE] * len(header)
        upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        turn = tokenizer(upto, add_special_tokens=False)["input_ids"][len(ids):]
        ids += turn
        labels += turn if message["role"] == "assistant" else [IGNORE] * len(turn)
    ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


# ------------------------------------------------------------------------------------------------
# Measurement (benchmark instrumentation; see the module docstring)


class CountingCollator:
    """Wraps the collator and remembers the real tokens of every batch it built, in order."""

    def __init__(self, collator):
        self.collator = collator
        self.real_tokens: list[int] = []
        self.padded_tokens: list[int] = []

    def __call__(self, features):
        batch = self.collator(features)
        self.real_tokens.append(int(batch["attention_mask"].sum()))
        self.padded_tokens.append(int(batch["attention_mask"].numel()))
        return batch


class LoopTimer(TrainerCallback):
    """Seconds of the training loop itself (the Trainer's set-up before it is excluded, as
    tunesmith's loop time excludes its own): wall clock and this process's CPU time, which
    other jobs on a shared machine disturb much less. Also the resident memory at the start."""

    def on_train_begin(self, args, state, control, **kwargs):
        self.rss_at_start_mb = current_rss_mb()
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()

    def on_train_end(self, args, state, control, **kwargs):
        self.seconds = time.perf_counter() - self.started
        self.cpu_seconds = time.process_time() - self.cpu_started


def loop_figures(counting: CountingCollator, timer: LoopTimer, steps: int, batch_size: int,
                 peak_mb: float) -> dict:
    """The training loop's figures of a Trainer-based side (this script, bench/trl_sft.py):
    tokens and samples of the ``steps`` trained batches (the dataloader may have built batches
    beyond the last step: only the trained ones count), their rates per second of wall clock and
    of CPU time, and the peak memory with what training added to it."""
    real = sum(counting.real_tokens[:steps])
    padded = sum(counting.padded_tokens[:steps])
    samples = steps * batch_size
    return {
        "train_seconds": timer.seconds,
        "steps": steps,
        "samples": samples,
        "real_tokens": real,
        "padded_tokens": padded,
        "padding_efficiency": real / padded,
        "real_tokens_per_second": real / timer.seconds,
        "samples_per_second": samples / timer.seconds,
        "train_cpu_seconds": timer.cpu_seconds,
        "real_tokens_per_cpu_second": real / timer.cpu_seconds,
        "mean_sequence_tokens": real / samples,
        "peak_rss_mb": peak_mb,
        # What training added on top of the loaded model, libraries and data.
        "peak_above_start_mb": peak_mb - timer.rss_at_start_mb,
    }


def write_result(out: Path, result: dict) -> None:
    """A side's result: out/result.json (read by bench/throughput.py), and one line to stdout."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "model_shape"}))


def current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mb() -> float:
    """High-water mark of this process's resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def model_shape(model) -> dict:
    """What bench/mfu.py needs: parameters used in matmuls, trainable ones, layers, width."""
    config = model.config
    matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    return {
        "matmul_params": matmul,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
        "layers": config.num_hidden_layers,
        "hidden": config.hidden_size,
    }


@torch.no_grad()
def validation_loss(model, examples: list[dict], collator, batch_size: int = 16) -> float:
    """Mean cross-entropy per example (classification) or per labelled token (causal LM)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = collator([dict(e) for e in examples[start:start + batch_size]])
        labels = batch.pop("labels")
        logits = model(**batch).logits.float()
        if labels.dim() == 1:  # one label per example
            total += torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            count += labels.numel()
        else:  # next-token prediction: logits at t predict the token at t + 1
            shifted = labels[:, 1:]
            total += torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)), shifted.reshape(-1),
                ignore_index=IGNORE, reduction="sum",
            ).item()
            count += int((shifted != IGNORE).sum())
    model.train(was_training)
    return total / count


# ------------------------------------------------------------------------------------------------


def add_training_arguments(parser: argparse.ArgumentParser, *, max_steps: int, batch_size: int,
                           max_length: int) -> None:
    """The options every peer script of bench/throughput.py takes (the same names and meaning,
    so the benchmark passes one list to each)."""
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-steps", type=int, default=max_steps)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--lora-alpha", type=float, default=16)
    parser.add_argument("--lora-dropout", type=float, default=0.05)
    parser.add_argument("--max-length", type=int, default=max_length)
    parser.add_argument("--seed", type=int, default=42)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Plain Trainer + PEFT LoRA (the guide's recipe)")
    parser.add_argument("--task", choices=["classification", "chat"], required=True)
    add_training_arguments(parser, max_steps=40, batch_size=8, max_length=512)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    train_rows = read_jsonl(args.data / "train.jsonl")
    val_rows = read_jsonl(args.data / "val.jsonl")
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)

    if args.task == "classification":
        labels = sorted({r["label"] for r in train_rows})
        label2id = {name: i for i, name in enumerate(labels)}
        model = AutoModelForSequenceClassification.from_pretrained(
            args.model_dir, num_labels=len(labels), label2id=label2id,
            id2label={i: name for name, i in label2id.items()},
        )
        lora = LoraConfig(task_type=TaskType.SEQ_CLS, r=args.lora_r, lora_alpha=args.lora_alpha,
                          lora_dropout=args.lora_dropout, target_modules=["query", "value"])
        train_set = encode_classification(train_rows, tokenizer, label2id, args.max_length)
        val_set = encode_classification(val_rows, tokenizer, label2id, args.max_length)
        collator = DataCollatorWithPadding(tokenizer)
    else:
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32)
        lora = LoraConfig(task_type=TaskType.CAUSAL_LM, r=args.lora_r, lora_alpha=args.lora_alpha,
                          lora_dropout=args.lora_dropout, target_modules=["q_proj", "v_proj"])
        train_set = [encode_chat(r["messages"], tokenizer, args.max_length) for r in train_rows]
        val_set = [encode_chat(r["messages"], tokenizer, args.max_length) for r in val_rows]
        collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE)

    model = get_peft_model(model, lora)
    counting = CountingCollator(collator)
    training_args = TrainingArguments(
        output_dir=str(args.out / "trainer"),
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_steps=args.max_steps,
        warmup_steps=args.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio
        weight_decay=args.weight_decay,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        seed=args.seed,
        use_cpu=not torch.cuda.is_available(),
    )
    timer = LoopTimer()
    trainer = Trainer(model=model, args=training_args, train_dataset=train_set,
                      data_collator=counting, callbacks=[timer])
    trainer.train()
    peak = peak_rss_mb()  # before validation, as on the tunesmith side

    result = {
        "side": "plain",
        **loop_figures(counting, timer, args.max_steps, args.batch_size, peak),
        "val_loss": validation_loss(model, val_set, collator),
        "threads": torch.get_num_threads(),
        "model_shape": model_shape(model),
        "pid": os.getpid(),
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
