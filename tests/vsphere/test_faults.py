"""Losing and regaining the server, and refused logins, against a simulator of the test's own."""
import logging
import time

import pytest

from vmpooler.providers.base import PermanentError, TransientError
from tests.vsphere.helpers import Simulator, fast_settings, make_pool


def test_stopped_server_is_transient_and_quick_then_the_provider_recovers(make_provider, private_vcsim):
    provider = make_provider(private_vcsim, settings=fast_settings(max_tries=3, retry_factor=0.05))
    pool = make_pool()
    provider.create_vm(pool, "vm-before")
    private_vcsim.stop()
    started = time.monotonic()
    with pytest.raises(TransientError, match="gave up after 3 attempts"):
        provider.list_vms(pool)
    assert time.monotonic() - started < 2  # 3 refused connects and pauses of 0.05 s and 0.1 s
    with pytest.raises(TransientError):
        provider.create_vm(pool, "vm-during")
    health = provider.health()
    assert "127.0.0.1" in health["last_error"] and health["last_error_at"]
    assert health["connections"]["in_use"] == 0

    private_vcsim.start()  # same port, fresh inventory: the old session is unknown there
    assert provider.list_vms(pool) == []
    provider.create_vm(pool, "vm-after")
    assert [vm.name for vm in provider.list_vms(pool)] == ["vm-after"]


def test_a_connection_broken_mid_use_is_replaced(make_provider, private_vcsim):
    provider = make_provider(private_vcsim, connection_pool_size=1)
    pool = make_pool()
    provider.create_vm(pool, "vm-one")
    private_vcsim.restart()
    provider.create_vm(pool, "vm-two")  # the one pooled session is stale: logged in again
    assert [vm.name for vm in provider.list_vms(pool)] == ["vm-two"]
    assert provider.health()["connections"] == {"size": 1, "in_use": 0, "open": 1}


def test_a_refused_login_is_permanent_not_retried_and_the_password_stays_secret(
        vcsim_binary, make_provider, caplog):
    simulator = Simulator(vcsim_binary, username="admin", password="right-password").start()
    try:
        provider = make_provider(simulator, settings=fast_settings(max_tries=5, retry_factor=10),
                                 password="wrong-password")
        caplog.set_level(logging.DEBUG)
        started = time.monotonic()
        with pytest.raises(PermanentError, match="InvalidLogin") as raised:
            provider.list_vms(make_pool())
        assert time.monotonic() - started < 5  # no pause of 10 s: a wrong password stays wrong
        assert "wrong-password" not in str(raised.value) + caplog.text + repr(provider.config)
        assert "wrong-password" not in str(provider.health())
        good = make_provider(simulator, password="right-password")
        assert good.list_vms(make_pool()) == []
    finally:
        simulator.close()


def test_closed_provider_refuses_work(make_provider, pool):
    provider = make_provider()
    provider.list_vms(pool)
    provider.close()
    with pytest.raises(PermanentError, match="closed"):
        provider.list_vms(pool)
