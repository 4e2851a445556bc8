"""Human evaluation, the guide's gold standard: a local review app and its statistics.

- :mod:`~tunesmith.review.pairs`: blind pairs (prompt, answer A, answer B) from a run's
  samples.jsonl and test split, left/right drawn per pair with a stored seed.
- :mod:`~tunesmith.review.store`: the vote store, sqlite in WAL mode inside the run folder;
  every vote is committed before the reply, so it survives a SIGKILL of the app.
- :mod:`~tunesmith.review.stats`: win rates with Wilson and bootstrap intervals,
  Bradley-Terry with bootstrap intervals, Cohen's kappa, position bias, metric agreement.
- :mod:`~tunesmith.review.export`: votes as TRL DPO preference pairs, error marks as a
  corrections file that ``tunesmith data convert --corrections`` applies.
- :mod:`~tunesmith.review.generate`: answers that samples.jsonl lacks, and the playground.
- :mod:`~tunesmith.review.app`: the FastAPI + Jinja2 edge (no build step, no CDN).
"""
