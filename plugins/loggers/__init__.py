"""First-party logger plugins: ``csv`` and ``tensorboard``.

Loggers are opt-in plugins (``PluginInfo(opt_in=True)``): their lifecycle hooks fire only in
searches that name them with ``--log NAME`` (repeatable). Each is its own plugin, registered
through the ``automl.plugins`` entry point group like any third-party plugin, and writes under
the study's folder, ``STUDY/logs/<logger>/``.
"""
