"""Every ``:config:`` key with its type, default and meaning, and the coercion of raw values.

``Settings`` below is the one place for the core keys: one declared field per key, its type
annotation saying what the value is (``int``, ``float`` for "a number", ``bool``, ``str``,
``tuple`` for a list of strings, ``dict``; ``Optional[...]`` when it may be unset), its default,
and ``setting(...)`` metadata carrying the doc text, the environment variable and the bounds. The
loader reads it (``SETTINGS``, the rows derived from the fields), the example file and
docs/configuration.md document it (a test keeps them in step), and the service reads the values
as attributes (``config.settings.task_limit``).

To add a key: add one field to ``Settings`` (``my_key: int = setting(3, "What it does.",
env="MY_KEY", minimum=1)``), then document it in vmpooler.yaml.example and docs/configuration.md
(tests/unit/test_config.py fails until you do). Nothing else needs to change.

Keys that only one provider reads are that provider's (its ``config.py``, e.g. vSphere's
``create_folders``), declared as ``Setting`` rows.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, Optional

#: the kinds of value a key may hold, by the Python type its field declares
KINDS = {int: "int", float: "number", bool: "bool", str: "str", tuple: "list", dict: "dict"}


@dataclasses.dataclass(frozen=True)
class Setting:
    """One key: what the loader checks and documents. Core keys get theirs from ``Settings``'s
    fields; providers declare their own keys as rows."""

    key: str
    kind: str  # int | number | bool | str | list | dict
    default: Any
    doc: str
    env: Optional[str] = None
    minimum: Optional[float] = None
    maximum: Optional[float] = None


def setting(default: Any, doc: str, env: Optional[str] = None, minimum: Optional[float] = None,
            maximum: Optional[float] = None) -> Any:
    """The field of one key of ``Settings``: its default, and metadata with its doc text,
    environment variable and bounds (its kind comes from the field's type)."""
    metadata = {"doc": doc, "env": env, "minimum": minimum, "maximum": maximum}
    if isinstance(default, (dict, list)):
        frozen = _frozen(default)
        factory = (lambda: dict(frozen)) if isinstance(frozen, dict) else (lambda: frozen)
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _frozen(value):
    """Lists become tuples, so that a frozen Settings holds nothing that can change under it."""
    return tuple(value) if isinstance(value, list) else value


# Times follow the original: minutes for timeout, ready_ttl and vm_checktime; hours for lifetimes
# and data_ttl; seconds for the loop delays. Fractions are allowed so that tests can run the whole
# lifecycle in milliseconds.
@dataclasses.dataclass(frozen=True)
class Settings:
    """Every core ``:config:`` key we read, typed, with its default; frozen. A misspelt key is
    an AttributeError (and a failing test: see tests/unit/test_settings.py), not a KeyError on a
    rare path. Tests override with ``dataclasses.replace(settings, task_limit=1)``."""

    site_name: str = setting("vmpooler", "Title of the dashboard; also in logs and the service banner.",
                             "SITE_NAME")
    task_limit: int = setting(10, "Clones in flight at once, across all pools.", "TASK_LIMIT", 1)
    ondemand_clone_limit: int = setting(10, "On-demand clones in flight at once (they also count against "
                                        "task_limit).", "ONDEMAND_CLONE_LIMIT", 1)
    max_ondemand_instances_per_request: int = setting(10, "Most VMs of one pool or alias an on-demand request "
                                                      "may ask for (403 above).",
                                                      "MAX_ONDEMAND_INSTANCES_PER_REQUEST", 1)
    ondemand_request_ttl: float = setting(5, "Minutes an on-demand request may take to be filled before it fails "
                                          "and its VMs are destroyed.", "ONDEMAND_REQUEST_TTL", 0)
    timeout: float = setting(15, "Minutes a VM may stay pending before it is given up.", "TIMEOUT", 0)
    vm_checktime: float = setting(1, "Minutes between checks of a ready VM.", "VM_CHECKTIME", 0)
    vm_lifetime: float = setting(24, "Hours a checked-out VM lives (0: forever).", "VM_LIFETIME", 0)
    vm_lifetime_auth: Optional[float] = setting(None, "Hours a VM checked out with a token lives.",
                                                "VM_LIFETIME_AUTH", 0)
    max_lifetime_upper_limit: Optional[int] = setting(None, "A PUT lifetime must be below this many hours.",
                                                      "MAX_LIFETIME_UPPER_LIMIT", 1)
    ready_ttl: float = setting(60, "Minutes a VM may sit ready before it is recycled.", "READY_TTL", 0)
    allowed_tags: Optional[tuple] = setting(None, "Tag names a PUT may set (any when unset).")
    domain: Optional[str] = setting(None, "DNS domain of the VMs of pools without a `dns_plugin` (a pool's DNS "
                                    "setup gives its own); added to API answers.", "DOMAIN")
    prefix: str = setting("", "Prefix of generated hostnames.", "PREFIX")
    check_loop_delay_min: float = setting(5, "Seconds between passes of the pool manager.", minimum=0.001)
    check_loop_delay_max: float = setting(60, "Accepted for compatibility; passes run every check_loop_delay_min "
                                          "seconds and are woken early by checkouts and deletes.", minimum=0)
    check_loop_delay_decay: float = setting(2.0, "Accepted for compatibility (see check_loop_delay_max).",
                                            minimum=0)
    clone_attempts: int = setting(3, "Clone attempts for one VM before it is given up.", minimum=1)
    destroy_attempts: int = setting(5, "Destroy attempts for one VM before it is marked failed.", minimum=1)
    task_attempts: int = setting(3, "Attempts of a snapshot, revert or disk task before it fails.", minimum=1)
    retry_backoff: float = setting(2, "Seconds before the first retry of a failed provider call; doubled on each "
                                   "further failure.", minimum=0)
    retry_backoff_max: float = setting(300, "Longest wait between retries, in seconds.", minimum=0)
    provider_threads: int = setting(16, "Threads running provider calls (bounded thread pool).", minimum=1)
    reconcile_interval: float = setting(60, "Seconds between comparisons of each pool's folder in the provider "
                                        "with the database (orphans are destroyed, vanished VMs marked gone).",
                                        minimum=0)
    circuit_breaker_enabled: bool = setting(True, "Stop calling a provider that keeps failing, for a while.")
    circuit_breaker_failure_threshold: int = setting(5, "Consecutive transient failures that open a provider's "
                                                     "circuit breaker.", minimum=1)
    circuit_breaker_timeout: float = setting(30, "Seconds an open breaker waits before letting a trial call "
                                             "through.", minimum=0)
    circuit_breaker_half_open_attempts: int = setting(3, "Successful trial calls that close the breaker.",
                                                      minimum=1)
    max_vm_retries: Optional[int] = setting(None, "3.8.1's name for clone_attempts: clone attempts of one VM before "
                                            "it is given up (its dead letter written); when set it wins.",
                                            minimum=1)
    timeout_notification: Optional[float] = setting(None, "Minutes before a pending VM's timeout to log a WARNING "
                                                    "that it is about to be given up (a pool key may override "
                                                    "it; unset: no warning).", minimum=0)
    purge_unconfigured_resources: bool = setting(False, "Every provider destroys what it made that no configured "
                                                 "pool uses (VMs and folders for vSphere, tagged domains for "
                                                 "libvirt), sparing resources_allowlist; a provider section may "
                                                 "turn it on for that provider alone (2.1).")
    dlq_enabled: bool = setting(True, "Keep every VM that failed (clone given up, pending timeout, ready VM "
                                "unreachable, purged) in the dead-letter queue (GET /dlq, vmpooler dlq). 3.x's "
                                "default is off; ours is on.")
    dlq_ttl: float = setting(168, "Hours a dead-letter queue entry is kept.", minimum=0)
    dlq_max_entries: int = setting(10000, "Most dead-letter queue entries kept; the oldest go first.", minimum=1)
    purge_enabled: bool = setting(False, "Auto-purge: every purge_interval seconds, retire VMs pending longer than "
                                  "max_pending_age or ready longer than max_ready_age (each with its dead letter), "
                                  "and report VMs completed longer than max_completed_age.")
    purge_interval: float = setting(3600, "Seconds between auto-purge passes.", minimum=1)
    purge_dry_run: bool = setting(False, "Auto-purge only logs what it would retire.")
    max_pending_age: float = setting(7200, "Seconds a VM may stay pending before auto-purge retires it.", minimum=1)
    max_ready_age: float = setting(86400, "Seconds a VM may stay ready before auto-purge retires it.", minimum=1)
    max_completed_age: float = setting(3600, "Seconds a VM may wait to be destroyed before auto-purge reports it "
                                       "(its destroy is still retried: destroy_attempts gives it up).", minimum=1)
    max_orphaned_age: float = setting(86400, "Accepted from 3.8.1, where it purges VM records that no queue "
                                      "holds; here a VM's row is its one record, so there are none to purge.",
                                      minimum=1)
    health_check_enabled: bool = setting(True, "Compute queue health (healthy / degraded / unhealthy, from "
                                         "health_thresholds) for /healthcheck?details, the metrics and the "
                                         "dashboard. 3.x's default is off; ours is on.")
    health_check_interval: float = setting(300, "Seconds between queue health computations.", minimum=1)
    health_thresholds: dict = setting({}, "Queue health thresholds, over 3.8.1's defaults: pending_queue_max "
                                      "100, ready_queue_max 500, dlq_max_warning 100, dlq_max_critical 1000, "
                                      "stuck_vm_age_threshold 7200 (seconds), stuck_vm_max_warning 10, "
                                      "stuck_vm_max_critical 50.")
    leader_lease_seconds: float = setting(5, "Seconds the process running the pool manager holds its lease "
                                          "without renewing it; when it dies or hangs, another process sharing "
                                          "the database takes over within about this long.", minimum=0.5)
    shutdown_grace: float = setting(10, "Seconds a stopping service waits for provider calls in flight; what is "
                                    "still running then is abandoned and reconciled at the next start.",
                                    minimum=0)
    data_ttl: float = setting(168, "Hours a destroyed VM's row is kept for GET /vm/<host>.", minimum=0)
    idempotency_key_ttl: float = setting(24, "Hours the answer of a POST /vm, /vm/<pools> or /ondemandvm made "
                                         "with an Idempotency-Key header is kept for a retry with the same key.",
                                         minimum=0.0001)
    check_ready_vm_hostname_for_mismatch: bool = setting(True, "Recycle a ready VM whose reported hostname "
                                                         "differs from its name.")
    experimental_features: bool = setting(False, "Enables the run-time pool configuration routes (POST "
                                          "/config/poolsize, /config/pooltemplate, /config/clonetarget, "
                                          "/poolreset and DELETE /config/poolsize|pooltemplate/<pool>); off: "
                                          "they answer 405.", "EXPERIMENTAL_FEATURES")
    request_logger: bool = setting(False, "Log every API request.", "REQUEST_LOGGER")
    behind_proxy: bool = setting(False, "Take the client address from X-Real-IP / X-Forwarded-For (set it only "
                                 "when a reverse proxy fronts the service; rate limiting keys on that address).")
    max_body_size: int = setting(65536, "Largest request body accepted, in bytes (413 above).", minimum=1)
    http_idle_timeout: float = setting(60, "Seconds a client connection may take to send a request's head "
                                       "(request line and headers), counted from its opening or its previous "
                                       "answer: an idle keep-alive connection, or one sending its headers slowly, "
                                       "is closed after it.", minimum=0.1)
    http_body_timeout: float = setting(60, "Seconds a client may take to send a request's body; its connection "
                                       "is closed after it.", minimum=0.1)
    max_connections: Optional[int] = setting(None, "Most client connections open at once; past it a new one is "
                                             "answered 503 (JSON, Retry-After) and closed. Unset: three quarters of "
                                             "the process's file-descriptor limit (ulimit -n), the rest left to the "
                                             "database, the providers and the log.", minimum=1)
    status_cache_seconds: float = setting(1, "Seconds a /status answer may be reused (0: never), and only until "
                                          "the database changes; dashboards polling it then cost one computation "
                                          "a second at most.", minimum=0)
    rate_limiting_enabled: bool = setting(False, "Limit requests per client in 3.9.1's four classes (limits in "
                                          "the top-level :rate_limits: section; see docs/api.md): 429 past a "
                                          "class's limit.", "RATE_LIMITING_ENABLED")
    auth_failure_limits_enabled: bool = setting(True, "Slow down clients that fail authentication repeatedly "
                                                "(auth_failures_per_minute, auth_token_failures_per_minute).")
    auth_failures_per_minute: int = setting(10, "Wrong passwords for one user name from one address per minute "
                                            "before that user's logins from that address are 429 (other users "
                                            "and tokens are not affected).", minimum=1)
    auth_token_failures_per_minute: int = setting(600, "Wrong tokens from one address per minute before further "
                                                  "wrong tokens are answered 429 instead of 401 (a coarse guard; a "
                                                  "valid token is never refused).", minimum=1)


def _kind(annotation) -> str:
    """The kind of a field's declared type (``Optional[X]`` is X's)."""
    options = [option for option in typing.get_args(annotation) if option is not type(None)] \
        if typing.get_origin(annotation) is typing.Union else [annotation]
    if len(options) != 1:
        raise TypeError(f"a setting has one type (or Optional of one), not {annotation!r}")
    python_type = typing.get_origin(options[0]) or options[0]
    if python_type not in KINDS:
        raise TypeError(f"a setting's type is one of {sorted(t.__name__ for t in KINDS)}, not {annotation!r}")
    return KINDS[python_type]


def _rows(cls) -> list:
    """The ``Setting`` row of each field of ``cls``, in declaration order."""
    hints = typing.get_type_hints(cls)
    rows = []
    for field in dataclasses.fields(cls):
        default = field.default
        if field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        rows.append(Setting(field.name, _kind(hints[field.name]), default, field.metadata["doc"],
                            field.metadata["env"], field.metadata["minimum"], field.metadata["maximum"]))
    return rows


#: every core key as a row, for the loader and the documentation checks
SETTINGS = _rows(Settings)
SETTINGS_BY_KEY = {s.key: s for s in SETTINGS}

# Keys of the original that do not apply here: accepted, warned about, ignored.
IGNORED_SETTINGS = {
    "logfile": "logs go to stderr",
    "migration_limit": "no migration at checkout",
    "usage_stats": "no statsd metrics",
    "backend_weight": "no weighted alias selection",
    "manage_host_selection": "vCenter chooses the host",
    "host_selection_max_age": "vCenter chooses the host",
    "utilization_limit": "vCenter chooses the host",
    "extra_config": "use one file",
}
IGNORED_SECTIONS = {"redis": "the database replaces redis", "statsd": "no statsd metrics",
                    "graphite": "no graphite metrics", "graphs": "no dashboard", "tracing": "no tracing"}
KNOWN_SECTIONS = {"config", "pools", "providers", "dns_configs", "auth", "tagfilter", "database", "prometheus",
                  "rate_limits"}


# -- coercion ------------------------------------------------------------------------------
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0", ""}


def coerce(kind: str, value: Any):
    """The value as ``kind``, or raise ValueError with a message for humans."""
    if value is None:
        return None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"must be true or false, not {value!r}")
    if kind in ("int", "number"):
        if isinstance(value, bool):
            raise ValueError(f"must be a number, not {value!r}")
        try:
            number = float(value) if kind == "number" else int(str(value).strip())
        except (TypeError, ValueError):
            raise ValueError(f"must be {'an integer' if kind == 'int' else 'a number'}, not {value!r}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"must be a finite number, not {value!r}")
        return number
    if kind == "str":
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"must be a string, not {value!r}")
    if kind == "list":
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
            return [str(v) for v in value]
        raise ValueError(f"must be a list of strings, not {value!r}")
    if kind == "dict":
        if isinstance(value, dict):
            return value
        raise ValueError(f"must be a mapping, not {value!r}")
    raise AssertionError(kind)


def mapping_of(value, where: str, problems: list) -> dict:
    """``value`` when it is a mapping; {} when unset, or (a problem naming ``where``) when it is
    something else."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{where}: must be a mapping, not {type(value).__name__}")
        return {}
    return value


def check_setting(row: Setting, value, where: str, problems: list):
    try:
        value = coerce(row.kind, value)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return row.default
    if value is not None and row.minimum is not None and value < row.minimum:
        problems.append(f"{where}: must be at least {row.minimum:g}, not {value!r}")
        return row.default
    if value is not None and row.maximum is not None and value > row.maximum:
        problems.append(f"{where}: must be at most {row.maximum:g}, not {value!r}")
        return row.default
    return value


def read_settings(rows, mapping, problems: list, where: str = "", environ=None) -> dict:
    """``{key: typed value}`` for each Setting row: the environment variable (when ``environ`` is
    given and has it) over ``mapping``'s value over the row's default. Problems name the key as
    ``<where><key>`` (``where`` is a prefix such as ``config.``), or the variable."""
    values = {}
    for row in rows:
        if environ is not None and row.env and environ.get(row.env) is not None:
            value = check_setting(row, environ[row.env], f"{row.env} (environment, for {where}{row.key})", problems)
        else:
            value = check_setting(row, mapping.get(row.key), f"{where}{row.key}", problems)
        values[row.key] = row.default if value is None else value
    return values


def build_settings(values) -> Settings:
    """Settings from ``{key: value}`` (typed values, as read_settings gives them); a missing key
    takes its default, an unknown one is a TypeError. Tests override with
    ``dataclasses.replace(settings, task_limit=1)`` or through tests.conftest.make_config."""
    return Settings(**{key: _frozen(value) for key, value in values.items()})


# -- unknown keys ------------------------------------------------------------------------------
def unknown_key(where: str, key: str, known) -> str:
    """The warning for a key no one reads, e.g. ``config.vm_lifetme is not a known key; ignored
    (did you mean vm_lifetime?)``: ``where`` is the section's path (``config``, ``pools[web]``; empty
    for a section itself), ``known`` the keys that would have been read there. Shared by every
    section's check so that each misspelling is told the same way."""
    path = f"{where}.{key}" if where else key
    return f"{path} is not a known key; ignored{did_you_mean(key, known)}"


def did_you_mean(key: str, known) -> str:
    """`` (did you mean vm_lifetime?)`` when ``key`` looks like a misspelling of one of ``known``, else ''."""
    close = difflib.get_close_matches(str(key), sorted({str(name) for name in known}), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""
