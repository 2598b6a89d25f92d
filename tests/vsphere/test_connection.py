"""The connection pool, with fake sessions: liveness, reconnects, retries, limits, secrecy."""
import logging
import threading

import pytest
from pyVmomi import vim

from vmpooler.providers.base import PermanentError, TransientError
from vmpooler.providers.vsphere.connection import ConnectionPool
from tests.vsphere.helpers import fast_settings, provider_options

SECTION = {"server": "vc.example.test", "username": "svc", "password": "hunter2-secret"}


class FakeConnection:
    def __init__(self, number):
        self.number, self.live, self.closed = number, True, False

    def alive(self):
        return self.live

    def close(self):
        self.closed = True


class FakeServer:
    """connect() for the pool: fails with the queued errors first, then hands out sessions."""

    def __init__(self, *failures):
        self.failures = list(failures)
        self.opened = []

    def __call__(self, options):
        if self.failures:
            raise self.failures.pop(0)
        self.opened.append(FakeConnection(len(self.opened) + 1))
        return self.opened[-1]


def make_pool(server, sleeps=None, **section):
    options = provider_options({**SECTION, **section}, fast_settings(max_tries=3, retry_factor=2))
    return ConnectionPool(options, server, sleep=(sleeps.append if sleeps is not None else lambda s: None))


def test_sessions_are_opened_lazily_and_reused():
    server = FakeServer()
    pool = make_pool(server)
    assert server.opened == []
    with pool.connection() as first:
        assert pool.stats() == {"size": 10, "in_use": 1, "open": 1}
    with pool.connection() as again:
        assert again is first
    assert len(server.opened) == 1 and pool.stats()["in_use"] == 0


def test_a_dead_session_is_replaced_before_use():
    server = FakeServer()
    pool = make_pool(server)
    with pool.connection() as first:
        pass
    first.live = False
    with pool.connection() as second:
        assert second is not first and first.closed


def test_a_session_failing_on_the_wire_is_dropped_and_other_errors_keep_it():
    server = FakeServer()
    pool = make_pool(server, connection_pool_size=1)
    with pytest.raises(vim.fault.NotFound):
        with pool.connection():
            raise vim.fault.NotFound()
    with pytest.raises(ConnectionResetError):
        with pool.connection() as kept:
            assert kept is server.opened[0]
            raise ConnectionResetError()
    assert server.opened[0].closed
    with pool.connection() as fresh:
        assert fresh is server.opened[1]


def test_connecting_retries_with_growing_pauses_then_gives_up():
    sleeps = []
    pool = make_pool(FakeServer(*[ConnectionRefusedError(111, "refused")] * 3), sleeps)
    with pytest.raises(TransientError, match="gave up after 3 attempts"):
        with pool.connection():
            pass
    assert sleeps == [2, 4]  # retry_factor × attempt, none after the last
    assert pool.stats()["in_use"] == 0


def test_connecting_succeeds_after_a_failure():
    sleeps = []
    server = FakeServer(ConnectionRefusedError(111, "refused"))
    with make_pool(server, sleeps).connection() as connection:
        assert connection is server.opened[0]
    assert sleeps == [2]


def test_a_refused_login_is_not_retried_and_the_password_is_never_logged(caplog):
    caplog.set_level(logging.DEBUG)
    sleeps = []
    pool = make_pool(FakeServer(vim.fault.InvalidLogin(msg="Cannot complete login")), sleeps)
    with pytest.raises(PermanentError, match="connecting to vSphere vc.example.test as svc: InvalidLogin"):
        with pool.connection():
            pass
    assert sleeps == []
    pool2 = make_pool(FakeServer(*[OSError("down")] * 3))
    with pytest.raises(TransientError) as raised:
        with pool2.connection():
            pass
    assert "hunter2-secret" not in caplog.text + str(raised.value)


def test_waiting_for_a_free_session_is_bounded():
    pool = make_pool(FakeServer(), connection_pool_size=1, connection_pool_timeout=0.05)
    held, release = threading.Event(), threading.Event()

    def hold():
        with pool.connection():
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    try:
        with pytest.raises(TransientError, match="no connection free after 0.05s"):
            with pool.connection():
                pass
    finally:
        release.set()
        holder.join()
    with pool.connection():
        pass


def test_close_logs_out_idle_and_returning_sessions():
    server = FakeServer()
    pool = make_pool(server)
    with pool.connection():
        pass
    with pool.connection() as busy:
        with pool.connection():
            pass
        pool.close()
        assert server.opened[1].closed and not busy.closed
    assert busy.closed
    with pytest.raises(PermanentError, match="closed"):
        with pool.connection():
            pass
