"""Fixtures for the vSphere provider's tests (see helpers.py for the simulator).

Without Go the simulator tests fail, saying what to install (the project's test command installs
it); with VMPOOLER_SKIP_VSPHERE=1 they are skipped instead.

The end-to-end tests also get here a whole service (``start_service``) and a guest port that
accepts connections for as long as the test runs (``guest_port``).
"""
from __future__ import annotations

import os
import socket
import threading

import pytest

from vmpooler import config as config_module
from vmpooler.db.database import Database
from vmpooler.providers.registry import REGISTRY
from tests.service import InProcessService
from tests.vsphere.helpers import (CLUSTER, DATASTORE, TEMPLATE, Simulator, SimulatorUnavailable, build_simulator,
                                   fast_settings, make_pool, make_provider_for, session)


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
        provider = make_provider_for(simulator.options(**options), settings)
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
    return config_module.build(raw, {}, REGISTRY)


@pytest.fixture
def service_db(tmp_path):
    """The SQLite database the services of a test share, and a handle of the test's own to read it."""
    url = f"sqlite:///{tmp_path / 'vmpooler.db'}"
    database = Database(url)
    yield database
    database.dispose()


@pytest.fixture
def start_service(service_db):
    """start_service(config) -> InProcessService, started; every service is stopped after the test."""
    services = []

    def start(config):
        services.append(InProcessService(config))
        return services[-1]

    yield start
    for service in services:
        service.stop()
