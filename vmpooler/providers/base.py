"""The provider interface: what the pool manager asks of a virtualisation backend.

Every method is synchronous and may block; the manager calls them only from its bounded
thread pool, never on the IOLoop. Providers know nothing of HTTP or the database: they take a
pool's configuration and a VM name and talk to their backend.

Each provider class has a configuration (``ProviderSchema``, in its package's ``config.py``) that
declares the keys it reads and turns them into typed options at load time. The registry loads
it without the provider itself, so checking a file needs none of the backends' libraries.
"""
from __future__ import annotations

import abc
from typing import Any, Mapping, Optional, Union

from vmpooler.model import NotReady, PoolConfig, VMInfo


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


class VMExists(PermanentError):
    """A VM of the name asked for exists already: an answer of a working backend (not counted
    against its circuit breaker). The manager adopts it when it is the clone it asked for (an
    earlier attempt whose answer was lost, e.g. when the database could not record it)."""


class CircuitOpen(TransientError):
    """The provider's circuit breaker is open: the backend failed repeatedly and is given a rest."""


class ProviderSchema:
    """What the configuration loader asks of a provider class: the keys it reads and their
    parsing into typed options, once, at load time. Problems are appended to ``problems`` as
    messages naming the key (``server: required``); the loader prefixes where the key is."""

    #: keys of its ``:providers: <name>:`` section (others are warned about)
    PROVIDER_KEYS: frozenset = frozenset({"provider_class"})
    #: ``:config:`` keys it reads, as vmpooler.settings.Setting rows (type, default, variable)
    GLOBAL_SETTINGS: tuple = ()
    #: pool keys it reads beyond the core ones, as Setting rows
    POOL_SETTINGS: tuple = ()

    def provider_options(self, section: Mapping[str, Any], values: Mapping[str, Any], settings,
                         problems: list) -> Any:
        """The typed options of one provider section. ``values`` holds its GLOBAL_SETTINGS as
        loaded (defaults applied), ``settings`` the core settings."""
        return None

    def pool_options(self, pool: Mapping[str, Any], options: Any, problems: list) -> Any:
        """The typed options of a pool served by a provider whose options are ``options``."""
        return None


class Provider(abc.ABC):
    """Base class of providers: ``name`` is the provider's key under ``:providers:``,
    ``options`` what its ProviderSchema made of that section."""

    #: True when every call returns at once, never waiting (no I/O, no sleep): the manager then
    #: calls it on the IOLoop rather than handing each call to the thread pool and back
    answers_at_once: bool = False

    def __init__(self, name: str, options: Any):
        self.name = name
        self.options = options

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
    def is_ready(self, pool: PoolConfig, name: str) -> Union[bool, NotReady]:
        """A cheap, non-waiting probe: has the VM booted far enough to be handed out? ``True``,
        or a false answer: ``NotReady(why)`` (preferred: the pending timeout reports the cause) or
        ``False``."""

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
