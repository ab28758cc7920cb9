"""``ray start`` for the tests, with the node's ports bound by the processes that serve them.

A test that picks a port by binding port 0 and releasing it, and hands the number to ``ray
start``, races every other process of the machine for it: until the node binds it, seconds
later on a busy machine, any outgoing connection (PostgreSQL clients, Ray's own gRPC channels,
the other test worker) may get it as its ephemeral port. Provoked on purpose, a lost Ray Client
port makes the head exit and a lost runtime-env-agent port leaves a search unable to join.
Given 0, each Ray process binds a port of its own and records it in the session folder (Ray's
"persisted ports"), and the head writes its address to ``TEMP/ray_current_cluster`` once it is
up, which is where the tests read it from. The one port chosen here is the Ray Client
server's, which cannot be 0 (see :func:`_client_server_port`)."""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

RAY = os.path.join(os.path.dirname(sys.executable), "ray")
#: The one port of a node that ``ray start`` takes from a fixed default (52365), which would
#: clash with any other Ray on the machine; every other port of a node defaults to 0, "the
#: process's own choice".
NODE_PORTS = ["--dashboard-agent-listen-port=0"]


def _client_server_port() -> int:
    """A port for the head's Ray Client server, which always starts (on 10001 by default) and,
    unlike every other port of a node, cannot be 0: one that is free now and lies below the
    kernel's range of ephemeral ports, so that no outgoing connection can take it before the
    server binds it (and above Ray's worker ports, 10002-19999). The tests do not use Ray Client."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(20000, max(low, 20001)), min(200, max(low - 20000, 1))):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port between 20000 and the ephemeral range (from {low})")


def start_head(temp: str, *args: str, env: dict | None = None, timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """Start ``ray start --head --block`` in its own session (stop it with ``os.killpg``), its
    temp folder ``temp``, and wait until it is up. Returns the process and the GCS address,
    ``HOST:PORT`` (Ray resolves the 127.0.0.1 it is given to the machine's own address). If
    the head exits or is not up within ``timeout`` seconds, its process group is killed and the
    error carries the end of its output."""
    out = Path(temp) / "start.log"
    with open(out, "w") as log:
        head = subprocess.Popen(
            [RAY, "start", "--head", "--port=0", f"--ray-client-server-port={_client_server_port()}", *NODE_PORTS,
             "--temp-dir", temp, "--node-ip-address", "127.0.0.1", "--include-dashboard=false",
             "--disable-usage-stats", "--block", *args],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    address_file = Path(temp) / "ray_current_cluster"
    deadline, last = time.time() + timeout, ""
    while True:
        text = address_file.read_text().strip() if address_file.exists() else ""
        if re.fullmatch(r"[\w.\-]+:\d+", text) and text == last:  # the same twice: not read mid-write
            return head, text
        last = text
        if head.poll() is not None or time.time() > deadline:
            why = f"exited with {head.returncode}" if head.poll() is not None else f"not up after {timeout:.0f} s"
            try:
                os.killpg(head.pid, 9)
            except ProcessLookupError:
                pass
            head.wait(timeout=10)
            raise AssertionError(f"ray start --head {why}:\n{out.read_text(errors='replace')[-3000:]}")
        time.sleep(0.3)
