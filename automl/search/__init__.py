"""The search: what one trial does and how a search session runs (internal).

- :mod:`~automl.search.objective`: sampling, seeding, building and training one trial;
  the samplers and pruners; the trial runner every backend's processes build.
- :mod:`~automl.search.session`: plan (validate before writing), create, run on a backend,
  finalize (test score, best model).
"""
