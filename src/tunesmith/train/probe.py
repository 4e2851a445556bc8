"""The linear probe on a frozen encoder: a classifier's baseline and LP-FT's starting head.

A logistic-regression *probe* on the frozen encoder's mean-pooled embeddings, fitted on the
train split, is what the pretrained model already knows about the task: evaluation reports it
as the baseline to beat (:func:`tunesmith.evaluate.classification.probe_baseline`), and the
classification training plan copies it into the model's head before finetuning (LP-FT, Kumar
et al., ICLR 2022: :func:`init_head_from_probe`), so training starts at the baseline's
predictions instead of from a random head.

The probe is scikit-learn's default ``StandardScaler`` + ``LogisticRegression`` (L2, C = 1,
unpenalised intercept; one score for two classes, softmax over all for more), fitted here with
scipy's L-BFGS on the same objective (:func:`fit_logistic`): importing scikit-learn costs a
`tunesmith run` about 100 MB of resident memory, which the run would carry through training.
``tests/core/test_core_heads.py`` checks the fit against scikit-learn's.

Costs: one forward pass (no backward) over the examples embedded, plus the fit (seconds for a
few thousand examples).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.train.encoding import EncodedDataset, collate

EVAL_BATCH_SIZE = 64
# The probe is fitted on at most this many train examples (sampled with the seed): embedding
# them is the probe's cost, and on rotten-tomatoes 10k examples gave 0.741 against 0.731 for 2k.
PROBE_MAX_TRAIN = 10_000


def probe_rows(n: int, seed: int) -> list[int]:
    """Which of ``n`` train examples the probe is fitted on: all of them, or
    :data:`PROBE_MAX_TRAIN` sampled with ``seed`` (the same choice in training and evaluation)."""
    if n <= PROBE_MAX_TRAIN:
        return list(range(n))
    return random.Random(seed).sample(range(n), PROBE_MAX_TRAIN)


def fingerprint(encoded: EncodedDataset) -> str:
    """A digest of the examples a probe is fitted on (token ids and label ids, in order): a
    probe saved by training is reused by evaluation only for the very same examples."""
    digest = hashlib.sha256()
    for example in encoded.examples:
        digest.update(json.dumps([example["input_ids"], example.get("label")]).encode())
    return digest.hexdigest()


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
    """A fitted logistic-regression probe on mean-pooled embeddings.

    ``kept``: boolean mask of the embedding dimensions the probe reads; ``mean`` / ``scale``:
    their standardisation; ``coef`` ``[1 or k, kept]`` and ``intercept``: the logistic regression
    on the standardised features (one row: the score of ``classes[1]`` over ``classes[0]``);
    ``classes``: the label ids seen in training, in order.
    """

    kept: Any
    mean: Any
    scale: Any
    coef: Any
    intercept: Any
    classes: list[int]
    fitted_on: str = ""  # fingerprint() of the examples, when fitted by fit_probe

    def save(self, path: Path) -> None:
        """Write the fitted probe as JSON (numbers only: nothing to unpickle)."""
        path.write_text(json.dumps({
            "kept": [bool(k) for k in self.kept], "mean": self.mean.tolist(),
            "scale": self.scale.tolist(), "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(), "classes": self.classes,
            "fitted_on": self.fitted_on}) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Probe | None:
        """The probe :meth:`save` wrote; None when the file is missing or unreadable."""
        import numpy as np

        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(np.array(data["kept"], dtype=bool), np.array(data["mean"]),
                       np.array(data["scale"]), np.array(data["coef"]), np.array(data["intercept"]),
                       [int(c) for c in data["classes"]], str(data["fitted_on"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def predict_proba(self, features: Any) -> Any:
        """``[n, len(classes)]`` probabilities, columns in the order of :attr:`classes`."""
        import numpy as np

        if len(self.classes) == 1:  # one label in training: it is the only answer
            return np.ones((len(features), 1))
        z = (np.asarray(features, dtype=np.float64)[:, self.kept] - self.mean) / self.scale
        scores = z @ self.coef.T + self.intercept
        if self.coef.shape[0] == 1:
            p = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            return np.stack([1.0 - p, p], axis=1)
        scores -= scores.max(axis=1, keepdims=True)
        e = np.exp(scores)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, features: Any) -> list[int]:
        return [self.classes[int(i)] for i in self.predict_proba(features).argmax(axis=1)]

    def linear_head(self, num_labels: int) -> tuple[Any, Any]:
        """The probe as one linear layer on the raw embeddings: ``(weight [k, d], bias [k])``.

        The scaler folds into the weights (``w / scale``, ``b - w . mean / scale``); dimensions
        the probe does not read get weight 0. A binary probe has one score ``w . x + b`` for
        class 1 over class 0; the two rows ``-w/2`` and ``+w/2`` give softmax the same odds.
        Labels the probe never saw get a very low bias, so the argmax, and the predictions, are
        the probe's.
        """
        import numpy as np

        coef = np.zeros((self.coef.shape[0], len(self.kept)))
        coef[:, self.kept] = self.coef / self.scale
        bias = self.intercept - coef[:, self.kept] @ self.mean
        if coef.shape[0] == 1:  # binary: one score
            coef = np.vstack([-coef[0] / 2, coef[0] / 2])
            bias = np.array([-bias[0] / 2, bias[0] / 2])
        weight = np.zeros((num_labels, coef.shape[1]), dtype=np.float32)
        full_bias = np.full(num_labels, -1e4, dtype=np.float32)
        for row, label in enumerate(self.classes):
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


def fit_probe(model: Any, train: EncodedDataset, pad_token_id: int, *, seed: int = 42,
              batch_size: int = EVAL_BATCH_SIZE) -> Probe:
    """Fit the logistic-regression probe on ``train``'s mean-pooled embeddings of ``model``
    (standardised; near-constant dimensions, see :data:`CONSTANT_SPREAD`, left out).

    Cost: one forward pass over ``train`` plus the fit (seconds for a few thousand
    examples). Deterministic for a given model, data and seed.
    """
    probe = probe_from_features(embed(model, train, pad_token_id, batch_size),
                                [e["label"] for e in train.examples], seed=seed)
    probe.fitted_on = fingerprint(train)
    return probe


def probe_from_features(features: Any, labels: Sequence[int], *, seed: int = 42) -> Probe:
    """:func:`fit_probe` on embeddings already computed (``[n, d]`` array, label ids).

    ``seed`` is kept for callers: the fit is deterministic (L-BFGS from zero)."""
    import numpy as np

    features = np.asarray(features, dtype=np.float64)
    spread = features.std(axis=0)
    kept = spread > CONSTANT_SPREAD * float(np.median(spread))
    x = features[:, kept]
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    classes = sorted({int(y) for y in labels})
    index = {c: i for i, c in enumerate(classes)}
    coef, intercept = fit_logistic((x - mean) / scale, np.array([index[int(y)] for y in labels]),
                                   len(classes))
    return Probe(kept, mean, scale, coef, intercept, classes)


def fit_logistic(x: Any, y: Any, num_classes: int, c: float = 1.0,
                 max_iter: int = 2000) -> tuple[Any, Any]:
    """L2-regularised logistic regression, scikit-learn's ``LogisticRegression(C=c)`` objective:
    ``sum(log-loss) + ||W||^2 / (2c)``, intercept not penalised; one coefficient row for two
    classes (the score of class 1), a softmax over ``num_classes`` rows otherwise. Minimised
    with scipy's L-BFGS-B from zeros (the objective is strictly convex in ``W``). ``y``: class
    indices ``0..num_classes-1``. Returns ``(coef [rows, d], intercept [rows])``.
    """
    import numpy as np
    from scipy.optimize import minimize

    n, d = x.shape
    rows = 1 if num_classes <= 2 else num_classes
    if num_classes < 2:  # nothing to separate
        return np.zeros((1, d)), np.zeros(1)
    onehot = np.zeros((n, rows))
    if rows == 1:
        target = (y == 1).astype(np.float64)
    else:
        onehot[np.arange(n), y] = 1.0

    def objective(theta: Any) -> tuple[float, Any]:
        w = theta[: rows * d].reshape(rows, d)
        b = theta[rows * d:]
        scores = x @ w.T + b
        if rows == 1:
            s = scores[:, 0]
            # log(1 + e^s) - t s, computed without overflow
            loss = float(np.sum(np.logaddexp(0.0, s) - target * s))
            residual = (1.0 / (1.0 + np.exp(-s)) - target)[:, None]
        else:
            top = scores.max(axis=1, keepdims=True)
            log_norm = top[:, 0] + np.log(np.exp(scores - top).sum(axis=1))
            loss = float(np.sum(log_norm - scores[np.arange(n), y]))
            residual = np.exp(scores - log_norm[:, None]) - onehot
        loss += float(np.sum(w * w)) / (2.0 * c)
        grad_w = residual.T @ x + w / c
        return loss, np.concatenate([grad_w.ravel(), residual.sum(axis=0)])

    found = minimize(objective, np.zeros(rows * d + rows), jac=True, method="L-BFGS-B",
                     options={"maxiter": max_iter, "gtol": 1e-8, "ftol": 1e-12})
    return found.x[: rows * d].reshape(rows, d), found.x[rows * d:]


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
