"""A real, throw-away PostgreSQL server for tests and benchmarks.

:func:`postgres_server` runs ``initdb`` and ``pg_ctl`` (PostgreSQL's own tools) on a fresh data
folder in a temporary directory, listening on a free TCP port of 127.0.0.1 only (no Unix
socket), with trust authentication for the ``postgres`` superuser, and yields a SQLAlchemy URL
for psycopg 3 (``postgresql+psycopg://postgres@127.0.0.1:PORT/automl``). On leaving the
``with`` block, normally or by an exception, the server is stopped and the folder deleted.

PostgreSQL refuses to run as root, so when this process is root every command runs as the
``postgres`` user (``runuser -u postgres --``), and the temporary folder is handed to it. The
folder is made by :func:`tempfile.mkdtemp` (``$TMPDIR`` or ``/tmp``), not pytest's ``tmp_path``:
pytest's base folder is private to the user who runs pytest, which the ``postgres`` user cannot
enter.

Used by the ``postgres_url`` / ``postgres_db`` fixtures of tests/conftest.py and by
benchmarks/bench_storage.py. Needs the server tools (``apt-get install postgresql``) and the
driver (``pip install "psycopg[binary]"``).
"""

from __future__ import annotations

import functools
import glob
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

#: The commands and the package that provides them, for the reasons given when they are missing.
INSTALL_SERVER = "apt-get install postgresql"
INSTALL_DRIVER = 'pip install "psycopg[binary]"'
#: Settings of every server: TCP on loopback only, no Unix socket, quiet, small.
BASE_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "max_connections": "200",
    "logging_collector": "off",
    "log_min_messages": "warning",
}
#: Extra settings when ``durable=False``: commits do not wait for the disk (tests, not benchmarks).
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
DATABASE = "automl"
USER = "postgres"


class PostgresError(RuntimeError):
    """The throw-away server could not be set up, started or used; the message has the log tail."""


def _bin_dir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: the one ``initdb`` on PATH resolves to, else the
    newest ``/usr/lib/postgresql/*/bin`` (Debian and Ubuntu keep the tools off PATH)."""
    found = shutil.which("initdb")
    if found:
        folder = Path(found).resolve().parent
        if (folder / "pg_ctl").exists():
            return folder
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parts[-3].split(".")])
    for initdb in reversed(versions):
        folder = Path(initdb).parent
        if (folder / "pg_ctl").exists():
            return folder
    return None


def _as_server_user() -> list[str]:
    """The command prefix that runs a tool as the server's owner: ``runuser`` when root."""
    return ["runuser", "-u", USER, "--"] if os.geteuid() == 0 else []


@functools.lru_cache(maxsize=1)
def postgres_available() -> str | None:
    """None when ``initdb`` and ``pg_ctl`` can be found and run (as the ``postgres`` user when
    this process is root), else a one-line reason that says what to install."""
    folder = _bin_dir()
    if folder is None:
        return f"PostgreSQL server tools (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql: {INSTALL_SERVER}"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root, and runuser (util-linux) is missing to run PostgreSQL as the postgres user"
        try:
            pwd.getpwnam(USER)
        except KeyError:
            return f"running as root, and there is no {USER!r} user to run PostgreSQL as: {INSTALL_SERVER}"
    for tool in ("initdb", "pg_ctl"):
        try:
            proc = subprocess.run([*_as_server_user(), str(folder / tool), "--version"], capture_output=True,
                                  text=True, timeout=30, cwd="/")
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{folder / tool} cannot be run ({type(exc).__name__}: {exc}): {INSTALL_SERVER}"
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            return f"{folder / tool} --version failed ({last[0]}): {INSTALL_SERVER}"
    return None


def psycopg_available() -> str | None:
    """None when the psycopg 3 driver imports, else a one-line reason with the pip command."""
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        return f"the PostgreSQL driver psycopg 3 cannot be imported ({exc}): {INSTALL_DRIVER}"
    return None


def _free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([*_as_server_user(), *cmd], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").rstrip().splitlines()
    except OSError:
        return "(no server log)"
    return "\n".join(text[-lines:]) or "(empty server log)"


def _connect(url: str, timeout: float = 5.0):
    """A psycopg connection (autocommit) to the database of a SQLAlchemy URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return psycopg.connect(host=u.host, port=u.port, user=u.username, password=u.password, dbname=u.database,
                           connect_timeout=max(1, int(timeout)), autocommit=True)


def _wait_ready(url: str, deadline: float) -> None:
    """Connect until the server answers a query or the deadline passes (then raise)."""
    while True:
        try:
            with _connect(url, timeout=2) as con:
                con.execute("SELECT 1")
            return
        except Exception as exc:  # noqa: BLE001 - any failure before the deadline means: not up yet
            if time.monotonic() > deadline:
                raise PostgresError(f"server does not accept connections: {type(exc).__name__}: {exc}") from None
            time.sleep(0.1)


def _stop(bin_dir: Path, data: Path, root: Path) -> None:
    """Stop the server of ``data`` if one runs: fast shutdown, then immediate, then SIGKILL."""
    pid_file = data / "postmaster.pid"
    if not pid_file.exists():
        return
    for mode in ("fast", "immediate"):
        with suppress(OSError, subprocess.SubprocessError):
            if _run([str(bin_dir / "pg_ctl"), "stop", "-D", str(data), "-m", mode, "-w", "-t", "20"],
                    cwd=root, timeout=30).returncode == 0:
                return
    with suppress(OSError, ValueError, IndexError):
        os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGKILL)


def create_database(url: str, name: str) -> str:
    """Create database ``name`` on the server of ``url`` (as its superuser) and return ``url``
    with its database replaced by ``name``."""
    from psycopg import sql
    from sqlalchemy.engine import make_url

    with _connect(str(make_url(url).set(database="postgres"))) as con:
        con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    """Drop the database of ``url``, closing the sessions still connected to it."""
    from psycopg import sql
    from sqlalchemy.engine import make_url

    u = make_url(url)
    with _connect(str(u.set(database="postgres"))) as con:
        con.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(u.database)))


@contextmanager
def postgres_server(durable: bool = True, timeout: float = 60.0, attempts: int = 3,
                    listen: tuple[str, ...] = ()) -> Iterator[str]:
    """Run a fresh PostgreSQL server and yield the SQLAlchemy URL of its empty database ``automl``.

    ``durable=False`` turns off fsync and synchronous commits (faster; for tests); the default
    keeps PostgreSQL's durable settings (for benchmarks). ``listen``: more interface addresses
    of this host, ``ADDRESS/PREFIX`` (e.g. one end of a veth pair), to listen on besides
    127.0.0.1, with trust for clients in their subnets; the URL still names 127.0.0.1.
    ``timeout`` bounds initdb and each
    start; a start that loses its port to another process is retried on a new port, up to
    ``attempts`` times. A :class:`PostgresError` with the server log's tail says why a server did
    not start. The server is stopped and its folder deleted on leaving the block, even on error.
    """
    reason = postgres_available() or psycopg_available()
    if reason:
        raise PostgresError(reason)
    bin_dir = _bin_dir()
    assert bin_dir is not None  # postgres_available() found it
    root = Path(tempfile.mkdtemp(prefix="automl-pg-"))
    data, log = root / "data", root / "server.log"
    try:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(USER)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        init = _run([str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "-A", "trust", "-E", "UTF8",
                     "--locale=C", "--no-sync"], cwd=root, timeout=timeout)
        if init.returncode != 0:
            raise PostgresError(f"initdb failed (exit {init.returncode}):\n{(init.stderr or init.stdout).strip()}")
        settings = {**BASE_SETTINGS, **({} if durable else FAST_SETTINGS)}
        if listen:
            interfaces = [ipaddress.ip_interface(a) for a in listen]
            settings["listen_addresses"] = "'" + ",".join(["127.0.0.1", *(str(i.ip) for i in interfaces)]) + "'"
            with open(data / "pg_hba.conf", "a") as hba:
                hba.write("\n# automl tests/postgres.py: clients in the subnets of the extra addresses\n"
                          + "".join(f"host all {USER} {i.network} trust\n" for i in interfaces))
        with open(data / "postgresql.conf", "a") as conf:  # appended lines override initdb's defaults
            conf.write("\n# automl tests/postgres.py\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
        url = ""
        for attempt in range(1, attempts + 1):
            port = _free_port()
            start = _run([str(bin_dir / "pg_ctl"), "start", "-D", str(data), "-l", str(log), "-w",
                          "-t", str(int(timeout)), "-o", f"-p {port}"], cwd=root, timeout=timeout + 10)
            if start.returncode == 0:
                url = f"postgresql+psycopg://{USER}@127.0.0.1:{port}/postgres"
                break
            _stop(bin_dir, data, root)
            log_tail = _tail(log)
            if attempt == attempts or "could not bind" not in log_tail:
                raise PostgresError(f"PostgreSQL did not start (pg_ctl exit {start.returncode}: "
                                    f"{(start.stderr or start.stdout).strip()}); server log {log}:\n{log_tail}")
        try:
            _wait_ready(url, time.monotonic() + timeout)
            url = create_database(url, DATABASE)
        except Exception as exc:  # re-raised with the server log
            raise PostgresError(f"{type(exc).__name__}: {exc}\nserver log {log}:\n{_tail(log)}") from exc
        yield url
    finally:
        try:
            _stop(bin_dir, data, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
