"""Mapping libvirt's errors onto the provider's typed errors.

The manager retries a ``TransientError`` with backoff and records a ``PermanentError``: a
restarting libvirtd must not fail a clone for good, and a missing template must not be retried
forever. libvirt says which is which through an error code and the part that raised it.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Optional

import libvirt

from vmpooler.providers.base import PermanentError, ProviderError, TransientError, VMExists, VMNotFound
from vmpooler.providers.shared import translating


def _quiet(_context, _error) -> None:
    """libvirt prints every error on stderr by default; ours are raised and logged instead."""


libvirt.registerErrorHandler(_quiet, None)


class ConnectionLost(TransientError):
    """The connection died under the call (libvirtd restarted, keepalive timed out)."""

    @property
    def unanswered(self) -> bool:
        """The hypervisor stopped answering (rather than closing the connection): a new
        connection would wait on it as well."""
        return "keepalive" in str(self)


def _codes(*names: str) -> frozenset:
    """The codes this libvirt-python knows (older versions lack a few)."""
    return frozenset(getattr(libvirt, name) for name in names if hasattr(libvirt, name))


#: the connection, not the request, failed: drop it and open another
CONNECTION_LOST = _codes("VIR_ERR_SYSTEM_ERROR", "VIR_ERR_RPC", "VIR_ERR_NO_CONNECT", "VIR_ERR_INVALID_CONN")
_CONNECTION_PARTS = _codes("VIR_FROM_RPC", "VIR_FROM_REMOTE")
NOT_FOUND = _codes("VIR_ERR_NO_DOMAIN", "VIR_ERR_NO_DOMAIN_SNAPSHOT")
_PERMANENT = _codes(
    "VIR_ERR_AUTH_FAILED", "VIR_ERR_AUTH_CANCELLED", "VIR_ERR_AUTH_UNAVAILABLE", "VIR_ERR_OPERATION_DENIED",
    "VIR_ERR_ACCESS_DENIED", "VIR_ERR_NO_STORAGE_POOL", "VIR_ERR_NO_STORAGE_VOL", "VIR_ERR_NO_NETWORK",
    "VIR_ERR_XML_ERROR", "VIR_ERR_XML_DETAIL", "VIR_ERR_CONFIG_UNSUPPORTED", "VIR_ERR_INVALID_ARG",
    "VIR_ERR_NO_SUPPORT", "VIR_ERR_STORAGE_VOL_EXIST", "VIR_ERR_INVALID_DOMAIN",
    "VIR_ERR_INVALID_STORAGE_POOL", "VIR_ERR_NO_SECURITY_MODEL", "VIR_ERR_STORAGE_PROBE_FAILED",
    "VIR_ERR_SNAPSHOT_REVERT_RISKY", "VIR_ERR_MIGRATE_PERSIST_FAILED")
_TRANSIENT = _codes("VIR_ERR_OPERATION_TIMEOUT", "VIR_ERR_AGENT_UNRESPONSIVE", "VIR_ERR_OPERATION_FAILED",
                    "VIR_ERR_OPERATION_INVALID", "VIR_ERR_RESOURCE_BUSY", "VIR_ERR_AGENT_UNSYNCED")


def connection_lost(exc: BaseException) -> bool:
    """True when the connection that raised ``exc`` should be dropped and opened anew."""
    if not isinstance(exc, libvirt.libvirtError):
        return isinstance(exc, (OSError, EOFError))
    if exc.get_error_domain() in _CONNECTION_PARTS:
        return True
    # an internal error is a lost connection only when the message says so ("client socket is closed")
    if exc.get_error_code() == getattr(libvirt, "VIR_ERR_INTERNAL_ERROR", -1):
        return "closed" in str(exc) or "connection" in str(exc).lower()
    return exc.get_error_code() in CONNECTION_LOST


def is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, libvirt.libvirtError) and exc.get_error_code() in NOT_FOUND


def translate(exc: BaseException, what: str, not_found: Optional[type] = None) -> ProviderError:
    """``exc`` as a ProviderError whose message starts with ``what``. ``not_found`` replaces
    VMNotFound for lookups of other things (a template, a snapshot)."""
    if isinstance(exc, ProviderError):
        return exc
    message = f"{what}: {exc}"
    if not isinstance(exc, libvirt.libvirtError):
        if isinstance(exc, (OSError, EOFError, TimeoutError)):
            return ConnectionLost(message)
        if isinstance(exc, (ValueError, ET.ParseError)):  # a definition we cannot make sense of
            return PermanentError(message)
        return ProviderError(message)
    code = exc.get_error_code()
    if code in NOT_FOUND:
        return (not_found or VMNotFound)(message)
    if code == libvirt.VIR_ERR_DOM_EXIST:
        return VMExists(message)
    if connection_lost(exc):
        return ConnectionLost(message)
    if code in _TRANSIENT:
        return TransientError(message)
    if code in _PERMANENT:
        return PermanentError(message)
    return ProviderError(message)


def translated(what: str, not_found: Optional[type] = None):
    """Run the block, re-raising whatever it raises as a ProviderError (see ``translate``)."""
    return translating(translate, what, not_found)
