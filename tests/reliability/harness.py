"""Running the whole service for the reliability scenarios, two ways:

- ``ServerProcess``: a real ``python -m vmpooler serve`` subprocess on 127.0.0.1 with a YAML config
  file, the dummy provider's inventory in a JSON file, its log in a file; it can be killed with
  SIGKILL, restarted, and measured (RSS, open file descriptors) from /proc.
- ``tests.service.InProcessService``: the same ``vmpooler.app.Service`` on its own IOLoop in a
  thread of the test process, so a test can turn the dummy provider's knobs or hook the database
  engine while it runs; ``service_config`` below makes its configuration.

Both are reached over HTTP with ``tests.api.conftest.Client`` and both bind loopback only.

The crash scenarios' rounds: ``crash_seed`` (replayable), ``crash_scenario`` (the log on failure,
no server left running) and ``load_then_kill`` (client loops against the server, then SIGKILL).
``Worker`` is one HTTP client of them: a seeded mix of checkouts, PUTs, DELETEs and
token changes, each acknowledged answer recorded in an ``invariants.Ledger``.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from tests.api.conftest import Client
from tests.test_cli import ROOT, free_port
from vmpooler import config as config_module
from vmpooler.db.database import Database
from vmpooler.providers.registry import REGISTRY

#: the manager's timers for these scenarios: passes every 50 ms, quick retries and reconciles
FAST_SETTINGS = {"check_loop_delay_min": 0.05, "vm_checktime": 0.01, "retry_backoff": 0.02,
                 "retry_backoff_max": 0.2, "reconcile_interval": 0.2, "shutdown_grace": 2,
                 "status_cache_seconds": 0}  # the scenarios poll /status and act on what it says
#: the users of ``tests.api.conftest.USERS_AUTH``, who make tokens in ``Worker``
USERS = ("jdoe", "other")


def raw_config(pools, settings=None, dummy=None, database=None, **sections) -> dict:
    """A configuration mapping in the YAML file's shape: the dummy provider and ``pools``."""
    raw = {":providers:": {":dummy:": dict(dummy or {})}, ":pools:": pools,
           ":config:": {**FAST_SETTINGS, **(settings or {})}}
    if database:
        raw[":database:"] = {"url": database}
    raw.update({f":{name}:": value for name, value in sections.items()})
    return raw


def service_config(directory, pools, settings=None, dummy=None, **sections):
    """A validated Config for ``InProcessService``: its database is ``directory``/vmpooler.db."""
    raw = raw_config(pools, settings, dummy, f"sqlite:///{Path(directory) / 'vmpooler.db'}", **sections)
    return config_module.build(raw, {"VMPOOLER_DEBUG": "1"}, REGISTRY)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.02):
    """Poll ``predicate`` (exceptions count as not yet) until it returns a true value."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ValueError, KeyError) as error:
            last_error = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})")


def pools_full(client: Client, pools) -> bool:
    """Every pool at its size with nothing cloning, booting or being destroyed."""
    status = client.get("/api/v1/status").json()
    queue, by_pool = status["queue"], status["pools"]
    return (queue["pending"] == 0 and queue["completed"] == 0
            and all(by_pool[p["name"]]["ready"] == p["size"] for p in pools))


def breaker_state(client: Client, provider: str = "dummy") -> str:
    return client.get("/api/v1/status?view=providers").json()["providers"][provider]["circuit_breaker"]["state"]


def inventory_file(path) -> set:
    """The names in a dummy provider's inventory file."""
    with open(path, encoding="utf-8") as handle:
        return set(json.load(handle)["vms"])


class ServerProcess:
    """``python -m vmpooler serve --config <file>`` in ``workdir`` with database ``vmpooler.db``
    and dummy inventory ``inventory.json`` there; its stderr log in ``server.log``. Further
    keyword arguments are sections of the file (``auth=...``); ``providers=`` replaces the dummy
    provider (a ``vsphere`` section, say)."""

    def __init__(self, workdir: Path, pools, settings=None, dummy=None, log_level="INFO", database_url=None,
                 inventory_path=None, role="all", fd_limit=None, **sections):
        self.workdir = Path(workdir)
        self.pools = pools
        self.port = free_port()
        self.database_path = self.workdir / "vmpooler.db"
        self.database_url = database_url or f"sqlite:///{self.database_path}"
        self.inventory_path = Path(inventory_path or self.workdir / "inventory.json")
        self.log_path = self.workdir / "server.log"
        self.config_path = self.workdir / "vmpooler.yaml"
        self.role = role
        self.fd_limit = fd_limit  # RLIMIT_NOFILE of the server process (ulimit -n), when given
        dummy = {"filename": str(self.inventory_path), **(dummy or {})}
        raw = raw_config(pools, settings, dummy, self.database_url, **sections)
        self.config_path.write_text(yaml.safe_dump(raw))
        config_module.build(yaml.safe_load(self.config_path.read_text()), {}, REGISTRY)  # fail early if invalid
        self.log_level = log_level
        self.process = None
        self.client = Client(self.port)
        self.starts = 0
        #: put before the command line: ``ip netns exec <ns>`` runs the server in a network namespace
        self.command_prefix: list = []

    # -- life ------------------------------------------------------------------------------
    def start(self, timeout: float = 20) -> "ServerProcess":
        """Start and return once the API answers."""
        env = {key: value for key, value in os.environ.items()
               if key not in ("VMPOOLER_CONFIG", "VMPOOLER_CONFIG_FILE", "DATABASE_URL")}
        env["PYTHONPATH"] = ROOT
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"---- start {self.starts}\n")
            self.process = subprocess.Popen(
                [*self.command_prefix, sys.executable, "-m", "vmpooler", "--log-level", self.log_level, "serve", "--config",
                 str(self.config_path), "--host", "127.0.0.1", "--port", str(self.port), "--role", self.role],
                cwd=self.workdir, env=env, stdout=subprocess.DEVNULL, stderr=log,
                preexec_fn=self._limit_fds if self.fd_limit else None)
        self.starts += 1
        wait_until(self._answers, timeout, f"the server on port {self.port} to answer")
        return self

    def _limit_fds(self) -> None:  # in the child, before exec
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.fd_limit, self.fd_limit))

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the server exited with {self.process.returncode}:\n{self.log()[-3000:]}")
        if self.role == "manager":  # no API (at most its metrics): started once it campaigns for the lease
            return "campaigning to run the pool manager" in self.log()
        return self.client.get("/api/v1/vm", timeout=2).status == 200

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind runs."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def kill_if_running(self) -> None:
        """The last resort on a test's way out: SIGKILL a server still running (none left behind)."""
        if self.process is not None and self.process.poll() is None:
            self.kill()

    def stop(self) -> int:
        """SIGTERM, the clean stop; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("the server did not stop within 20s of SIGTERM")

    # -- looking at it -----------------------------------------------------------------------
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def database(self) -> Database:
        """A connection of the test's own to the server's database (dispose it after use)."""
        return Database(self.database_url)

    def inventory(self) -> set:
        return inventory_file(self.inventory_path) if self.inventory_path.exists() else set()

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS in /proc/<pid>/status")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def fd_targets(self) -> list:
        """What the server's file descriptors point at (files, sockets, pipes), for messages."""
        directory = f"/proc/{self.process.pid}/fd"
        targets = []
        for fd in os.listdir(directory):
            try:
                targets.append(os.readlink(os.path.join(directory, fd)))
            except OSError:
                pass
        return sorted(targets)


class ClientLoop:
    """An HTTP client of the crash scenarios: ``step(n)`` again and again until the server dies
    or ``stop`` is set; answers it did not expect are collected in ``unexpected``."""

    def __init__(self):
        self.unexpected = []
        self.stop = threading.Event()

    def run(self):
        step = 0
        while not self.stop.is_set():
            step += 1
            try:
                self.step(step)
            except (OSError, http.client.HTTPException):
                return  # killed: the request in flight is uncertain (see step)

    def step(self, step):
        raise NotImplementedError


def crash_seed(what: str, rounds: int, variable: str = "VMPOOLER_CRASH") -> tuple:
    """(seed, rounds) of a crash scenario: ``$<variable>_SEED`` and ``$<variable>_ROUNDS`` when
    set, else a random seed and ``rounds``. The seed is printed so that a failure can be replayed."""
    seed = int(os.environ.get(f"{variable}_SEED") or random.randrange(2 ** 32))
    rounds = int(os.environ.get(f"{variable}_ROUNDS") or rounds)
    print(f"\n{what} seed {seed}; replay with {variable}_SEED={seed}")
    return seed, rounds


@contextlib.contextmanager
def crash_scenario(server: ServerProcess, what: str, seed: int):
    """Around a crash scenario's rounds: a failed assertion prints the seed and the server log's
    tail; on the way out, however it goes, a server still running is killed."""
    try:
        yield server
    except AssertionError:
        print(f"{what} seed {seed}; server log tail:\n{server.log()[-4000:]}")
        raise
    finally:
        server.kill_if_running()


def load_then_kill(server: ServerProcess, loops, seconds: float) -> list:
    """One round of the crash scenarios: run each ``ClientLoop`` of ``loops`` in a thread of its
    own against the running ``server`` for ``seconds``, kill -9 the server, stop the loops and
    wait for them (their requests in flight fail with the server). Returns the answers they did
    not expect."""
    threads = [threading.Thread(target=loop.run, name="crash-client") for loop in loops]
    for thread in threads:
        thread.start()
    try:
        threading.Event().wait(seconds)
        server.kill()
    finally:
        for loop in loops:
            loop.stop.set()
    unexpected = []
    for loop, thread in zip(loops, threads):
        thread.join(10)
        assert not thread.is_alive(), "a client loop still running 10s after the server was killed"
        unexpected += loop.unexpected
    return unexpected


class Worker(ClientLoop):
    """One HTTP client doing checkout / PUT tags / PUT lifetime / DELETE / token create and delete,
    recording in ``ledger`` (see ``invariants.Ledger``) what the server acknowledged, until the
    server dies or ``stop``. Checkouts pick one of ``pools``; tokens belong to ``USERS``."""

    def __init__(self, client, ledger, rng, tag, pools=("a", "b")):
        super().__init__()
        self.client, self.ledger, self.rng, self.tag, self.pools = client, ledger, rng, tag, pools

    def expect(self, response, *statuses):
        if response.status not in statuses:
            self.unexpected.append((response.status, response.text[:300]))
        return response.status == 200

    def step(self, step):
        ledger, rng = self.ledger, self.rng
        tokens = sorted(ledger.tokens)
        held = sorted(ledger.held)
        choice = rng.random()
        if choice < 0.35 or not held:
            pool = rng.choice(self.pools)
            token = rng.choice(tokens + [None])
            response = self.client.post(f"/api/v1/vm/{pool}", token=token, timeout=5)
            if self.expect(response, 200, 503):
                ledger.checked_out(response.json()[pool]["hostname"], token)
        elif choice < 0.55:
            self.modify(rng.choice(held), {"tags": {"round": self.tag, "step": str(step)}})
        elif choice < 0.7:
            self.modify(rng.choice(held), {"lifetime": rng.randint(2, 48)})
        elif choice < 0.9:
            hostname = rng.choice(held)
            token = self.token_for(hostname)
            ticket = ledger.held.pop(hostname)  # unusable from now on, whatever happens
            response = self.client.delete(f"/api/v1/vm/{hostname}", token=token, timeout=5)
            if self.expect(response, 200):
                ledger.deleted.add(ticket)
        elif choice < 0.95 or not tokens:
            user = rng.choice(USERS)
            response = self.client.post("/api/v1/token", user=user, timeout=5)
            if self.expect(response, 200):
                ledger.tokens[response.json()["token"]] = user
        else:
            owners = {ledger.token_of(hostname) for hostname in ledger.held}
            spare = [t for t in tokens if t not in owners][:len(tokens) - 1]  # keep one for anonymous VMs
            if spare:
                token = rng.choice(spare)
                user = ledger.tokens.pop(token)  # unusable from now on, whatever happens
                response = self.client.delete(f"/api/v1/token/{token}", user=user, timeout=5)
                if self.expect(response, 200):
                    ledger.deleted_tokens.add(token)

    def token_for(self, hostname):
        return self.ledger.token_of(hostname) or next(iter(sorted(self.ledger.tokens)), None)

    def modify(self, hostname, body):
        """PUT one kind of change. Until one is acknowledged, an unanswered one may have been
        applied; an acknowledged one overrides every earlier (each PUT sets the same keys)."""
        kind, ticket = next(iter(body)), self.ledger.held[hostname]
        self.ledger.uncertain.add((ticket, kind))
        response = self.client.put(f"/api/v1/vm/{hostname}", body, token=self.token_for(hostname), timeout=5)
        if self.expect(response, 200):
            self.ledger.uncertain.discard((ticket, kind))
            if kind == "tags":
                self.ledger.tags.setdefault(ticket, {}).update(body["tags"])
            else:
                self.ledger.lifetimes[ticket] = body["lifetime"]
