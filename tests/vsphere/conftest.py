"""Fixtures for the vSphere provider's tests (see helpers.py for the simulator).

Without Go the simulator tests fail, saying what to install (the project's test command installs
it); with VMPOOLER_SKIP_VSPHERE=1 they are skipped instead.
"""
from __future__ import annotations

import os
import socket

import pytest
from pyVim.connect import Disconnect, SmartConnect

from vmpooler.providers.vsphere import VSphereProvider
from tests.vsphere.helpers import Simulator, SimulatorUnavailable, build_simulator, fast_settings, make_pool


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
    service_instance = SmartConnect(host="127.0.0.1", port=vcsim.port, user="test", pwd="test",
                                    disableSslCertValidation=True)
    yield service_instance.RetrieveContent()
    Disconnect(service_instance)


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
