"""The value types every layer shares: a pool's configuration, what a provider reports about a VM,
the states of VMs and tasks, and the kinds of task.

A leaf: it imports nothing of vmpooler's, so that config, db, manager, api and the providers can
all depend on it without depending on each other. The states are ``str`` enums whose values are
the strings stored in the database: a row read back compares equal to its member, and a member
renders as its value in SQL parameters, JSON and log lines.
"""
from __future__ import annotations

import dataclasses
import datetime
import enum
from typing import Any, Mapping, Optional, Protocol, Union


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


class AttemptKind(_Text):
    """Provider work the manager retries (manager/retry.py) and keeps a count of attempts for.
    Each kind carries where its row counts attempts (``column``), the state its row is in while
    the work is due, which guards every change a failed attempt makes (``works_on``; a clone's
    guard also wants it still cloning: db/vm_statements.ATTEMPT_GUARDS), and the state its row is
    left in when the work is given up (``gives_up_to``)."""

    column: str
    works_on: Union[VMState, TaskState]
    gives_up_to: Union[VMState, TaskState]

    def __new__(cls, value: str, column: str, works_on, gives_up_to) -> "AttemptKind":
        member = str.__new__(cls, value)
        member._value_ = value
        member.column, member.works_on, member.gives_up_to = column, works_on, gives_up_to
        return member

    CLONE = ("clone", "clone_attempts", VMState.PENDING, VMState.COMPLETED)  # a half-made clone is destroyed
    DESTROY = ("destroy", "destroy_attempts", VMState.COMPLETED, VMState.FAILED)  # an operator must look
    TASK = ("task", "attempts", TaskState.RUNNING, TaskState.FAILED)


@dataclasses.dataclass(frozen=True)
class Retry:
    """What follows a failed attempt (manager/retry.RetryPolicy.after): the work's new count of
    attempts, when to try again (None: give up), and whether the call was refused by the
    provider's open circuit breaker (no attempt: the count is unchanged and the work waits)."""

    attempts: int
    at: Optional[datetime.datetime]
    waits_for_breaker: bool = False

    @property
    def gives_up(self) -> bool:
        return self.at is None


class BreakerState(_Text):
    """The states of a provider's circuit breaker (manager/breaker.py), also its metric's labels."""

    CLOSED = "closed"  # calls go through
    OPEN = "open"  # calls are refused at once
    HALF_OPEN = "half-open"  # trial calls go through


class DeadLetterQueue(_Text):
    """Where a VM was when it failed, as 3.8.1's dead-letter queue names it (``queue_from``)."""

    CLONE = "clone"  # its clone was given up
    PENDING = "pending"  # it timed out booting, or was purged while pending
    READY = "ready"  # its check found it unreachable, or it was purged while ready


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """Why a VM failed, recorded in the dead-letter queue with the transition that retired it."""

    queue_from: DeadLetterQueue
    error_class: str  # the error's kind: an exception class name, or Timeout, Purge, Unreachable
    message: str
    retry_count: Optional[int] = None  # attempts made (default: the VM's clone attempts)


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
    #: minutes before ``timeout`` to warn that a pending VM is about to be given up (None: never)
    timeout_notification: Optional[float] = None
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
    #: this provider's circuit breaker settings (3.9.0's per-provider ``circuit_breaker_*``), over
    #: the global ones: {setting name: value} of those its section sets
    breaker: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, hash=False)


class VMRow(Protocol):
    """A row of the ``vms`` table as the state layer reads it (SQLAlchemy's row or a prepared
    statement's), by attribute: one per column (tests/db/test_state_layer.py keeps them in step)."""

    id: int
    name: str
    live_name: Optional[str]
    pool: str
    provider: str
    template: str
    state: str
    state_changed_at: datetime.datetime
    created_at: datetime.datetime
    cloned_at: Optional[datetime.datetime]
    ready_at: Optional[datetime.datetime]
    checked_at: Optional[datetime.datetime]
    checkout_at: Optional[datetime.datetime]
    expires_at: Optional[datetime.datetime]
    completed_at: Optional[datetime.datetime]
    destroyed_at: Optional[datetime.datetime]
    lifetime: Optional[float]
    token_hash: Optional[str]
    token_user: Optional[str]
    clone_attempts: int
    destroy_attempts: int
    next_attempt_at: Optional[datetime.datetime]
    last_error: Optional[str]
    ip: Optional[str]
    want_id: Optional[int]


@dataclasses.dataclass
class VMInfo:
    """What a backend reports about one VM."""

    name: str
    powered_on: bool = True
    ip: Optional[str] = None
    hostname: Optional[str] = None
    template: Optional[str] = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class NotReady:
    """What ``Provider.is_ready`` may answer for a VM not ready yet instead of ``False``: false
    all the same, and saying why (no guest address yet, its port not open), so that a VM dropped
    after its pending timeout is logged and recorded with the cause."""

    reason: str

    def __bool__(self) -> bool:
        return False


def why_not_ready(answer) -> Optional[str]:
    """The reason an ``is_ready`` answer gives, None when it gives none (``False``) or is ready."""
    return answer.reason if isinstance(answer, NotReady) else None
