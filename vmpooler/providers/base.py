"""The provider interface: what the pool manager asks of a virtualisation backend.

Every method is synchronous and may block; the manager calls them only from its bounded
thread pool, never on the IOLoop. Providers know nothing of HTTP or the database: they take a
pool's configuration and a VM name and talk to their backend.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, Mapping, Optional

from vmpooler.config import PoolConfig


class ProviderError(Exception):
    """Base of every error a provider raises. Anything else escaping a provider is a bug."""

    #: the manager retries transient errors with backoff; permanent ones are recorded and not retried
    transient = True


class TransientError(ProviderError):
    """The backend could not do it now (timeout, connection lost, busy); trying later may work."""


class PermanentError(ProviderError):
    """Trying again will not help (missing template, folder or datastore, permission denied)."""

    transient = False


class VMNotFound(PermanentError):
    """The VM does not exist in the backend."""


class CircuitOpen(TransientError):
    """The provider's circuit breaker is open: the backend failed repeatedly and is given a rest."""


@dataclasses.dataclass
class VMInfo:
    """What a backend reports about one VM."""

    name: str
    powered_on: bool = True
    ip: Optional[str] = None
    hostname: Optional[str] = None
    template: Optional[str] = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class Provider(abc.ABC):
    """Base class of providers.

    ``name`` is the provider's key under ``:providers:``; ``options`` that section's mapping;
    ``settings`` the global ``:config:`` mapping (domain, create_folders, ... live there).
    """

    #: keys this provider reads from its ``:providers: <name>:`` section (others are warned about)
    PROVIDER_KEYS: frozenset = frozenset({"provider_class"})
    #: pool keys this provider reads beyond the core ones (others are warned about)
    POOL_KEYS: frozenset = frozenset()

    def __init__(self, name: str, options: Mapping[str, Any], settings: Mapping[str, Any]):
        self.name = name
        self.options = dict(options or {})
        self.settings = dict(settings or {})

    # -- configuration -------------------------------------------------------------------
    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> list:
        """Problems in the provider section, each a message naming its key. Empty when valid."""
        return []

    @classmethod
    def validate_pool(cls, pool: Mapping[str, Any]) -> list:
        """Problems in a pool that uses this provider, each a message naming its key."""
        return []

    # -- the operations ------------------------------------------------------------------
    @abc.abstractmethod
    def list_vms(self, pool: PoolConfig) -> list:
        """Every VM in the pool's folder, as ``VMInfo``. Must be complete or raise: the manager
        destroys what it finds here and forgets what it does not, so a partial list is a lie."""

    @abc.abstractmethod
    def create_vm(self, pool: PoolConfig, name: str) -> VMInfo:
        """Clone the pool's template as ``name`` and power it on. Returns once the clone exists;
        booting is observed later through ``is_ready``."""

    @abc.abstractmethod
    def is_ready(self, pool: PoolConfig, name: str) -> bool:
        """A cheap, non-waiting probe: has the VM booted far enough to be handed out?"""

    @abc.abstractmethod
    def get_vm(self, pool: PoolConfig, name: str) -> Optional[VMInfo]:
        """The VM's details, or None when it does not exist."""

    @abc.abstractmethod
    def destroy_vm(self, pool: PoolConfig, name: str) -> None:
        """Power off and delete the VM. A VM that is already gone counts as destroyed."""

    @abc.abstractmethod
    def create_snapshot(self, pool: PoolConfig, name: str, snapshot: str) -> None:
        """Take a snapshot named ``snapshot``."""

    @abc.abstractmethod
    def revert_snapshot(self, pool: PoolConfig, name: str, snapshot: str) -> None:
        """Revert the VM to the snapshot named ``snapshot`` (VMNotFound if there is none)."""

    @abc.abstractmethod
    def create_disk(self, pool: PoolConfig, name: str, size_gb: int) -> None:
        """Add a new disk of ``size_gb`` GB to the VM."""

    def purge_unconfigured(self, pools: list) -> list:
        """Destroy VMs and folders under the pools' base folders that no pool uses (optional).
        Returns the names of what was removed."""
        return []

    def health(self) -> Mapping[str, Any]:
        """Provider-level health for /status (circuit breaker state and the like)."""
        return {}

    def close(self) -> None:
        """Release connections; called once at shutdown."""
