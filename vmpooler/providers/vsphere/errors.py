"""Mapping what pyVmomi, the network and TLS raise onto the provider's typed errors.

The manager retries a ``TransientError`` with backoff and records a ``PermanentError``, so the
split matters: a lost connection must not fail a clone for good, and a missing template must not
be retried forever.
"""
from __future__ import annotations

import http.client
import socket
import ssl
from typing import Optional, Type

from pyVmomi import vim, vmodl

from vmpooler.providers.base import PermanentError, ProviderError, TransientError, VMExists, VMNotFound
from vmpooler.providers.shared import translating

# Order matters: NotAuthenticated is a NoPermission, and an expired session is worth a retry
# (the connection pool logs in again), unlike a missing privilege.
_FAULTS = (
    (vim.fault.NotAuthenticated, TransientError),
    (vim.fault.InvalidLogin, PermanentError),
    (vim.fault.NoPermission, PermanentError),
    (vmodl.fault.ManagedObjectNotFound, VMNotFound),
    (vim.fault.NotFound, VMNotFound),
    (vmodl.fault.HostCommunication, TransientError),
    (vmodl.fault.RequestCanceled, TransientError),
    (vim.fault.TaskInProgress, TransientError),
    (vim.fault.Timedout, TransientError),
    (vim.fault.HostConnectFault, TransientError),
    (vim.fault.DuplicateName, VMExists),
    (vim.fault.AlreadyExists, PermanentError),
    (vim.fault.FileFault, PermanentError),
    (vim.fault.InvalidName, PermanentError),
    (vmodl.fault.InvalidArgument, PermanentError),
    (vmodl.fault.NotSupported, PermanentError),
)

# A certificate that does not verify will not verify on the next try either.
_PERMANENT_TRANSPORT = (ssl.SSLCertVerificationError,)
# Anything that says the wire, not the request, failed.
_TRANSIENT_TRANSPORT = (OSError, ssl.SSLError, http.client.HTTPException, socket.timeout, TimeoutError,
                        EOFError)


def describe(exc: BaseException) -> str:
    """A one-line description of ``exc``. Faults carry their WSDL name; the simulator's ``msg`` is
    often just the Go type (``*types.X``), which adds nothing to that name."""
    if isinstance(exc, vmodl.MethodFault):
        name = exc._wsdlName
        message = getattr(exc, "msg", None) or ""
        if not message or message.startswith("*types."):
            return name
        return f"{name}: {message}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def is_transport_failure(exc: BaseException) -> bool:
    """True when the connection that raised ``exc`` should be dropped and opened anew."""
    return isinstance(exc, _TRANSIENT_TRANSPORT + (vim.fault.NotAuthenticated,))


def translate(exc: BaseException, what: str, not_found: Optional[Type[ProviderError]] = None) -> ProviderError:
    """``exc`` as a ProviderError whose message starts with ``what`` (the operation and its
    object). ``not_found`` replaces VMNotFound for lookups of other things (a template, say)."""
    if isinstance(exc, ProviderError):
        return exc
    message = f"{what}: {describe(exc)}"
    if isinstance(exc, vmodl.MethodFault):
        for fault, error in _FAULTS:
            if isinstance(exc, fault):
                return (not_found if error is VMNotFound and not_found is not None else error)(message)
        return ProviderError(message)
    if isinstance(exc, _PERMANENT_TRANSPORT):
        return PermanentError(f"{message} (set insecure: true to skip verification)")
    if isinstance(exc, _TRANSIENT_TRANSPORT):
        return TransientError(message)
    return ProviderError(message)


def translated(what: str, not_found: Optional[type] = None):
    """Run the block, re-raising whatever it raises as a ProviderError (see ``translate``)."""
    return translating(translate, what, not_found)
