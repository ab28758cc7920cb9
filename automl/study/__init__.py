"""The study store: what a study is and where it lives (internal; not the plugin API).

- :mod:`~automl.study.spec`: :class:`StudySpec`, the one spec object, with every default.
- :mod:`~automl.study.resolve`: a spec's names resolved against the plugin registry.
- :mod:`~automl.study.datasets`: loading a study's data once per process, its fingerprint.
- :mod:`~automl.study.store`: Optuna storages, study folders, every ``automl:*`` key.
- :mod:`~automl.study.recovery`: trial owners, claims, heartbeats, re-queueing.
- :mod:`~automl.study.results`: leaderboard rows and study summaries as plain data.
"""
