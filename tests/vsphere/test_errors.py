"""Mapping faults and transport errors onto the provider's typed errors, and waiting on tasks."""
import http.client
import socket
import ssl

import pytest
from pyVmomi import vim, vmodl

from vmpooler.providers.base import PermanentError, ProviderError, TransientError, VMExists, VMNotFound
from vmpooler.providers.vsphere import errors, inventory, tasks


@pytest.mark.parametrize("exc, expected", [
    (vim.fault.NotFound(), VMNotFound),
    (vmodl.fault.ManagedObjectNotFound(), VMNotFound),
    (vim.fault.InvalidLogin(), PermanentError),
    (vim.fault.NoPermission(), PermanentError),
    (vim.fault.NotAuthenticated(), TransientError),
    (vmodl.fault.HostCommunication(), TransientError),
    (vmodl.fault.HostNotReachable(), TransientError),
    (vim.fault.TaskInProgress(), TransientError),
    (vim.fault.DuplicateName(), VMExists),  # permanent, and adopted when it is the clone asked for
    (vim.fault.FileAlreadyExists(), PermanentError),
    (vmodl.fault.InvalidArgument(), PermanentError),
    (ConnectionRefusedError(111, "Connection refused"), TransientError),
    (socket.timeout("timed out"), TransientError),
    (TimeoutError(), TransientError),
    (ssl.SSLError("bad record"), TransientError),
    (http.client.RemoteDisconnected("closed"), TransientError),
    (http.client.HTTPException("503 Service Unavailable"), TransientError),
    (ssl.SSLCertVerificationError("certificate verify failed"), PermanentError),
    (vmodl.fault.SystemError(reason="boom"), ProviderError),
    (ValueError("unexpected"), ProviderError),
])
def test_translate(exc, expected):
    error = errors.translate(exc, "doing it")
    assert type(error) is expected
    assert str(error).startswith("doing it: ")


def test_not_found_can_mean_a_missing_configured_thing():
    assert type(errors.translate(vim.fault.NotFound(), "cloning", PermanentError)) is PermanentError
    assert type(errors.translate(vim.fault.InvalidLogin(), "cloning", PermanentError)) is PermanentError


def test_messages_carry_the_fault_name_and_useful_text_only():
    assert str(errors.translate(vim.fault.InvalidLogin(msg="Login failure"), "login")) == \
        "login: InvalidLogin: Login failure"
    assert str(errors.translate(vim.fault.NotFound(msg="*types.NotFound"), "x")) == "x: NotFound"
    assert str(errors.translate(ConnectionRefusedError(111, "Connection refused"), "x")) == \
        "x: ConnectionRefusedError: [Errno 111] Connection refused"


def test_provider_errors_pass_through_unchanged():
    original = VMNotFound("gone")
    assert errors.translate(original, "x") is original
    with pytest.raises(TransientError, match="^reading: OSError: down$"):
        with errors.translated("reading"):
            raise OSError("down")


def test_transport_failures_are_the_ones_that_drop_a_connection():
    assert errors.is_transport_failure(ConnectionResetError())
    assert errors.is_transport_failure(vim.fault.NotAuthenticated())
    assert not errors.is_transport_failure(vim.fault.NotFound())
    assert not errors.is_transport_failure(ValueError())


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def _task_reporting(monkeypatch, *states):
    """Make tasks.wait_for_task see the task properties in ``states``, one per poll (then the last)."""
    polls = list(states)
    monkeypatch.setattr(inventory, "properties",
                        lambda content, task, kind, names: polls.pop(0) if len(polls) > 1 else polls[0])


def test_wait_for_task_returns_the_result(monkeypatch):
    _task_reporting(monkeypatch, {"info.state": "queued"}, {"info.state": "running"},
                    {"info.state": "success", "info.result": "vm-1"})
    clock = FakeClock()
    assert tasks.wait_for_task(None, "task", 10, "cloning", clock, clock.sleep) == "vm-1"
    assert clock.now == pytest.approx(0.05 + 0.1)  # polls back off


def test_wait_for_task_raises_the_task_fault(monkeypatch):
    _task_reporting(monkeypatch, {"info.state": "error", "info.error": vim.fault.InvalidPowerState()})
    with pytest.raises(vim.fault.InvalidPowerState):
        tasks.wait_for_task(None, "task", 10, "destroying")


def test_wait_for_task_gives_up_at_the_deadline(monkeypatch):
    _task_reporting(monkeypatch, {"info.state": "running"})
    clock = FakeClock()
    with pytest.raises(TransientError, match="cloning: the task was still running after 5s"):
        tasks.wait_for_task(None, "task", 5, "cloning", clock, clock.sleep)
    assert clock.now == pytest.approx(5)


def test_wait_for_task_notices_a_vanished_task(monkeypatch):
    monkeypatch.setattr(inventory, "properties", lambda *args: None)
    with pytest.raises(TransientError, match="disappeared"):
        tasks.wait_for_task(None, "task", 5, "cloning")
