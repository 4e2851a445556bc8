"""The advisor: the guide's decisions made executable and checked against measurements.

- :mod:`~tunesmith.advise.memory`: how much memory finetuning takes (and the largest batch).
- :mod:`~tunesmith.advise.diagnose`: what a run's curves say and what to change.
"""
