"""What every scenario uses: server processes, configurations, seeding, HTTP control calls,
profiling with py-spy, and the rows of the results table."""
from __future__ import annotations

import collections
import dataclasses
import datetime
import http.client
import json
import math
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from typing import Optional

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks.loadgen import HOST  # noqa: E402


# --- results -------------------------------------------------------------------------------------
@dataclasses.dataclass
class Row:
    """One figure, the floor measured beside it in the same run, and the target it is held to."""

    scenario: str
    metric: str
    value: float
    unit: str
    floor: Optional[float] = None
    floor_what: str = ""
    target: str = ""
    passed: Optional[bool] = None
    note: str = ""

    @property
    def ratio(self) -> Optional[float]:
        if self.floor in (None, 0) or self.value is None or math.isnan(self.value):
            return None
        return self.value / self.floor

    def as_dict(self) -> dict:
        return dict(dataclasses.asdict(self), ratio=self.ratio)


# --- the run's scratch space -------------------------------------------------------------------
class Workspace:
    """A scratch directory for databases, configurations and server logs; removed at the end
    unless the run is kept for inspection."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(path, exist_ok=True)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def write_config(path: str, db_path: str, pools: list, settings: dict, providers=None, url=None, **sections) -> str:
    """A service configuration in the original's YAML format, on the SQLite file ``db_path`` or the
    database ``url`` (``sections``: more of them, e.g. prometheus)."""
    raw = {"providers": providers or {"dummy": {}}, "pools": pools, "config": settings,
           "database": {"url": url or f"sqlite:///{db_path}"}, **sections}
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(raw, handle)
    return path


# --- server processes ----------------------------------------------------------------------------
class Server:
    """``benchmarks/server.py`` in a process of its own; ``with Server(...) as server``."""

    def __init__(self, workspace: Workspace, mode: str, *args: str, name: Optional[str] = None,
                 timeout: float = 120):
        self.log_path = workspace.file(f"{name or mode}.log")
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, os.path.join(HERE, "server.py"), mode, *args],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else b""
        if not line:
            self.stop()
            with open(self.log_path, "rb") as handle:
                tail = handle.read()[-3000:].decode(errors="replace")
            raise RuntimeError(f"the {mode} server did not start:\n{tail}")
        self.info = json.loads(line)
        self.port, self.pid = self.info["port"], self.info["pid"]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def status_kb(self, key: str) -> int:
        """A value from /proc/<pid>/status in kB (VmHWM: peak RSS, VmRSS: RSS now)."""
        with open(f"/proc/{self.pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0

    def peak_rss_mb(self) -> float:
        return self.status_kb("VmHWM") / 1024.0

    def get(self, path: str, timeout: float = 60):
        return request(self.port, "GET", path, timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream:
                stream.close()
        self.log.close()


def request(port: int, method: str, path: str, body=None, timeout: float = 60):
    """(status, decoded JSON or text) of one request on a fresh connection: for control calls."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        answer = conn.getresponse()
        data = answer.read().decode()
        try:
            return answer.status, json.loads(data)
        except ValueError:
            return answer.status, data
    finally:
        conn.close()


def timed_requests(port: int, path: str, count: int, budget: float) -> list:
    """Latencies (ms) of up to ``count`` sequential GETs on one keep-alive connection, stopping
    after ``budget`` seconds."""
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    latencies, deadline = [], time.monotonic() + budget
    try:
        for _ in range(count):
            began = time.perf_counter()
            conn.request("GET", path)
            answer = conn.getresponse()
            answer.read()
            latencies.append((time.perf_counter() - began) * 1000)
            if answer.status != 200:
                raise RuntimeError(f"GET {path}: {answer.status}")
            if time.monotonic() > deadline:
                break
    finally:
        conn.close()
    return latencies


def median(values) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: rounds of a floor and the service, alternating, whose medians are compared (realistic.py,
#: postgres.py): one burst lasts a second or two, and single runs of either swing by a third from
#: one to the next on the 2-core machine (docs/performance.md)
ROUNDS = 3


def medians(rounds: list):
    """Each figure's median over ``rounds`` (NamedTuples of one kind, one per round)."""
    return type(rounds[0])(*(median(values) for values in zip(*rounds)))


def by_round(ours: list, floors: list, field: str) -> str:
    """Each round's ratio of ``field`` to its floor's (how far single runs swing)."""
    return ", ".join(f"{getattr(one, field) / getattr(floor, field):.2f}x" for one, floor in zip(ours, floors))


def wait_until(predicate, timeout: float, interval: float = 0.01) -> Optional[float]:
    """Seconds until ``predicate()`` held, polling; None when ``timeout`` passed first."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if predicate():
            return time.monotonic() - began
        time.sleep(interval)
    return None


# --- seeding -------------------------------------------------------------------------------------
def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def create_database(db_path: str):
    """A new database at ``db_path`` with the service's schema (its own migrations)."""
    from vmpooler.db.database import Database

    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db_path + suffix):
            os.remove(db_path + suffix)
    database = Database(f"sqlite:///{db_path}")
    database.upgrade()
    return database


def vm_rows(pool: str, state: str, count: int, provider: str = "dummy", start: int = 0, now=None,
            live: bool = True) -> list:
    """Rows for the vms table: ``count`` VMs of ``pool`` in ``state``, named <pool>-<n>."""
    now = now or utcnow()
    rows = []
    for n in range(start, start + count):
        name = f"{pool}-{n:06d}"
        row = dict(name=name, live_name=name if live else None, pool=pool, provider=provider, template=pool,
                   state=state, state_changed_at=now, created_at=now, cloned_at=now, ready_at=now,
                   checked_at=now, checkout_at=None, expires_at=None, completed_at=None, destroyed_at=None,
                   lifetime=None, token_hash=None, token_user=None, clone_attempts=0, destroy_attempts=0,
                   next_attempt_at=None, last_error=None, ip="127.0.0.1")
        if state == "running":
            row.update(checkout_at=now, expires_at=now + datetime.timedelta(hours=24))
        elif state == "destroyed":
            row.update(completed_at=now, destroyed_at=now)
        rows.append(row)
    return rows


def bulk_insert(database, table, rows: list, chunk: int = 20000) -> None:
    """Insert ``rows`` with executemany, in chunks: seeding, not the service's own writes."""
    for begin in range(0, len(rows), chunk):
        with database.write() as conn:
            conn.execute(table.insert(), rows[begin:begin + chunk])


def seed_pools(db_path: str, pools: dict) -> list:
    """{pool: {state: count}} seeded into a new database; returns the names of the ready VMs."""
    database = create_database(db_path)
    ready = seed_rows(database, pools)
    database.dispose()
    return ready


def seed_rows(database, pools: dict) -> list:
    """{pool: {state: count}} inserted into ``database``; returns the names of the ready VMs."""
    from vmpooler.db.models import vms

    ready, now = [], utcnow()
    rows = []
    for pool, states in pools.items():
        start = 0
        for state, count in states.items():
            batch = vm_rows(pool, state, count, start=start, now=now)
            start += count
            rows += batch
            if state == "ready":
                ready += [row["name"] for row in batch]
    bulk_insert(database, vms, rows)
    return ready


# --- profiling -----------------------------------------------------------------------------------
class Profile:
    """py-spy sampling a server process for a while (without pausing it); ``summary()`` gives
    the functions that held the most samples, inclusive and self. A no-op without py-spy."""

    def __init__(self, pid: int, seconds: float, output: str, enabled: bool = True):
        self.output, self.process = output, None
        if enabled and shutil.which("py-spy"):
            self.process = subprocess.Popen(
                ["py-spy", "record", "--pid", str(pid), "--duration", str(max(1, int(round(seconds)))),
                 "--rate", "200", "--nonblocking", "--format", "raw", "--output", output],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def summary(self, top: int = 12) -> Optional[dict]:
        if self.process is None:
            return None
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return None
        if not os.path.exists(self.output):
            return None
        return summarise_collapsed(self.output, top)


def summarise_collapsed(path: str, top: int = 12) -> dict:
    """From py-spy's collapsed stacks, over the samples of busy threads (idle waits in
    select/epoll are left out): {samples, inclusive: [(frame, %)] for vmpooler's own functions,
    self: [(frame, %)] where the time is spent, libraries: [(library, %)] of self time}."""
    inclusive, own, libraries, total = collections.Counter(), collections.Counter(), collections.Counter(), 0
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = stack.split(";")
            if _idle(frames[-1]):
                continue
            n = int(count)
            total += n
            for frame in set(_short(f) for f in frames[1:] if _own(f)):
                inclusive[frame] += n
            own[_short(frames[-1])] += n
            libraries[_library(frames[-1])] += n
    share = lambda counter: [(frame, round(100.0 * n / total, 1)) for frame, n in counter.most_common(top)] \
        if total else []
    return {"samples": total, "inclusive": share(inclusive), "self": share(own), "libraries": share(libraries)}


def _library(frame: str) -> str:
    """The package a frame's code belongs to (sqlalchemy, tornado, json, vmpooler, ...)."""
    path = frame.partition(" (")[2]
    return path.split("/", 1)[0] if "/" in path else path.split(".py")[0]


def _own(frame: str) -> bool:
    return " (vmpooler/" in frame or "/vmpooler/" in frame


def _idle(frame: str) -> bool:
    return any(word in frame for word in ("select (selectors.py", "poll (selectors.py", "wait (threading.py",
                                          "_worker (concurrent/futures/thread.py", "get (queue.py"))


def _short(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``func (file.py:12)``, keeping vmpooler's package path."""
    name, _, where = frame.partition(" (")
    where = re.sub(r":\d+$", "", where.rstrip(")"))
    if "/vmpooler/" in where:
        where = "vmpooler/" + where.rsplit("/vmpooler/", 1)[1]
    else:
        where = where.rsplit("/", 1)[-1]
    return f"{name} ({where})"
