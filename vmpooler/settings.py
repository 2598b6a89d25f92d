"""Every ``:config:`` key with its type, default and meaning, and the coercion of raw values.

This table is the one place for the core keys' defaults: the loader applies it, the example file
and docs/configuration.md document it (a test keeps them in step). Keys that only one provider
reads are that provider's (its ``config.py``, e.g. vSphere's ``create_folders``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional


@dataclasses.dataclass(frozen=True)
class Setting:
    key: str
    kind: str  # int | number | bool | str | list | dict
    default: Any
    doc: str
    env: Optional[str] = None
    minimum: Optional[float] = None


# Every :config: key we read. Times follow the original: minutes for timeout, ready_ttl and
# vm_checktime; hours for lifetimes and data_ttl; seconds for the loop delays. Fractions are
# allowed so that tests can run the whole lifecycle in milliseconds.
SETTINGS = [
    Setting("site_name", "str", "vmpooler", "Title of the dashboard; also in logs and the service banner.",
            "SITE_NAME"),
    Setting("task_limit", "int", 10, "Clones in flight at once, across all pools.", "TASK_LIMIT", 1),
    Setting("ondemand_clone_limit", "int", 10, "On-demand clones in flight at once (they also count "
            "against task_limit).", "ONDEMAND_CLONE_LIMIT", 1),
    Setting("max_ondemand_instances_per_request", "int", 10, "Most VMs of one pool or alias an on-demand "
            "request may ask for (403 above).", "MAX_ONDEMAND_INSTANCES_PER_REQUEST", 1),
    Setting("ondemand_request_ttl", "number", 5, "Minutes an on-demand request may take to be filled before "
            "it fails and its VMs are destroyed.", "ONDEMAND_REQUEST_TTL", 0),
    Setting("timeout", "number", 15, "Minutes a VM may stay pending before it is given up.", "TIMEOUT", 0),
    Setting("vm_checktime", "number", 1, "Minutes between checks of a ready VM.", "VM_CHECKTIME", 0),
    Setting("vm_lifetime", "number", 24, "Hours a checked-out VM lives (0: forever).", "VM_LIFETIME", 0),
    Setting("vm_lifetime_auth", "number", None, "Hours a VM checked out with a token lives.",
            "VM_LIFETIME_AUTH", 0),
    Setting("max_lifetime_upper_limit", "int", None,
            "A PUT lifetime must be below this many hours.", "MAX_LIFETIME_UPPER_LIMIT", 1),
    Setting("ready_ttl", "number", 60, "Minutes a VM may sit ready before it is recycled.", "READY_TTL", 0),
    Setting("allowed_tags", "list", None, "Tag names a PUT may set (any when unset)."),
    Setting("domain", "str", None, "DNS domain of the VMs; added to API answers.", "DOMAIN"),
    Setting("prefix", "str", "", "Prefix of generated hostnames.", "PREFIX"),
    Setting("check_loop_delay_min", "number", 5, "Seconds between passes of the pool manager.", None, 0.001),
    Setting("check_loop_delay_max", "number", 60, "Accepted for compatibility; passes run every "
            "check_loop_delay_min seconds and are woken early by checkouts and deletes.", None, 0),
    Setting("check_loop_delay_decay", "number", 2.0, "Accepted for compatibility (see check_loop_delay_max).",
            None, 0),
    Setting("clone_attempts", "int", 3, "Clone attempts for one VM before it is given up.", None, 1),
    Setting("destroy_attempts", "int", 5, "Destroy attempts for one VM before it is marked failed.", None, 1),
    Setting("task_attempts", "int", 3, "Attempts of a snapshot, revert or disk task before it fails.", None, 1),
    Setting("retry_backoff", "number", 2, "Seconds before the first retry of a failed provider call; "
            "doubled on each further failure.", None, 0),
    Setting("retry_backoff_max", "number", 300, "Longest wait between retries, in seconds.", None, 0),
    Setting("provider_threads", "int", 16, "Threads running provider calls (bounded thread pool).", None, 1),
    Setting("reconcile_interval", "number", 60, "Seconds between comparisons of each pool's folder in the "
            "provider with the database (orphans are destroyed, vanished VMs marked gone).", None, 0),
    Setting("circuit_breaker_enabled", "bool", True, "Stop calling a provider that keeps failing, for a while."),
    Setting("circuit_breaker_failure_threshold", "int", 5, "Consecutive transient failures that open a "
            "provider's circuit breaker.", None, 1),
    Setting("circuit_breaker_timeout", "number", 30, "Seconds an open breaker waits before letting a trial "
            "call through.", None, 0),
    Setting("circuit_breaker_half_open_attempts", "int", 3, "Successful trial calls that close the breaker.",
            None, 1),
    Setting("leader_lease_seconds", "number", 5, "Seconds the process running the pool manager holds its lease "
            "without renewing it; when it dies or hangs, another process sharing the database takes over "
            "within about this long.", None, 0.5),
    Setting("shutdown_grace", "number", 10, "Seconds a stopping service waits for provider calls in flight; "
            "what is still running then is abandoned and reconciled at the next start.", None, 0),
    Setting("data_ttl", "number", 168, "Hours a destroyed VM's row is kept for GET /vm/<host>.", None, 0),
    Setting("check_ready_vm_hostname_for_mismatch", "bool", True,
            "Recycle a ready VM whose reported hostname differs from its name."),
    Setting("experimental_features", "bool", False, "Enables the run-time pool configuration routes (POST "
            "/config/poolsize, /config/pooltemplate, /config/clonetarget, /poolreset and DELETE "
            "/config/poolsize|pooltemplate/<pool>); off: they answer 405.", "EXPERIMENTAL_FEATURES"),
    Setting("request_logger", "bool", False, "Log every API request.", "REQUEST_LOGGER"),
    Setting("behind_proxy", "bool", False, "Take the client address from X-Real-IP / X-Forwarded-For (set it "
            "only when a reverse proxy fronts the service; rate limiting keys on that address)."),
    Setting("max_body_size", "int", 65536, "Largest request body accepted, in bytes (413 above).", None, 1),
    Setting("status_cache_seconds", "number", 1, "Seconds a /status answer may be reused (0: never); "
            "dashboards polling it then cost one computation a second.", None, 0),
    Setting("rate_limiting_enabled", "bool", False, "Limit requests per client in 3.9.1's four classes (limits "
            "in the top-level :rate_limits: section; see docs/api.md): 429 past a class's limit.",
            "RATE_LIMITING_ENABLED"),
    Setting("auth_failure_limits_enabled", "bool", True, "Slow down clients that fail authentication "
            "repeatedly (auth_failures_per_minute, auth_token_failures_per_minute)."),
    Setting("auth_failures_per_minute", "int", 10,
            "Wrong passwords for one user name from one address per minute before that user's logins "
            "from that address are 429 (other users and tokens are not affected).", None, 1),
    Setting("auth_token_failures_per_minute", "int", 600,
            "Wrong tokens from one address per minute before further wrong tokens are answered 429 "
            "instead of 401 (a coarse guard; a valid token is never refused).", None, 1),
]
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
    "timeout_notification": "not implemented",
}
IGNORED_SECTIONS = {"redis": "the database replaces redis", "statsd": "no statsd metrics",
                    "graphite": "no graphite metrics", "graphs": "no dashboard", "tracing": "no tracing",
                    "dns_configs": "API v1 has no DNS plugins"}
KNOWN_SECTIONS = {"config", "pools", "providers", "auth", "tagfilter", "database", "prometheus", "rate_limits"}


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


def check_setting(setting: Setting, value, where: str, problems: list):
    try:
        value = coerce(setting.kind, value)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return setting.default
    if value is not None and setting.minimum is not None and value < setting.minimum:
        problems.append(f"{where}: must be at least {setting.minimum:g}, not {value!r}")
        return setting.default
    return value


def read_settings(rows, mapping, problems: list, where: str = "", environ=None) -> dict:
    """``{key: typed value}`` for each Setting row: the environment variable (when ``environ`` is
    given and has it) over ``mapping``'s value over the row's default. Problems name the key as
    ``<where><key>`` (``where`` is a prefix such as ``config.``), or the variable."""
    values = {}
    for setting in rows:
        if environ is not None and setting.env and environ.get(setting.env) is not None:
            value = check_setting(setting, environ[setting.env], f"{setting.env} (environment, for "
                                  f"{where}{setting.key})", problems)
        else:
            value = check_setting(setting, mapping.get(setting.key), f"{where}{setting.key}", problems)
        values[setting.key] = setting.default if value is None else value
    return values


# -- the typed settings object ---------------------------------------------------------------
_PYTHON_TYPES = {"int": int, "number": float, "bool": bool, "str": str, "list": tuple, "dict": dict}


def _frozen(value):
    """Lists become tuples, so that a frozen Settings holds nothing that can change under it."""
    return tuple(value) if isinstance(value, list) else value


def _settings_class(rows) -> type:
    """A frozen dataclass with one attribute per row, named by its key, defaulting to its default:
    ``config.settings.task_limit``. A misspelt key is an AttributeError (and a failing test: see
    tests/unit/test_settings.py), not a KeyError on a rare path."""
    fields = []
    for row in rows:
        default = _frozen(row.default)
        field = (dataclasses.field(default_factory=lambda default=default: dict(default))
                 if isinstance(default, dict) else dataclasses.field(default=default))
        fields.append((row.key, Optional[_PYTHON_TYPES[row.kind]], field))
    return dataclasses.make_dataclass("Settings", fields, frozen=True, namespace={"__module__": __name__})


Settings = _settings_class(SETTINGS)


def build_settings(values) -> "Settings":
    """Settings from ``{key: value}`` (typed values, as read_settings gives them); a missing key
    takes its default, an unknown one is a TypeError. Tests override with
    ``dataclasses.replace(settings, task_limit=1)`` or through tests.conftest.make_config."""
    return Settings(**{key: _frozen(value) for key, value in values.items()})
