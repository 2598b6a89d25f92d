"""The value types every layer shares: a pool's configuration, what a provider reports about a VM,
the states of VMs and tasks, and the kinds of task.

A leaf: it imports nothing of vmpooler's, so that config, db, manager, api and the providers can
all depend on it without depending on each other. The states are ``str`` enums whose values are
the strings stored in the database: a row read back compares equal to its member, and a member
renders as its value in SQL parameters, JSON and log lines.
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Any, Mapping, Optional


class _Text(str, enum.Enum):
    """A ``str`` enum that prints as its value (what ``enum.StrEnum`` does from Python 3.11)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class VMState(_Text):
    """The states of a VM row (see docs/architecture.md). Cloning and booting are both pending:
    cloning until ``cloned_at`` is set."""

    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    COMPLETED = "completed"
    DESTROYED = "destroyed"
    GONE = "gone"
    FAILED = "failed"


PENDING, READY, RUNNING, COMPLETED = VMState.PENDING, VMState.READY, VMState.RUNNING, VMState.COMPLETED
DESTROYED, GONE, FAILED = VMState.DESTROYED, VMState.GONE, VMState.FAILED
#: a VM in one of these may exist in its provider (and holds its hostname)
LIVE_STATES = (PENDING, READY, RUNNING, COMPLETED)
ALL_STATES = LIVE_STATES + (DESTROYED, GONE, FAILED)


class TaskKind(_Text):
    """Work on a VM that the API queues and the manager carries out through the provider."""

    SNAPSHOT = "snapshot"
    REVERT = "revert"
    DISK = "disk"


class TaskState(_Text):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


QUEUED, TASK_RUNNING, DONE, TASK_FAILED = TaskState.QUEUED, TaskState.RUNNING, TaskState.DONE, TaskState.FAILED


class RequestState(_Text):
    """The states of an on-demand request: pending until handed over (ready), or failed or deleted."""

    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"
    DELETED = "deleted"


OD_PENDING, OD_READY, OD_FAILED, OD_DELETED = (RequestState.PENDING, RequestState.READY, RequestState.FAILED,
                                               RequestState.DELETED)


@dataclasses.dataclass(frozen=True)
class PoolConfig:
    """One pool as configured, with the global defaults applied by the loader.

    ``provider_options`` holds what its provider reads of the pool (vSphere: folder, datastore,
    ...), typed once at load time by the provider's configuration; ``raw`` is the pool mapping as
    written, for showing the configuration back. ``domain`` is the one place a pool's DNS domain
    is read from: its DNS setup's (``dns_plugin``, a name under ``:dns_configs:``), else the
    global ``:config: domain``; None when neither is set (hostnames are then bare).
    """

    name: str
    template: str
    size: int
    provider: str
    timeout: float
    ready_ttl: float
    check_hostname_for_mismatch: bool
    alias: tuple = ()
    provider_options: Any = None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, hash=False)
    dns_plugin: Optional[str] = None
    domain: Optional[str] = None

    def fqdn(self, name: str) -> str:
        """``<name>.<domain>``, or ``name`` when the pool has no domain."""
        return f"{name}.{self.domain}" if self.domain else name


@dataclasses.dataclass(frozen=True)
class DnsConfig:
    """One entry of ``:dns_configs:``: its name (what pools name as ``dns_plugin``), the plugin
    class serving it (``dns_class``), its domain, and its options typed by that class's schema
    (``raw`` is the section as written)."""

    name: str
    dns_class: str
    domain: str
    options: Any = None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, hash=False)


@dataclasses.dataclass(frozen=True)
class ProviderConfig:
    """One entry of ``:providers:``: its name, the class that serves it, and its options typed by
    that class's configuration (``raw`` is the section as written)."""

    name: str
    provider_class: str
    options: Any
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, hash=False)


@dataclasses.dataclass
class VMInfo:
    """What a backend reports about one VM."""

    name: str
    powered_on: bool = True
    ip: Optional[str] = None
    hostname: Optional[str] = None
    template: Optional[str] = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
