"""Production monitoring: does what a run serves still look like what it was trained on?

- :mod:`~tunesmith.monitor.drift`: the checks (domain classifier, lengths, out-of-vocabulary
  rate, predicted labels, refusals) with Evidently's published thresholds.
- :mod:`~tunesmith.monitor.report`: training data and traffic log in, a report with per-model
  latency and error rates out, and its HTML page.
"""
