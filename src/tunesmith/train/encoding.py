"""Tokenize once, batch by length, pad per batch.

Examples are tokenized a single time into plain lists of ids (fast tokenizer, batched) and kept
with their lengths. Each batch is padded only to its own longest example (dynamic padding);
with ``group_by_length`` the batches hold examples of similar length, which on rotten-tomatoes
raised the share of real tokens per batch from about 0.56 to 0.97 (../shared/RESOURCES.md).

An encoded example is a dict: ``input_ids`` (list of ints) plus either ``label`` (an int, for
classification) or ``labels`` (a list of ints aligned with ``input_ids``, -100 where no loss is
taken, for causal LMs). :func:`collate` pads any such dicts into tensors. Packed causal-LM rows
carry ``position_ids`` as well and are padded by
:func:`tunesmith.train.packing.collate_with_positions`: each task's plan names the collate its
batches need, and the loop takes it from there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tunesmith.records import ClassificationRecord, Record

IGNORE_INDEX = -100  # the label id cross-entropy skips (padding, prompt tokens)
# The per-token flag of general-text tokens mixed into causal-LM training (prepare.mix_general).
GENERAL = "general"


@dataclass
class EncodedDataset:
    examples: list[dict[str, Any]]
    lengths: list[int]
    # How many examples were longer than max_length and cut (reported to the user).
    n_truncated: int = 0
    # Tokens removed from those examples in all (classification), so a report can say how much.
    tokens_cut: int = 0
    # Class names by id (classification), kept so evaluation can name predictions.
    labels: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.examples)

    def real_tokens(self) -> int:
        return sum(self.lengths)


def label_list(records: Sequence[Record]) -> list[str]:
    """The sorted class names of classification records (the order of the model's head)."""
    return sorted({r.label for r in records if isinstance(r, ClassificationRecord)})


def encode_classification(
    records: Sequence[ClassificationRecord],
    tokenizer: Any,
    labels: Sequence[str],
    max_length: int,
) -> EncodedDataset:
    """Token ids and label ids; texts longer than ``max_length`` tokens are truncated."""
    from tunesmith.errors import DataError

    label_ids = {label: i for i, label in enumerate(labels)}
    unknown = sorted({r.label for r in records} - set(label_ids))
    if unknown:
        raise DataError(
            f"labels {unknown} do not occur in the training split, so the model cannot learn them.",
            hint="Add training examples of those labels or drop them from the evaluation data.",
        )
    texts = [r.text for r in records]
    full = tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
    examples, lengths, truncated, cut = [], [], 0, 0
    for ids, record in zip(full, records, strict=True):
        if len(ids) > max_length:
            truncated += 1
            cut += len(ids) - max_length
            # Keep the closing special token ([SEP]) so the encoder sees a well-formed input.
            ids = ids[: max_length - 1] + ids[-1:]
        examples.append({"input_ids": list(ids), "label": label_ids[record.label]})
        lengths.append(len(ids))
    return EncodedDataset(examples, lengths, truncated, cut, list(labels))


def batch_order(
    lengths: Sequence[int],
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    group_by_length: bool,
) -> list[list[int]]:
    """The epoch's batches of example indices: the same for the same (seed, epoch).

    Length grouping shuffles, sorts each window of 50 batches by length, cuts it into batches
    and shuffles the batches again: every example is seen once per epoch, batches hold similar
    lengths, and the order still varies between epochs.
    """
    import numpy as np

    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths)).tolist()
    if not group_by_length:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    window = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: -lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches)).tolist()]


def collate(examples: Sequence[dict[str, Any]], pad_token_id: int) -> dict[str, Any]:
    """Pad a list of encoded examples to the longest one; return tensors.

    ``input_ids`` pad with ``pad_token_id``, ``labels`` lists with -100, ``attention_mask`` is
    1 on real tokens. Integer fields (``label``) become a ``labels`` tensor. Any
    ``position_ids`` are not kept (packed rows need
    :func:`tunesmith.train.packing.collate_with_positions`).
    """
    import torch

    width = max(len(e["input_ids"]) for e in examples)
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    batch: dict[str, Any] = {}
    token_labels = "labels" in examples[0]
    if token_labels:
        batch["labels"] = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for row, example in enumerate(examples):
        ids = example["input_ids"]
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention[row, : len(ids)] = 1
        if token_labels:
            batch["labels"][row, : len(ids)] = torch.tensor(example["labels"], dtype=torch.long)
    batch["input_ids"] = input_ids
    batch["attention_mask"] = attention
    if not token_labels:
        batch["labels"] = torch.tensor([e["label"] for e in examples], dtype=torch.long)
    return batch
