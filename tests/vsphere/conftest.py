"""Fixtures for the vSphere provider's tests (see helpers.py for the simulator).

Without Go the simulator tests fail, saying what to install (the project's test command installs
it); with VMPOOLER_SKIP_VSPHERE=1 they are skipped instead.

The end-to-end tests also get here a whole service (``start_service``) and a guest port that
accepts connections for as long as the test runs (``guest_port``).
"""
from __future__ import annotations

import asyncio
import os
import socket
import threading

import pytest

from vmpooler import config as config_module
from vmpooler.app import Service
from vmpooler.db.database import Database
from vmpooler.providers.vsphere import VSphereProvider
from tests.api.conftest import Client
from tests.vsphere.helpers import (CLUSTER, DATASTORE, TEMPLATE, Simulator, SimulatorUnavailable, build_simulator,
                                   fast_settings, make_pool, session)


@pytest.fixture(scope="session")
def vcsim_binary():
    if os.environ.get("VMPOOLER_SKIP_VSPHERE") == "1":
        pytest.skip("VMPOOLER_SKIP_VSPHERE=1: vSphere simulator tests skipped")
    try:
        return build_simulator()
    except SimulatorUnavailable as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def vcsim(vcsim_binary):
    """The simulator shared by the tests that do not stop it; each test uses folders of its own."""
    simulator = Simulator(vcsim_binary).start()
    yield simulator
    simulator.close()


@pytest.fixture
def private_vcsim(vcsim_binary):
    """A simulator of the test's own, free to be stopped and restarted."""
    simulator = Simulator(vcsim_binary).start()
    yield simulator
    simulator.close()


@pytest.fixture
def make_provider(vcsim):
    """make_provider(simulator=None, settings=None, **options): a provider, closed after the test."""
    made = []

    def make(simulator=None, settings=None, **options):
        simulator = simulator or vcsim
        provider = VSphereProvider("vsphere", simulator.options(**options), settings or fast_settings())
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


@pytest.fixture
def provider(make_provider):
    return make_provider()


@pytest.fixture
def pool():
    return make_pool()


@pytest.fixture
def vc(vcsim):
    """The service content of a session of the test's own, to arrange and inspect the inventory."""
    with session(vcsim) as content:
        yield content


@pytest.fixture
def listening_port():
    """A port on 127.0.0.1 that accepts TCP connections (the guest's sshd, for readiness)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 that nothing listens on (just released, so nothing took it yet)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def guest_port():
    """A port on 127.0.0.1 whose listener accepts (and at once closes) every connection, like a
    guest's sshd: readiness probes keep succeeding however many the service makes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)

    def accept():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:  # closed at teardown
                return
            connection.close()

    thread = threading.Thread(target=accept, name="guest-port", daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.shutdown(socket.SHUT_RDWR)
    server.close()
    thread.join(5)


# -- the whole service, for the end-to-end tests -------------------------------------------------
#: quick passes, checks, retries and breaker; times in the units of the settings (seconds, minutes)
E2E_SETTINGS = {
    "check_loop_delay_min": 0.1, "vm_checktime": 0.005, "retry_backoff": 0.1, "retry_backoff_max": 0.5,
    "reconcile_interval": 0.5, "circuit_breaker_failure_threshold": 3, "circuit_breaker_timeout": 0.5,
    "circuit_breaker_half_open_attempts": 2, "max_tries": 1, "retry_factor": 0.01, "shutdown_grace": 5,
    "create_folders": True, "status_cache_seconds": 0,
}


def service_config(simulator, database_url: str, pool: dict, **settings):
    """A validated configuration: one vSphere pool on ``simulator``, as a YAML file would give it."""
    raw = {
        ":providers:": {"vsphere": simulator.options(vsphere_timeout=10, connection_pool_timeout=10)},
        ":pools:": [{"template": TEMPLATE, "provider": "vsphere", "datastore": DATASTORE, "clone_target": CLUSTER,
                     "timeout": 1, **pool}],
        ":config:": {**E2E_SETTINGS, **settings},
        ":database:": {"url": database_url},
    }
    return config_module.build(raw, environ={})


class RunningService:
    """``vmpooler.app.Service`` on 127.0.0.1:<free port>, run by an IOLoop of its own in a thread so
    that the test can block (HTTP, pyVmomi, database reads) without stalling the service."""

    def __init__(self, config):
        self.config = config
        self.service = None
        self.port = None
        self._error = None
        self._started = threading.Event()
        self._loop = self._stopping = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), name="vmpooler-service",
                                        daemon=True)

    def start(self, timeout: float = 30) -> "RunningService":
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError(f"the service did not start within {timeout}s")
        if self._error is not None:
            raise RuntimeError("the service did not start") from self._error
        return self

    async def _main(self) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        try:
            self.service = Service(self.config)
            await self.service.start("127.0.0.1", 0)
            self.port = self.service.port
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._started.set()
            return
        self._started.set()
        await self._stopping.wait()
        await self.service.stop()

    def stop(self, timeout: float = 30) -> None:
        """Stop as SIGTERM would (Service.stop) and wait for the thread; idempotent."""
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread.ident is not None:
            self._thread.join(timeout)
            assert not self._thread.is_alive(), "the service did not stop"

    # the API, over HTTP: paths below /api/v1
    def get(self, path: str):
        return Client(self.port).get(f"/api/v1{path}")

    def post(self, path: str):
        return Client(self.port).post(f"/api/v1{path}")

    def delete(self, path: str):
        return Client(self.port).delete(f"/api/v1{path}")


@pytest.fixture
def service_db(tmp_path):
    """The SQLite database the services of a test share, and a handle of the test's own to read it."""
    url = f"sqlite:///{tmp_path / 'vmpooler.db'}"
    database = Database(url)
    yield database
    database.dispose()


@pytest.fixture
def start_service(service_db):
    """start_service(config) -> RunningService, started; every service is stopped after the test."""
    services = []

    def start(config):
        service = RunningService(config)
        services.append(service)
        return service.start()

    yield start
    for service in services:
        service.stop()
