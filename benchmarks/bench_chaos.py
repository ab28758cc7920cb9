"""Crash recovery without holes: SIGKILL ``automl search``, ``resume`` and ``worker`` processes
at random moments over one study, and check that nothing was lost, doubled or rerun too often.

One study (tinyplug's cheap ``slow`` space, ``--max-retries 2``, checkpoints every 0.2 s so that
retries also continue from checkpoints) is worked on by 2-3 automl processes at a time. The first
is ``automl search``, which creates it (it is not killed before the study exists: a study never
created has nothing to recover); afterwards only ``automl resume`` and ``automl worker`` join.
Every process draws its fate when it starts, from one seeded generator:

- ``group``: ``kill -9`` of its whole process group (the command, its fork server and its trial
  workers) at a uniform random moment of its first ``life_s`` seconds: early ones land while it
  still imports torch or plans, later ones inside a trial, a tell, a recovery or the finalize;
- ``main``: ``kill -9 PID`` of the main process only, at such a moment: its trial workers must
  notice and exit by themselves (they watch their parent); a group still alive 20 s later is
  reported as orphans;
- ``claim``: killed at the first to fourth time one of its processes holds the study's claim
  lock (``slots.lock``, seen in ``/proc/locks``): the main process inside ``recover`` (its first
  hold) or a trial worker inside ``Slots.claim`` (later ones), the moments that write ownership
  and re-queue trials. Either the whole group is killed, or only the lock holder, which for a
  trial worker is a worker dying alone, as the kernel's out-of-memory killer takes one.

Every kill is followed by an ``automl resume``, so the pool only has room for an ``automl worker``
when a process ends by itself: when one of its trial workers was killed alone, and when the study
reaches its target. The target is therefore small and raised in small steps with ``automl resume
NAME --trials N``, which is started alone (the pool drained first): a ``resume`` that planned with
the old target would otherwise write it back. After the last kill a final ``automl resume`` runs
to completion with whatever is still alive, without kills, and the study is checked with
``optuna.load_study``:

- exactly its target of finished (COMPLETE or PRUNED) trials, none RUNNING (WAITING ones left are
  counted: whether a queued retry may wait past the target is the claim rule's choice);
- every configuration (a chain of re-queued trials linked by the user attr ``retry_of``) ran at
  most ``1 + --max-retries`` times, and no trial was re-queued twice;
- every trial seen finished after any kill is still finished with the same value;
- no trial that died was silently dropped (FAIL, neither re-queued nor given up);
- no process outlived its killed parent, no command failed on its own, and every process's
  stderr is scanned for Python tracebacks.

The code under test is copied first (:func:`freeze_code`), so editing the tree during the run
changes nothing. Run: ``python -m benchmarks.bench_chaos [--quick] [--seed N] [--kills N] [--keep]
[--ref REV]`` (``--ref``: test a git revision instead of the working tree); the full run (200
kills) takes 10-15 minutes on two cores. When a check fails, the study, every process's output
and an event log (``events.jsonl``) are kept and their folder is reported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
#: The code under test, copied at the start (see :func:`freeze_code`).
FROZEN = ("automl", "tests/data/tinyplug.py")
STUDY = "chaos"
SEED = 20240917
MAX_RETRIES = 2
#: Seconds slept per training batch: a trial of the ``slow`` space (6 epochs) takes about 1 s.
DELAY_S = "0.02"
#: Fates drawn for every process at its start, with their weights.
FATES = (("group", 0.45), ("main", 0.25), ("claim", 0.30))
TRACEBACK = "Traceback (most recent call last):"


@dataclass
class Sizes:
    """How much chaos: kills, the target and its extensions, the span of a process's life."""

    kills: int
    target: int
    extend: int  # the target is raised by extend // 2 .. extend finished trials at a time
    life_s: float
    final_timeout_s: float
    max_wall_s: float


#: A small target raised in small steps: the study reaches its target several times, and its
#: processes then end by themselves - the only moments a pool that starts a ``resume`` after
#: every kill has room for ``automl worker`` processes.
FULL = Sizes(kills=200, target=20, extend=16, life_s=16.0, final_timeout_s=600.0, max_wall_s=2400.0)
QUICK = Sizes(kills=6, target=6, extend=6, life_s=8.0, final_timeout_s=120.0, max_wall_s=120.0)


@dataclass
class Proc:
    """One automl command started by the benchmark, and what became of it."""

    index: int
    kind: str  # search, resume, worker (the command), or final (the last resume)
    args: list[str]
    popen: subprocess.Popen
    started: float
    fate: str | None
    kill_at: float | None  # monotonic time of a timed kill; for "claim" the fallback
    err: Path
    ended: str | None = None
    killed_pids: list[int] = field(default_factory=list)
    skip_holds: int = 0  # a "claim" fate lets this many holds of the lock pass first
    holding: bool = False  # one of its processes held the lock at the last look

    @property
    def pid(self) -> int:
        return self.popen.pid


def _lock_id(path: Path) -> str | None:
    """How ``/proc/locks`` names a file: ``MAJOR:MINOR:INODE`` (hex, hex, decimal)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"


def lock_holders(lock_id: str) -> list[int]:
    """Pids holding a lock on the file ``lock_id`` names (waiters, shown with ``->``, excluded)."""
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] != "->" and fields[5] == lock_id:
            with contextlib.suppress(ValueError):
                out.append(int(fields[4]))
    return out


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group ``pgid``, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        rest = stat.rsplit(")", 1)[1].split()
        if rest[0] != "Z" and int(rest[2]) == pgid:
            out.append(int(entry))
    return out


def read_state(db: Path) -> tuple[dict[int, tuple[str, float | None]], int | None]:
    """Every trial's state and value, and the study's target, read straight from SQLite (one
    short read transaction, nothing cached), so reading after each kill costs milliseconds."""
    if not db.exists():
        return {}, None
    with contextlib.closing(sqlite3.connect(db, timeout=60)) as con:
        rows = con.execute(
            "SELECT t.number, t.state, v.value FROM trials t JOIN studies s ON s.study_id = t.study_id "
            "LEFT JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0 WHERE s.study_name = ?",
            (STUDY,)).fetchall()
        spec = con.execute(
            "SELECT a.value_json FROM study_user_attributes a JOIN studies s ON s.study_id = a.study_id "
            "WHERE s.study_name = ? AND a.key = 'automl:spec'", (STUDY,)).fetchone()
    return {int(n): (str(state), value) for n, state, value in rows}, int(json.loads(spec[0])["trials"]) if spec \
        else None


def finished_of(trials: dict[int, tuple[str, float | None]]) -> dict[int, tuple[str, float | None]]:
    return {n: sv for n, sv in trials.items() if sv[0] in ("COMPLETE", "PRUNED")}


def freeze_code(dest: Path, ref: str | None) -> dict[str, Any]:
    """Copy the code under test (the ``automl`` package and tinyplug) to ``dest``: from git
    revision ``ref``, or from the working tree as it is now. Every process of the run imports
    this copy (it is their working folder and first on ``PYTHONPATH``), so editing the tree
    during a 15-minute run cannot change the code half-way - a changed search space would even
    make every later ``resume`` refuse the study. Returns the commit and the files that differ
    from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout

    dest.mkdir(parents=True)
    try:
        commit = git("rev-parse", "HEAD" if ref is None else ref).strip()
        dirty = [] if ref is not None else git("status", "--porcelain", "--", *FROZEN).splitlines()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: the tree is all there is
        commit, dirty = None, []
    if ref is not None:
        archive = subprocess.run(["git", "archive", "--format=tar", commit, *FROZEN], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    else:
        shutil.copytree(ROOT / "automl", dest / "automl", ignore=shutil.ignore_patterns("__pycache__"))
        (dest / "tests" / "data").mkdir(parents=True)
        shutil.copy2(ROOT / "tests" / "data" / "tinyplug.py", dest / "tests" / "data" / "tinyplug.py")
    return {"ref": ref or "working tree", "commit": commit, "uncommitted": [line[3:] for line in dirty]}


class Chaos:
    """The kill loop: starts processes, gives each its fate, kills, records, resumes."""

    def __init__(self, root: Path, sizes: Sizes, seed: int) -> None:
        self.root, self.sizes, self.rng = root, sizes, random.Random(seed)
        self.studies, self.logs = root / "studies", root / "logs"
        self.logs.mkdir(parents=True)
        self.db = self.studies / STUDY / "study.db"
        self.lock = self.studies / STUDY / "slots.lock"
        self.code = root / "code"
        self.plugin = self.code / "tests" / "data" / "tinyplug.py"
        path = os.pathsep.join(p for p in (str(self.code), os.environ.get("PYTHONPATH")) if p)
        self.env = dict(os.environ, AUTOML_STUDIES=str(self.studies), TINYPLUG_DELAY=DELAY_S,
                        PYTHONUNBUFFERED="1", COLUMNS="120", PYTHONPATH=path)
        self.procs: list[Proc] = []
        self.kills: Counter[str] = Counter()
        self.modes: Counter[str] = Counter()
        self.kill_count = 0
        self.in_lock = 0  # kills that landed while one of the victim's processes held the claim lock
        self.owed = 0  # resumes owed to kills of a trial worker alone (its command still runs)
        self.seen: dict[int, tuple[str, float | None]] = {}  # finished trials seen after any kill
        self.changed_live: list[dict[str, Any]] = []
        self.changed_numbers: set[int] = set()
        self.max_target = sizes.target
        self.lowered: list[dict[str, Any]] = []  # the stored target went down (a stale spec written back)
        self.watch_groups: dict[int, tuple[float, Proc]] = {}  # main killed: its group must empty
        self.orphans: list[dict[str, Any]] = []
        self.target = sizes.target
        self.extensions = 0
        self.extending = False
        self.desired = 3
        self.start = time.monotonic()
        self.events: TextIO = (root / "events.jsonl").open("w")

    # -- bookkeeping -------------------------------------------------------------------------

    def log(self, event: str, **kw: Any) -> None:
        kw = {"t": round(time.monotonic() - self.start, 3), "event": event, **kw}
        self.events.write(json.dumps(kw, default=str) + "\n")
        self.events.flush()

    def alive(self) -> list[Proc]:
        return [p for p in self.procs if p.ended is None]

    def snapshot(self, why: str) -> None:
        """Record every finished trial; a trial seen finished before must be unchanged."""
        trials, target = read_state(self.db)
        for number, before in self.seen.items():
            now = trials.get(number)
            if now != before and number not in self.changed_numbers:
                self.changed_numbers.add(number)
                self.changed_live.append({"trial": number, "was": before, "now": now, "at": why})
                self.log("changed", trial=number, was=before, now=now, at=why)
        for number, now in finished_of(trials).items():
            self.seen.setdefault(number, now)
        if target is not None:
            if target < self.max_target:
                self.lowered.append({"from": self.max_target, "to": target, "at": why})
                self.log("target-lowered", old=self.max_target, new=target, at=why)
            self.max_target = max(self.max_target, target)

    # -- processes ---------------------------------------------------------------------------

    def spawn(self, kind: str, extra: list[str], fate: bool = True) -> Proc:
        index = len(self.procs)
        command = "search" if kind == "search" else "worker" if kind == "worker" else "resume"
        args = [sys.executable, "-m", "automl", command, *extra]
        out = (self.logs / f"{index:03d}-{kind}.out").open("wb")
        err_path = self.logs / f"{index:03d}-{kind}.err"
        err = err_path.open("wb")
        try:
            popen = subprocess.Popen(args, cwd=self.code, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=err, start_new_session=True)
        finally:
            out.close()
            err.close()
        now = time.monotonic()
        name, kill_at = None, None
        if fate:
            name = self.rng.choices([f for f, _ in FATES], weights=[w for _, w in FATES])[0]
            life = self.sizes.life_s
            kill_at = now + (self.rng.uniform(0, life) if name != "claim" else self.rng.uniform(life, 2 * life))
        # The first hold is a command's recovery (main process); later ones its workers' claims.
        proc = Proc(index, kind, args, popen, now, name, kill_at, err_path, skip_holds=self.rng.randint(0, 3))
        self.procs.append(proc)
        self.log("start", proc=index, kind=kind, pid=popen.pid, args=args[3:], fate=name,
                 kill_in=None if kill_at is None else round(kill_at - now, 3))
        return proc

    def workers_arg(self) -> list[str]:
        """Mostly one trial worker per command, sometimes two (a command with several workers)."""
        return ["--workers", "2" if self.rng.random() < 0.2 else "1"]

    def start_resume(self) -> Proc:
        return self.spawn("resume", [STUDY, *self.workers_arg()])

    def top_up(self) -> Proc:
        """A process that fills the pool: a ``resume`` owed to a kill whose command survived it
        (only one of its trial workers was killed), else an ``automl worker`` (every other kill
        starts its ``resume`` at once, so workers join only here)."""
        if self.owed:
            self.owed -= 1
            return self.start_resume()
        return self.spawn("worker", [STUDY, *self.workers_arg()])

    def kill(self, proc: Proc, mode: str, holder: int | None = None) -> None:
        """SIGKILL: the whole group (``kill -9 -PGID``), the main process (``kill -9 PID``), or
        only the process holding the claim lock. Counted only if it hit a running process."""
        target = proc.pid if holder is None or mode == "claim-group" else holder
        lock_id = _lock_id(self.lock)
        in_lock = [pid for pid in (lock_holders(lock_id) if lock_id else []) if _pgid(pid) == proc.pid]
        try:
            if mode in ("group", "claim-group"):
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            return
        hit = True
        if target == proc.pid:
            try:
                rc = proc.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                rc = None
            hit = rc == -signal.SIGKILL
            proc.ended = f"killed ({mode})" if hit else f"exited {rc} before the kill"
            if hit and mode in ("main", "claim-holder"):
                self.watch_groups[proc.pid] = (time.monotonic(), proc)
        else:  # a trial worker alone: the command goes on (and may be killed again later)
            proc.killed_pids.append(target)
            proc.fate, proc.kill_at = "group", time.monotonic() + self.rng.uniform(0, self.sizes.life_s)
        where = "main" if target == proc.pid else "worker"
        self.log("kill", proc=proc.index, kind=proc.kind, mode=mode, pid=target, where=where, hit=hit,
                 lock_held_by=in_lock)
        if not hit:
            return
        self.kill_count += 1
        self.in_lock += bool(in_lock)
        self.kills[proc.kind] += 1
        self.modes[mode if not mode.startswith("claim") else f"{mode} ({where})"] += 1
        self.snapshot(f"kill {self.kill_count}")
        self.desired = self.rng.choice((2, 3))
        if self.kill_count >= self.sizes.kills or self.extending:
            return  # the final resume, or the one that raises the target, follows
        if where == "main":
            self.start_resume()
        else:  # the command lives on: its resume starts when there is room in the pool
            self.owed += 1

    def reap(self) -> None:
        for proc in self.alive():
            rc = proc.popen.poll()
            if rc is not None:
                proc.ended = f"exited {rc}"
                self.log("exit", proc=proc.index, kind=proc.kind, rc=rc)

    def check_groups(self, grace_s: float = 20.0) -> None:
        """After ``kill -9 PID`` of a main process, its workers must exit by themselves."""
        now = time.monotonic()
        for pgid, (since, proc) in list(self.watch_groups.items()):
            members = group_members(pgid)
            if not members:
                self.log("group-empty", proc=proc.index, after_s=round(now - since, 3))
                del self.watch_groups[pgid]
            elif now - since > grace_s:
                self.orphans.append({"proc": proc.index, "kind": proc.kind, "pids": members,
                                     "cmdlines": [_cmdline(p) for p in members]})
                self.log("orphans", proc=proc.index, pids=members)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                del self.watch_groups[pgid]

    # -- the loop ----------------------------------------------------------------------------

    def begin(self) -> None:
        """Start ``automl search``; the study exists when it returns (the search is not killed
        before: a study that was never created has nothing to recover)."""
        search = self.spawn("search", [
            "--plugin-path", str(self.plugin), "--plugin", "tinyplug", "--space", "slow", "--study", STUDY,
            "--trials", str(self.sizes.target), "--workers", "1", "--max-retries", str(MAX_RETRIES),
            "--checkpoint-every", "0.2", "--seed", "0"])
        deadline = time.monotonic() + 120
        while read_state(self.db)[1] is None:
            if search.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"automl search did not create the study (see {search.err})")
            time.sleep(0.05)
        search.kill_at = time.monotonic() + (search.kill_at - search.started)  # its clock starts now
        self.log("study-created")
        self.spawn("worker", [STUDY, *self.workers_arg()])  # a worker joins from the start

    def run(self) -> None:
        last_check = 0.0
        lock_id = None
        while self.kill_count < self.sizes.kills:
            now = time.monotonic()
            if now - self.start > self.sizes.max_wall_s:
                raise TimeoutError(f"chaos loop still running after {self.sizes.max_wall_s} s "
                                   f"({self.kill_count} kills)")
            self.reap()
            alive = self.alive()
            claimers = [p for p in alive if p.fate == "claim"]
            if claimers:
                lock_id = lock_id or _lock_id(self.lock)
                held = {}
                for pid in lock_holders(lock_id) if lock_id else []:
                    with contextlib.suppress(ProcessLookupError):
                        held[os.getpgid(pid)] = pid
                for proc in claimers:
                    pid = held.get(proc.pid)
                    new_hold, proc.holding = pid is not None and not proc.holding, pid is not None
                    if not new_hold or proc.ended is not None:
                        continue
                    if proc.skip_holds > 0:
                        proc.skip_holds -= 1
                        continue
                    # A random point inside the hold, not only its first milliseconds (a recovery
                    # writes several commits); a hold that ended meanwhile re-arms the fate.
                    time.sleep(self.rng.uniform(0, 0.04))
                    if pid not in lock_holders(lock_id):
                        proc.holding = False
                        continue
                    self.kill(proc, "claim-group" if self.rng.random() < 0.5 else "claim-holder", holder=pid)
                    break
            for proc in self.alive():
                if proc.kill_at is not None and time.monotonic() >= proc.kill_at and proc.ended is None:
                    self.kill(proc, "group" if proc.fate == "claim" else proc.fate)
                    if self.kill_count >= self.sizes.kills:
                        break
            if now - last_check > 0.5:
                last_check = now
                self.check_groups()
                self.manage_target()
            if self.kill_count >= self.sizes.kills:
                break
            if not self.extending:
                while len(self.alive()) < self.desired:
                    self.top_up()
            time.sleep(0.003 if claimers else 0.02)

    def manage_target(self) -> None:
        """Raise the target when the study reached it before the kills are done. The raising
        ``resume --trials N`` runs alone, so no process that read the old target can write it back."""
        trials, target = read_state(self.db)
        if target is None:
            return
        if self.extending:
            if target > self.target:
                self.log("target-raised", old=self.target, new=target)
                self.target, self.extending = target, False
                self.extensions += 1
                return
            if not self.alive():
                more = self.rng.randint(max(1, self.sizes.extend // 2), self.sizes.extend)
                self.spawn("resume", [STUDY, "--trials", str(more), "--workers", "1"])
            return
        if len(finished_of(trials)) >= target:
            self.extending = True
            self.log("target-reached", target=target, finished=len(finished_of(trials)))

    def finish(self) -> dict[str, Any]:
        """Kills done: a final ``automl resume`` runs to completion with everything still alive."""
        for proc in self.alive():
            proc.fate, proc.kill_at = None, None
        if self.extending:  # a raise that has not landed yet is not waited for
            self.log("extension-abandoned")
        self.snapshot("end of kills")
        final = self.spawn("final", [STUDY], fate=False)
        deadline = time.monotonic() + self.sizes.final_timeout_s
        hung = []
        while self.alive():
            self.reap()
            self.check_groups()
            if time.monotonic() > deadline:
                for proc in self.alive():
                    hung.append({"proc": proc.index, "kind": proc.kind})
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.popen.wait(timeout=30)
                    proc.ended = "hung: killed after the final timeout"
                break
            time.sleep(0.2)
        end = time.monotonic() + 25
        while self.watch_groups and time.monotonic() < end:
            self.check_groups()
            time.sleep(0.2)
        self.check_groups(grace_s=0)
        self.snapshot("after the final resume")
        return {"final_rc": final.popen.returncode, "hung": hung}

    def kill_everything(self) -> None:
        """Every process group ever started is killed (on success they are all gone already)."""
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=30)
        self.events.close()


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # through the finally blocks, which kill every child


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "?"


def tracebacks(procs: list[Proc]) -> list[dict[str, Any]]:
    """Every Python traceback a process printed to stderr: which process, how it ended, and
    the traceback's last line (the exception)."""
    out = []
    for proc in procs:
        try:
            text = proc.err.read_text(errors="replace")
        except OSError:
            continue
        for chunk in text.split(TRACEBACK)[1:]:
            lines = [ln for ln in chunk.splitlines() if ln.strip()]
            last = next((ln.strip() for ln in lines if not ln.startswith((" ", "\t"))), lines[-1] if lines else "")
            out.append({"proc": proc.index, "kind": proc.kind, "ended": proc.ended, "log": str(proc.err),
                        "exception": last[:300]})
    return out


def verify(db: Path, seen: dict[int, tuple[str, float | None]]) -> dict[str, Any]:
    """The invariants, read with plain ``optuna.load_study``."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{db}")
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    states = Counter(t.state.name for t in trials)
    finished = states["COMPLETE"] + states["PRUNED"]
    target = int(study.user_attrs["automl:spec"]["trials"])
    cap = int(study.user_attrs["automl:spec"].get("max_retries", MAX_RETRIES))

    retries: dict[int, list[int]] = {}
    for t in trials:
        if t.user_attrs.get("retry_of") is not None:
            retries.setdefault(int(t.user_attrs["retry_of"]), []).append(t.number)
    duplicated = {parent: kids for parent, kids in retries.items() if len(kids) > 1}

    def chain(t: optuna.trial.FrozenTrial) -> list[int]:
        numbers = [t.number]
        while t.user_attrs.get("retry_of") is not None and int(t.user_attrs["retry_of"]) in by_number:
            t = by_number[int(t.user_attrs["retry_of"])]
            numbers.append(t.number)
        return numbers[::-1]

    leaves = [t for t in trials if t.number not in retries]
    chains = [chain(t) for t in leaves]
    longest = max((len(c) for c in chains), default=0)
    over_cap = [c for c in chains if len(c) > 1 + cap]
    # A retry carries its chain: retry_history = the trials before it, automl_deaths = the
    # deaths of the runs before it (its parent's count, plus one if the parent died rather than
    # being interrupted). Recovery never rewrites the count on the dead trial itself.
    bad_attrs = []
    for t in trials:
        parent = t.user_attrs.get("retry_of")
        p = by_number.get(int(parent)) if parent is not None else None
        want_history = (list(p.system_attrs.get("retry_history", [])) + [p.number]) if p else None
        base = int(p.system_attrs.get("automl_deaths", 0)) if p else 0
        want_deaths = base + bool(p.user_attrs.get("died")) if p else 0
        if (parent is not None and (p is None or t.system_attrs.get("retry_history") != want_history)) or \
                int(t.system_attrs.get("automl_deaths", 0)) != want_deaths:
            bad_attrs.append({"trial": t.number, "state": t.state.name, "retry_of": parent,
                              "retry_history": t.system_attrs.get("retry_history"), "want_history": want_history,
                              "automl_deaths": t.system_attrs.get("automl_deaths"), "want_deaths": want_deaths})
    gave_up = [t.number for t in trials if t.user_attrs.get("gave_up")]
    dropped = [{"trial": t.number, "error": t.user_attrs.get("error"), "automl_deaths": t.system_attrs.get(
        "automl_deaths"), "retry_of": t.user_attrs.get("retry_of")}
        for t in trials if t.state == TrialState.FAIL and t.number not in retries and not t.user_attrs.get("gave_up")]
    lost, changed = [], []
    for number, (state, value) in sorted(seen.items()):
        t = by_number.get(number)
        if t is None or t.state.name not in ("COMPLETE", "PRUNED"):
            lost.append({"trial": number, "was": [state, value], "now": t.state.name if t else None})
        elif t.state.name != state or t.value != value:
            changed.append({"trial": number, "was": [state, value], "now": [t.state.name, t.value]})
    resumed = sum(1 for t in trials if (t.user_attrs.get("run") or {}).get("resumed_from_epoch"))
    checks = {
        "finished == target": finished == target,
        "no RUNNING trial left": states["RUNNING"] == 0,
        f"every configuration ran <= 1 + {cap} times": not over_cap,
        "no trial re-queued twice": not duplicated,
        "no finished trial lost or changed": not lost and not changed,
        "no dead trial dropped (FAIL, neither re-queued nor given up)": not dropped,
    }
    return {
        "final_target": target, "finished_trials": finished, "states": dict(states), "failed_trials": states["FAIL"],
        "waiting_left": states["WAITING"],
        "given_up_by_retry_cap": len(gave_up), "max_retries": cap, "longest_retry_chain": longest,
        "retries": sum(len(k) for k in retries.values()), "retries_resumed_from_checkpoint": resumed,
        "lost_or_changed_finished": len(lost) + len(changed), "finished_checked": len(seen),
        "duplicated_retries": sum(len(k) - 1 for k in duplicated.values()), "dropped_dead_trials": len(dropped),
        "chains_over_cap": over_cap[:10], "duplicated": duplicated, "lost": lost[:20], "changed": changed[:20],
        "dropped": dropped[:20], "retry_attrs_inconsistent": bad_attrs[:20],
        "checks": checks,
    }


def _exits(procs: list[Proc]) -> list[dict[str, Any]]:
    """Commands that ended on their own with an error: exit code and the last line they printed.
    Expected: none, except exit 1 of a command one of whose trial workers was killed alone."""
    out = []
    for proc in procs:
        ended = (proc.ended or "").split()
        if len(ended) < 2 or ended[0] != "exited" or ended[1] == "0":
            continue
        lines = [ln for ln in proc.err.read_text(errors="replace").splitlines()
                 if ln.strip() and "A new study created in memory" not in ln]
        out.append({"proc": proc.index, "kind": proc.kind, "ended": proc.ended, "workers_killed": proc.killed_pids,
                    "last_line": lines[-1][:300] if lines else "", "expected": ended[1] == "1" and bool(
                        proc.killed_pids)})
    return out


def run(quick: bool = False, seed: int = SEED, kills: int | None = None, keep: bool = False,
        ref: str | None = None) -> dict:
    """The chaos run (``quick``: a handful of kills, for the smoke test) on the working tree's
    code, or on git revision ``ref``. The temporary folder (code, study, logs, events) is removed
    unless a check failed or ``keep`` is set. SIGTERM ends it as Ctrl-C does: every process it
    started is killed first."""
    sizes = QUICK if quick else FULL
    if kills is not None:
        sizes = dataclasses.replace(sizes, kills=kills)
    root = Path(tempfile.mkdtemp(prefix="automl-chaos-"))
    chaos = Chaos(root, sizes, seed)
    start = time.perf_counter()
    result: dict[str, Any] = {"name": "kill -9 chaos over one study", "seed": seed, "kills_planned": sizes.kills,
                              "tinyplug_delay_s": float(DELAY_S), "life_s": sizes.life_s}
    ok = False
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        result["code"] = freeze_code(chaos.code, ref)
        chaos.begin()
        chaos.run()
        chaos_s = time.perf_counter() - start
        ended = chaos.finish()
        chaos.kill_everything()
        result.update(verify(chaos.db, chaos.seen))
        result["checks"]["stored target never lowered"] = not chaos.lowered
        result["target_lowered"] = chaos.lowered
        result["checks"]["processes outlived no killed parent"] = not chaos.orphans
        result["checks"]["final resume finished (exit 0)"] = ended["final_rc"] == 0 and not ended["hung"]
        result["checks"]["no command failed on its own"] = all(e["expected"] for e in _exits(chaos.procs))
        result.update(ended)
        result["chaos_s"] = round(chaos_s, 1)
        ok = all(result["checks"].values())
    finally:
        chaos.kill_everything()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
        procs = chaos.procs
        result.update({
            "kills": chaos.kill_count, "kills_by_kind": dict(chaos.kills), "kills_by_mode": dict(chaos.modes),
            "kills_inside_claim_lock": chaos.in_lock,
            "processes_started": dict(Counter(p.kind for p in procs)),
            "exits_on_their_own": dict(Counter(p.ended for p in procs if p.ended and p.ended.startswith("exited"))),
            "target_raised": chaos.extensions, "orphans": chaos.orphans,
            "changed_during_run": chaos.changed_live[:20], "tracebacks": tracebacks(procs),
            "failed_exits": _exits(procs),
            "wall_s": round(time.perf_counter() - start, 1), "load_avg_1m": round(os.getloadavg()[0], 2),
        })
        result["ok"] = ok
        if ok and not keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            result["kept"] = str(root)
            print(f"[chaos] study, logs and events kept in {root}", file=sys.stderr, flush=True)
    return result


if __name__ == "__main__":
    argv = sys.argv[1:]

    def _opt(name: str) -> int | None:
        return int(argv[argv.index(name) + 1]) if name in argv else None

    out = run(quick="--quick" in argv, seed=_opt("--seed") or SEED, kills=_opt("--kills"), keep="--keep" in argv,
              ref=argv[argv.index("--ref") + 1] if "--ref" in argv else None)
    print(json.dumps(out, indent=2, default=str))
    sys.exit(0 if out["ok"] else 1)
