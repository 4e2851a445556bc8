"""A/B tests of served models: experiments, sticky assignment, outcomes, statistics, decisions.

- :mod:`~tunesmith.ab.experiment`: the definition (two arms, split, metric) and the sticky
  assignment of a user to an arm (a hash of experiment and user id).
- :mod:`~tunesmith.ab.store`: experiments and outcomes in sqlite (WAL) in the server's state
  folder; assignments are the server's traffic-log rows.
- :mod:`~tunesmith.ab.stats`: z-test, Welch's t-test, mSPRT (valid under peeking), sample-ratio
  mismatch, power analysis. :mod:`~tunesmith.ab.analysis`: report and decision in words.
- :mod:`~tunesmith.ab.tracking`: the experiment as an MLflow run; promotion of the winner.
- :mod:`~tunesmith.ab.routes`: the ``ab:NAME`` resolver and ``POST /v1/feedback`` for
  ``tunesmith serve`` (the web framework stays in that one module).
"""
