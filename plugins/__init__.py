"""First-party automl plugins. Each subpackage is a plugin registered through the
``automl.plugins`` entry point group, exactly as a third-party plugin is, and imports only
automl's public API."""
