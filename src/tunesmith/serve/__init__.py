"""Serving finetuned runs: one base model with several adapters, and merging.

- :class:`~tunesmith.serve.predict.AdapterServer` loads a base model once and any number of
  saved adapters on it (the guide's "one base, one adapter per task"); each call picks one.
- :func:`~tunesmith.serve.merge.merge_adapter_dir` folds a LoRA/DoRA (or QLoRA, dequantised
  first) adapter into the base and saves a standalone model, checked against the unmerged one.
"""
