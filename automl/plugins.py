"""Plugin discovery, validation and isolation.

Plugins come from the ``automl.plugins`` entry point group (first-party ones included) and,
for development, from explicit ``--plugin-path`` modules or files. Each plugin's hooks are
called one plugin at a time with a ``register`` callback bound to that plugin, so that every
registered object is attributed, validated, and a failure is pinned on the plugin at fault.

Selection rules:

- ``AUTOML_DISABLE_PLUGIN_AUTOLOAD=1``: no entry point is loaded, only ``--plugin-path`` ones.
- ``AUTOML_PLUGINS=a,b``: an allow-list of entry point plugins; the others are listed as
  blocked (``automl plugins --all``) and never imported. A ``--plugin-path`` plugin is asked
  for explicitly, so the allow-list does not block it.
- Two plugins with one name (two distributions, or a distribution and a ``--plugin-path``
  module): both are named in the error and neither is used.
- A plugin that raises :class:`automl.UserError` while loading is unavailable here (an
  optional dependency is missing); its message, which says how to fix it, is its error.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pluggy

from automl import hookspecs
from automl.errors import UserError
from automl.types import (
    DIRECTIONS,
    NAME_RE,
    TASKS,
    Baseline,
    Dataset,
    Metric,
    PluginInfo,
    SearchSpace,
)

ENTRY_POINT_GROUP = "automl.plugins"
#: Plugins that hear every search's lifecycle events without ``--log`` list their name here too.
LISTENER_GROUP = "automl.listeners"
KINDS: dict[str, type] = {
    "datasets": Dataset,
    "spaces": SearchSpace,
    "metrics": Metric,
    "baselines": Baseline,
}


class PluginError(Exception):
    """A plugin registered something invalid."""


@dataclass
class LoadedPlugin:
    name: str
    version: str
    source: str
    module: Any = None
    info: PluginInfo | None = None
    datasets: dict[str, Dataset] = field(default_factory=dict)
    spaces: dict[str, SearchSpace] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    baselines: dict[str, Baseline] = field(default_factory=dict)
    error: str | None = None
    blocked: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.blocked

    def hooks(self) -> list[str]:
        if self.module is None:
            return []
        return sorted(n for n in dir(hookspecs) if _is_hookspec(n) and hasattr(self.module, n))


def _is_hookspec(name: str) -> bool:
    return hasattr(getattr(hookspecs, name, None), "automl_spec")


class Registry:
    """The plugins found, by name: working ones, blocked ones and broken ones."""

    def __init__(self) -> None:
        self.plugins: dict[str, LoadedPlugin] = {}
        #: Installed plugins that were not imported (``load_registry(only=...)``).
        self.unloaded: set[str] = set()
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)

    # -- lookups -------------------------------------------------------------------------
    def working(self) -> list[LoadedPlugin]:
        return [p for p in self.plugins.values() if p.ok]

    def find(self, name: str) -> LoadedPlugin:
        """The plugin called ``name``, broken or not; a ``UserError`` if there is none or the
        allow-list blocks it."""
        plugin = self.plugins.get(name)
        if plugin is None:
            names = ", ".join(sorted({p.name for p in self.working()} | self.unloaded)) or "none installed"
            raise UserError(f"unknown plugin {name!r}; plugins found: {names}")
        if plugin.blocked:
            raise UserError(f"plugin {name!r} is not in AUTOML_PLUGINS={os.environ.get('AUTOML_PLUGINS')}")
        return plugin

    def get(self, name: str) -> LoadedPlugin:
        plugin = self.find(name)
        if plugin.error:
            raise UserError(f"plugin {name!r} is broken: {plugin.error}")
        return plugin

    def hook(self, name: str, plugin: str) -> Any:
        """Hook ``name`` of one plugin, called through pluggy: pluggy's argument checks, the
        plugin's own wrappers and its tryfirst/trylast ordering apply. Core calls hooks one
        plugin at a time so that an error is pinned on that plugin and stops no other."""
        others = [p for n, p in self.pm.list_name_plugin() if n != plugin]
        return self.pm.subset_hook_caller(name, remove_plugins=others)

    def implementers(self, name: str) -> list[str]:
        """The plugins implementing hook ``name``, in the order pluggy calls them."""
        return list(dict.fromkeys(impl.plugin_name for impl in reversed(getattr(self.pm.hook, name).get_hookimpls())))

    def listening(self, enabled: tuple[str, ...] | list[str] = ()) -> list[str]:
        """The working plugins that receive lifecycle hooks: all but opt-in ones (loggers),
        which receive them only when named in ``enabled`` (``--log NAME``)."""
        return [p.name for p in self.working()
                if p.info is None or not p.info.opt_in or p.name in enabled]

    def call(self, hook: str, enabled: tuple[str, ...] | list[str] = (), **kwargs: Any) -> None:
        """Fire a notification hook on every listening plugin (see :meth:`listening`), one
        plugin at a time in pluggy's order. A plugin that raises is reported on stderr and
        stops nothing."""
        listening = set(self.listening(enabled))
        for name in self.implementers(hook):
            if name not in listening:
                continue
            try:
                self.hook(hook, name)(**kwargs)
            except Exception as exc:  # noqa: BLE001 - isolation is the point
                print(f"automl: plugin {name!r} failed in {hook}: {exc!r}", file=sys.stderr)

    def add_commands(self, app: Any, done: set[str] | None = None) -> list[str]:
        """Let each plugin add its CLI subcommands to ``app`` (``register_commands``); returns
        warnings for plugins whose registration failed. ``done`` names plugins already added
        (each plugin adds its commands once per process)."""
        warnings: list[str] = []
        for name in self.implementers("register_commands"):
            if done is not None:
                if name in done:
                    continue
                done.add(name)
            try:
                self.hook("register_commands", name)(app=app)
            except Exception as exc:  # noqa: BLE001 - isolation is the point
                warnings.append(f"plugin {name!r} could not add commands: {exc}")
        return warnings

    def loggers(self) -> list[str]:
        """Names of the working opt-in plugins (loggers), for ``--log NAME``."""
        return sorted(p.name for p in self.working() if p.info is not None and p.info.opt_in)

    def check_loggers(self, names: list[str] | tuple[str, ...]) -> None:
        """Raise :class:`UserError` for a ``--log NAME`` that cannot be used: an unknown name
        (with the valid ones), or a logger plugin that is blocked or unavailable (with its
        reason, e.g. the package to install)."""
        for name in names:
            plugin = self.plugins.get(name)
            if plugin is not None and plugin.blocked:
                raise UserError(f"logger {name!r} is not in AUTOML_PLUGINS={os.environ.get('AUTOML_PLUGINS')}")
            if plugin is not None and plugin.error:
                raise UserError(f"logger {name!r} is unavailable: {plugin.error}")
            if plugin is None or plugin.info is None or not plugin.info.opt_in:
                # Only on this error path are all plugins imported, to list the loggers.
                valid = load_registry().loggers() if self.unloaded else self.loggers()
                raise UserError(f"unknown logger {name!r}; loggers: {', '.join(valid) or 'none installed'}")


def _register_into(plugin: LoadedPlugin, kind: str) -> Callable[[Any], None]:
    expected = KINDS[kind]
    table: dict[str, Any] = getattr(plugin, kind)

    def register(obj: Any) -> None:
        if not isinstance(obj, expected):
            raise PluginError(f"register_{kind} got {type(obj).__name__}, expected {expected.__name__}")
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise PluginError(f"{expected.__name__} name {name!r} is not a lowercase identifier")
        if name in table:
            raise PluginError(f"{expected.__name__} {name!r} is registered twice")
        _validate(obj)
        table[name] = obj

    return register


def _validate(obj: Any) -> None:
    kind = type(obj).__name__
    tasks = (obj.task,) if isinstance(obj, Dataset) else obj.tasks
    if isinstance(tasks, str) or not tasks or any(t not in TASKS for t in tasks):
        raise PluginError(f"{kind} {obj.name!r} declares tasks {tasks!r}; valid: {', '.join(TASKS)}")
    if isinstance(obj, Metric) and obj.direction not in DIRECTIONS:
        raise PluginError(f"metric {obj.name!r} has direction {obj.direction!r}; valid: maximize, minimize")
    for attr in {"Dataset": ("load",), "SearchSpace": ("define", "build"), "Metric": ("fn",),
                 "Baseline": ("fit",)}[kind]:
        if not callable(getattr(obj, attr)):
            raise PluginError(f"{kind} {obj.name!r}: {attr} is not callable")


def _collect(registry: Registry, plugin: LoadedPlugin) -> None:
    """Call one plugin's ``register_*`` and ``plugin_info`` hooks, through pluggy, with
    callbacks bound to it. Any error marks it broken."""
    try:
        registry.pm.register(plugin.module, name=plugin.name)
    except ValueError as exc:
        raise PluginError(str(exc)) from exc
    for kind in KINDS:
        registry.hook(f"register_{kind}", plugin.name)(register=_register_into(plugin, kind))
    infos = registry.hook("plugin_info", plugin.name)()
    if infos:
        info = infos[0]
        if not isinstance(info, PluginInfo):
            raise PluginError(f"plugin_info returned {type(info).__name__}, expected PluginInfo")
        for attr, table in (("default_dataset", plugin.datasets), ("default_space", plugin.spaces),
                            ("default_metric", plugin.metrics)):
            value = getattr(info, attr)
            if value is not None and value not in table:
                raise PluginError(f"plugin_info.{attr} {value!r} is not registered")
        for attr in ("default_spaces", "deployment_spaces"):
            for value in getattr(info, attr):
                if value not in plugin.spaces:
                    raise PluginError(f"plugin_info.{attr} {value!r} is not registered")
        plugin.info = info


def _path_candidate(path: str) -> tuple[str, str, str, Callable[[], Any]]:
    """A ``--plugin-path`` plugin as a load candidate. A missing file or module is the user's
    error; one that fails to import is a broken plugin, shown with its error."""
    try:
        name, module = _load_path(path)
    except UserError:
        raise
    except _PathImportError as exc:
        name, error = exc.name, exc.error
    except ModuleNotFoundError as exc:
        if exc.name is not None and (path == exc.name or path.startswith(exc.name + ".")):
            raise UserError(f"--plugin-path {path!r} is neither a .py file nor an importable module") from None
        name, error = path.rsplit(".", 1)[-1], exc
    except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
        name, error = path.rsplit(".", 1)[-1], exc
    else:
        return name, getattr(module, "__version__", "dev"), f"path {path}", lambda: module

    def fail() -> Any:
        raise error

    return name, "dev", f"path {path}", fail


class _PathImportError(Exception):
    """A ``--plugin-path`` file was found but raised while being imported."""

    def __init__(self, name: str, error: BaseException) -> None:
        super().__init__(str(error))
        self.name, self.error = name, error


def _load_path(path: str) -> tuple[str, Any]:
    """Import a plugin from a ``.py`` file or an importable module name (``--plugin-path``)."""
    p = Path(path)
    if p.suffix == ".py" or p.exists():
        if p.is_dir():
            p = p / "__init__.py"
        if not p.is_file():
            raise UserError(f"--plugin-path {path!r} does not exist")
        name = p.parent.name if p.name == "__init__.py" else p.stem
        spec = importlib.util.spec_from_file_location(f"automl_path_plugin_{name}", p)
        if spec is None or spec.loader is None:
            raise UserError(f"--plugin-path {path!r} is not an importable Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # by-reference pickling (worker processes) needs it
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[spec.name]
            raise _PathImportError(name, exc) from exc
        return name, module
    return path.rsplit(".", 1)[-1], importlib.import_module(path)


def listener_names() -> set[str]:
    """The always-on plugins: names in the ``automl.listeners`` entry-point group (read from
    the installed distributions' metadata; nothing is imported). A search imports them, in
    every process, besides its own plugin and its ``--log`` loggers."""
    if os.environ.get("AUTOML_DISABLE_PLUGIN_AUTOLOAD", "") in ("1", "true", "yes"):
        return set()
    return {ep.name for ep in entry_points(group=LISTENER_GROUP)}


def load_registry(plugin_paths: tuple[str, ...] | list[str] = (),
                  only: set[str] | None = None) -> Registry:
    """Find, import and validate every plugin (or only those named in ``only``: a search
    imports its own plugin and its loggers, not every installed one). Never raises for a
    broken plugin.

    ``AUTOML_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry points (only ``plugin_paths`` load);
    ``AUTOML_PLUGINS=a,b`` is an allow-list of entry point plugins: the others are listed as
    blocked (``plugin_paths`` are explicit and never blocked). Raises :class:`UserError` only
    for a ``plugin_paths`` entry that does not exist.
    """
    registry = Registry()
    allow_env = os.environ.get("AUTOML_PLUGINS", "").strip()
    allow = {a.strip() for a in allow_env.split(",") if a.strip()} if allow_env else None
    candidates: list[tuple[str, str, str, Callable[[], Any]]] = []
    if os.environ.get("AUTOML_DISABLE_PLUGIN_AUTOLOAD", "") not in ("1", "true", "yes"):
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if only is not None and ep.name not in only:
                registry.unloaded.add(ep.name)  # known by name, never imported
                continue
            dist = getattr(ep, "dist", None)
            version = dist.version if dist is not None else "unknown"
            source = f"{dist.metadata['Name'] if dist is not None else '?'} ({ep.value})"
            candidates.append((ep.name, version, source, ep.load))
    explicit: set[int] = set()
    for path in plugin_paths:
        explicit.add(len(candidates))
        candidates.append(_path_candidate(path))

    seen: dict[str, str] = {}
    for index, (name, version, source, loader) in enumerate(candidates):
        if name in seen:
            # Two distributions claim one name: neither is used silently.
            msg = f"plugin name {name!r} is claimed by both {seen[name]} and {source}"
            registry.plugins[name].error = msg
            for kind in KINDS:
                getattr(registry.plugins[name], kind).clear()
            continue
        seen[name] = source
        plugin = LoadedPlugin(name=name, version=version, source=source)
        registry.plugins[name] = plugin
        if allow is not None and name not in allow and index not in explicit:
            plugin.blocked = True
            continue
        try:
            plugin.module = loader()
            _collect(registry, plugin)
        except UserError as exc:  # unavailable here: the message says how to fix it
            plugin.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
            plugin.error = f"{type(exc).__name__}: {exc}"
    # A plugin found broken after registration (duplicate name) must not fire hooks.
    for plugin in registry.plugins.values():
        if plugin.error and registry.pm.has_plugin(plugin.name):
            registry.pm.unregister(name=plugin.name)
    return registry
