"""The linear probe on a frozen encoder: a classifier's baseline and LP-FT's starting head.

A logistic-regression *probe* on the frozen encoder's mean-pooled embeddings, fitted on the
train split, is what the pretrained model already knows about the task: evaluation reports it
as the baseline to beat (:func:`tunesmith.evaluate.classification.probe_baseline`), and the
classification training plan copies it into the model's head before finetuning (LP-FT, Kumar
et al., ICLR 2022: :func:`init_head_from_probe`), so training starts at the baseline's
predictions instead of from a random head.

Costs: one forward pass (no backward) over the examples embedded, plus an sklearn fit (seconds
for a few thousand examples).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunesmith.train.encoding import EncodedDataset, collate

EVAL_BATCH_SIZE = 64


def length_sorted_batches(encoded: EncodedDataset, batch_size: int) -> list[list[int]]:
    # Similar lengths per batch: far less padding; the order does not matter for scoring.
    order = sorted(range(len(encoded)), key=lambda i: encoded.lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]



def embed(
    model: Any, encoded: EncodedDataset, pad_token_id: int, batch_size: int = EVAL_BATCH_SIZE
) -> Any:
    """Mean-pooled last hidden states of the model's encoder (padding excluded): ``[n, hidden]``."""
    import numpy as np
    import torch

    from tunesmith.models.heads import pool

    encoder = model.base_model
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = np.zeros((len(encoded), model.config.hidden_size), dtype=np.float32)
    with torch.no_grad():
        for indices in length_sorted_batches(encoded, batch_size):
            batch = collate([encoded.examples[i] for i in indices], pad_token_id)
            mask = batch["attention_mask"].to(device)
            hidden = encoder(input_ids=batch["input_ids"].to(device), attention_mask=mask)
            out[indices] = pool(hidden.last_hidden_state.float(), mask, "mean").cpu().numpy()
    model.train(was_training)
    return out


# Embedding dimensions whose spread is below this fraction of the median dimension's carry no
# information; standardising them divides by almost nothing. Seen on MiniLM: one such dimension
# turned into a head weight of 2.5e30 and infinite gradients under full finetuning.
CONSTANT_SPREAD = 1e-4


@dataclass
class Probe:
    """A fitted logistic-regression probe on mean-pooled embeddings."""

    pipeline: Any  # sklearn Pipeline(StandardScaler, LogisticRegression)
    kept: Any  # boolean mask of the embedding dimensions the probe reads

    def predict(self, features: Any) -> list[int]:
        return [int(p) for p in self.pipeline.predict(features[:, self.kept])]

    def predict_proba(self, features: Any) -> Any:
        return self.pipeline.predict_proba(features[:, self.kept])

    def linear_head(self, num_labels: int) -> tuple[Any, Any]:
        """The probe as one linear layer on the raw embeddings: ``(weight [k, d], bias [k])``.

        The scaler folds into the weights (``w / scale``, ``b - w . mean / scale``); dimensions
        the probe does not read get weight 0. A binary probe has one score ``w . x + b`` for
        class 1 over class 0; the two rows ``-w/2`` and ``+w/2`` give softmax the same odds.
        Labels the probe never saw get a very low bias, so the argmax, and the predictions, are
        the probe's.
        """
        import numpy as np

        scaler, logistic = self.pipeline[0], self.pipeline[-1]
        coef = np.zeros((logistic.coef_.shape[0], len(self.kept)))
        coef[:, self.kept] = logistic.coef_ / scaler.scale_
        bias = logistic.intercept_ - coef[:, self.kept] @ scaler.mean_
        if coef.shape[0] == 1:  # binary: one score
            coef = np.vstack([-coef[0] / 2, coef[0] / 2])
            bias = np.array([-bias[0] / 2, bias[0] / 2])
        weight = np.zeros((num_labels, coef.shape[1]), dtype=np.float32)
        full_bias = np.full(num_labels, -1e4, dtype=np.float32)
        for row, label in enumerate(logistic.classes_):
            weight[int(label)] = coef[row]
            full_bias[int(label)] = bias[row]
        return weight, full_bias

    def temperature(self, features: Any, labels: Sequence[int], num_labels: int) -> float:
        """The softmax temperature that minimises the cross-entropy on ``(features, labels)``
        (held-out data: the validation split), from 0.1 to 100 on a log grid.

        A probe fitted on a few hundred 384-dim embeddings separates its training data and is
        over-confident elsewhere; as a head to finetune from, such logits send large, noisy
        gradients into the encoder. Dividing the logits by a temperature changes no prediction.
        """
        import numpy as np

        weight, bias = self.linear_head(num_labels)
        logits = np.asarray(features, dtype=np.float64) @ weight.T + bias
        y = np.asarray(labels)
        if not len(y):
            return 1.0

        def nll(t: float) -> float:
            z = logits / t
            z = z - z.max(axis=1, keepdims=True)
            return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))

        return min(np.logspace(-1, 2, 61), key=nll)


def fit_probe(model: Any, train: EncodedDataset, pad_token_id: int, *, seed: int = 42) -> Probe:
    """Fit the logistic-regression probe on ``train``'s mean-pooled embeddings of ``model``
    (standardised; near-constant dimensions, see :data:`CONSTANT_SPREAD`, left out).

    Cost: one forward pass over ``train`` plus an sklearn fit (seconds for a few thousand
    examples). Deterministic for a given model, data and seed.
    """
    return probe_from_features(embed(model, train, pad_token_id),
                               [e["label"] for e in train.examples], seed=seed)


def probe_from_features(features: Any, labels: Sequence[int], *, seed: int = 42) -> Probe:
    """:func:`fit_probe` on embeddings already computed (``[n, d]`` array, label ids)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    spread = features.std(axis=0)
    kept = spread > CONSTANT_SPREAD * float(np.median(spread))
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    pipeline.fit(features[:, kept], list(labels))
    return Probe(pipeline, kept)


def init_head_from_probe(model: Any, probe: Probe, temperature: float = 1.0) -> bool:
    """Copy the probe, its logits divided by ``temperature``, into the model's linear head
    (LP-FT's starting point); False when the head is not one linear layer on mean-pooled
    features (then it keeps its fresh initialisation)."""
    import torch

    from tunesmith.models.heads import head_linear

    head = head_linear(model)
    pooling = getattr(model, "_tunesmith_pooling", None)
    if head is None or pooling is None or pooling.mode != "mean":
        return False
    weight, bias = probe.linear_head(head.out_features)
    weight, bias = weight / temperature, bias / temperature
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight))
        head.bias.copy_(torch.from_numpy(bias))
    return True
