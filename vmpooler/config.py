"""Loading and validating the configuration (the keys and their defaults are in settings.py).

The file is YAML in the original vmpooler's format: top-level ``:config:``, ``:pools:``,
``:providers:``, ``:dns_configs:``, ``:auth:``, ``:tagfilter:`` (with or without the leading
colon), plus our ``:database:``. Problems are collected, not raised one at a time, so ``check-config`` can list them
all; start-up stops on the first list that is not empty.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Dict, List, Mapping, Optional

import yaml

from vmpooler import quotas, rate_limits
from vmpooler.auth_config import parse_auth
from vmpooler.dns_config import dns_configs, with_domain
from vmpooler.dns.registry import REGISTRY as DNS_REGISTRY
from vmpooler.model import PoolConfig, ProviderConfig
from vmpooler.prometheus_config import PrometheusConfig, prometheus_section
from vmpooler.settings import (IGNORED_SECTIONS, IGNORED_SETTINGS, KNOWN_SECTIONS, SETTINGS, SETTINGS_BY_KEY,
                               Setting, Settings, build_settings, check_setting, coerce, read_settings,
                               did_you_mean, mapping_of, unknown_key)

DEFAULT_DATABASE_URL = "sqlite:///vmpooler.db"


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists each, naming its key, and ``warnings``
    what was found besides (check-config reports both)."""

    def __init__(self, problems, warnings=()):
        self.problems = list(problems)
        self.warnings = list(warnings)
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.problems))


#: the pool keys every pool may have; its provider's schema declares the others (POOL_SETTINGS)
POOL_KEYS = {"name", "template", "size", "alias", "provider", "timeout", "ready_ttl", "check_hostname_for_mismatch",
             "timeout_notification",
             "check_loop_delay_min", "check_loop_delay_max", "check_loop_delay_decay", "dns_plugin"}


@dataclasses.dataclass
class Config:
    #: the core :config: keys, typed and frozen: ``config.settings.task_limit``
    settings: Settings
    pools: list
    #: name under :providers: -> model.ProviderConfig (its class and typed options)
    providers: dict
    auth: Optional[dict]
    tagfilter: dict
    database_url: str
    warnings: list
    #: the :prometheus: section; None when absent (no metrics endpoint, no metrics kept)
    prometheus: Optional["PrometheusConfig"] = None
    #: name under :dns_configs: -> model.DnsConfig (its plugin class, domain and typed options)
    dns: dict = dataclasses.field(default_factory=dict)
    #: the request rate limits of each class (used with ``rate_limiting_enabled``)
    rate_limits: Mapping = dataclasses.field(default_factory=lambda: dict(rate_limits.DEFAULTS))
    #: the original's keys and sections that have no use here (:redis:, logfile, ...): told, not
    #: warned about, so a 3.x file checks clean (warnings are for what may be a mistake)
    notes: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self.pools_by_name = {p.name: p for p in self.pools}
        self.aliases = {}
        for pool in self.pools:
            for alias in pool.alias:
                self.aliases.setdefault(alias, []).append(pool.name)

    def backends(self, requested: str) -> list:
        """Pools that can serve a requested name: the pool itself and/or the pools of an alias."""
        names = [requested] if requested in self.pools_by_name else []
        return names + [p for p in self.aliases.get(requested, []) if p not in names]

    def quota(self, user: Optional[str]) -> Optional[int]:
        """How many VMs ``user``'s tokens may hold at once (None: no limit)."""
        return quotas.limit_for((self.auth or {}).get("quotas") or {}, user)

    @property
    def domain(self) -> Optional[str]:
        """The default domain (``:config: domain``), of pools without a DNS setup; a pool's own
        is ``PoolConfig.domain``."""
        return self.settings.domain

    def domain_of(self, pool_name: str) -> Optional[str]:
        """The domain of the pool named so; the default one for a pool no longer configured."""
        pool = self.pools_by_name.get(pool_name)
        return pool.domain if pool is not None else self.domain

    @property
    def domains(self) -> set:
        """Every domain a VM's FQDN may end in (each pool's, and the default)."""
        return {domain for domain in [self.domain, *(p.domain for p in self.pools)] if domain}


# -- loading -------------------------------------------------------------------------------
def read_source(path: Optional[str] = None, environ: Mapping[str, str] = os.environ) -> tuple:
    """(raw mapping, where it came from) following the original's order: --config, then
    VMPOOLER_CONFIG (YAML text), then VMPOOLER_CONFIG_FILE, else the built-in example."""
    if path:
        return read_file(path), path
    if environ.get("VMPOOLER_CONFIG"):
        return _parse_yaml(environ["VMPOOLER_CONFIG"], "VMPOOLER_CONFIG"), "VMPOOLER_CONFIG"
    if environ.get("VMPOOLER_CONFIG_FILE"):
        return read_file(environ["VMPOOLER_CONFIG_FILE"]), environ["VMPOOLER_CONFIG_FILE"]
    return default_raw(), "built-in defaults"


def default_raw() -> dict:
    """The embedded default: the dummy provider and the two pools of vmpooler.yaml.example (a test
    keeps them alike), which are the API document's."""
    return {
        "providers": {"dummy": {}},
        "pools": [
            {"name": "debian-7-i386", "alias": ["debian-7-32"], "template": "debian-7-i386", "size": 5,
             "provider": "dummy"},
            {"name": "debian-7-x86_64", "template": "debian-7-x86_64", "size": 3, "provider": "dummy"},
        ],
        "config": {"check_loop_delay_min": 1, "vm_checktime": 1},
    }


def read_file(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return _parse_yaml(handle.read(), path)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None


def _parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError([f"{where}: not valid YAML: {exc}"]) from None


def load(path: Optional[str], environ: Mapping[str, str], registry) -> Config:
    """Read, validate and return the configuration; raise ConfigError listing every problem.
    ``registry`` is the provider registry (vmpooler.providers.registry.REGISTRY in the service):
    it tells which keys each configured provider reads."""
    raw, _where = read_source(path, environ)
    return build(raw, environ, registry)


def build(raw: Any, environ: Mapping[str, str], registry, dns_registry=None) -> Config:
    """``dns_registry``: the DNS plugin classes (default: those installed, vmpooler.dns.registry)."""
    problems: List[str] = []
    warnings: List[str] = []
    notes: List[str] = []
    if not isinstance(raw, dict):
        raise ConfigError(["the configuration must be a mapping of sections (:config:, :pools:, ...)"])
    sections = _sections(raw, problems, warnings, notes)
    pool_list = _pool_list(sections.get("pools"), problems)
    default_provider = _default_provider(sections.get("providers"))
    entries = _provider_entries(sections.get("providers"), pool_list, default_provider, registry, problems,
                                warnings)
    section = mapping_of(sections.get("config"), "config", problems)
    settings = build_settings(read_settings(SETTINGS, section, problems, "config.", environ))
    providers = {}
    for name, (class_name, schema, options) in _known(entries):
        values = read_settings(schema.GLOBAL_SETTINGS, section, problems, "config.", environ)
        found: list = []
        typed = schema.provider_options(options, values, settings, found)
        problems.extend(f"providers.{name}.{p}" for p in found)
        breaker = {key: value for key, value in read_settings(BREAKER_SETTINGS, options, problems,
                                                               f"providers.{name}.").items() if key in options}
        providers[name] = ProviderConfig(name, class_name, typed, dict(options, provider_class=class_name), breaker)
    _warn_unknown_settings(section, [schema for _, (_, schema, _) in _known(entries)], registry, warnings, notes)
    dns, dns_names = dns_configs(sections.get("dns_configs"), dns_registry or DNS_REGISTRY, problems, warnings)
    pools = _pools(pool_list, settings, default_provider, providers, entries, problems, warnings)
    pools = [with_domain(pool, settings, dns, dns_names, problems) for pool in pools]
    auth = parse_auth(sections.get("auth"), environ, problems)
    if auth is not None:
        auth["quotas"], quota_problems = quotas.parse(auth.get("quotas"))
        problems.extend(quota_problems)
    tagfilter = _tagfilter(sections.get("tagfilter"), problems)
    database_url = _database_url(sections.get("database"), environ, problems)
    prometheus = prometheus_section(sections.get("prometheus"), problems, warnings)
    limits = rate_limits.parse(sections.get("rate_limits"), problems, warnings)
    if problems:
        raise ConfigError(problems, warnings)
    return Config(settings, pools, providers, auth, tagfilter, database_url, warnings, prometheus, dns, limits,
                  notes)


def _sections(raw: dict, problems: list, warnings: list, notes: list) -> dict:
    sections = {}
    for key, value in raw.items():
        name = str(key).strip(":")
        if name in sections:
            problems.append(f"{name}: given twice (with and without the leading colon)")
        if name in IGNORED_SECTIONS:
            notes.append(f":{name}: is not used here: {IGNORED_SECTIONS[name]}")
        elif name not in KNOWN_SECTIONS:
            warnings.append(f":{name}: is not a known section; ignored{did_you_mean(name, KNOWN_SECTIONS)}")
        sections[name] = value
    return sections


def _warn_unknown_settings(section: dict, schemas: list, registry, warnings: list, notes: list) -> None:
    known = set(SETTINGS_BY_KEY).union(*({s.key for s in schema.GLOBAL_SETTINGS} for schema in schemas))
    for key in section:
        key = str(key)
        if key in known:
            continue
        if key in IGNORED_SETTINGS:
            notes.append(f"config.{key} is not used here: {IGNORED_SETTINGS[key]}")
            continue
        owners = [name for name in registry.names()
                  if any(s.key == key for s in registry.schema(name).GLOBAL_SETTINGS)]
        warnings.append(f"config.{key} is read by the {' and '.join(owners)} provider, which no provider here "
                        f"uses; ignored" if owners else unknown_key("config", key, known))


#: the circuit breaker keys a provider section may set for its own breaker (3.9.0), over :config:'s
BREAKER_SETTINGS = tuple(SETTINGS_BY_KEY[key] for key in (
    "circuit_breaker_enabled", "circuit_breaker_failure_threshold", "circuit_breaker_timeout",
    "circuit_breaker_half_open_attempts"))
#: keys every provider section may carry, whatever its class: its breaker's, and 2.3's
#: skip_dns_check_before_creating_vm, which asks to skip a check this service never makes (a new
#: VM's name is unique among live VMs in the database; an rfc2136 setup replaces a stale record)
ANY_PROVIDER_KEYS = frozenset({s.key for s in BREAKER_SETTINGS} | {"skip_dns_check_before_creating_vm"})


def _provider_entries(section, pool_list, default_provider, registry, problems, warnings) -> dict:
    """name -> (provider_class, its schema, the section as written), for each provider under
    :providers:, plus the dummy when a pool names it without configuring it. A provider whose
    class is unknown is one problem, and maps to None: its pools are not told a second, wrong one
    (that it is not configured)."""
    entries: Dict[str, Any] = {}
    for name, options in mapping_of(section, "providers", problems).items():
        name = str(name).strip(":")  # the original writes provider names as symbols (:dummy:)
        options = mapping_of(options, f"providers.{name}", problems)
        class_name = str(options.get("provider_class", name))
        schema = registry.schema(class_name)
        if schema is None:
            problems.append(f"providers.{name}: unknown provider {class_name!r}"
                            f"{did_you_mean(class_name, registry.names())} (known: {', '.join(registry.names())})")
            entries[name] = None
            continue
        for key in options:
            if key not in schema.PROVIDER_KEYS and key not in ANY_PROVIDER_KEYS:
                warnings.append(unknown_key(f"providers.{name}", key, schema.PROVIDER_KEYS | ANY_PROVIDER_KEYS))
        entries[name] = (class_name, schema, options)
    dummy = registry.schema("dummy")
    if dummy is not None and "dummy" not in entries and any(
            isinstance(pool, dict) and pool.get("provider", default_provider) == "dummy" for pool in pool_list):
        entries["dummy"] = ("dummy", dummy, {})
    return entries


def _known(entries: dict) -> list:
    """The entries whose provider class is known."""
    return [(name, entry) for name, entry in entries.items() if entry is not None]


def _default_provider(section) -> str:
    """A pool without ``provider`` uses the only configured provider, else the dummy."""
    names = [str(name).strip(":") for name in section] if isinstance(section, dict) else []
    return names[0] if len(names) == 1 else "dummy"


def _pool_list(section, problems) -> list:
    if section is None:
        problems.append("pools: at least one pool is required")
        return []
    if not isinstance(section, list):
        problems.append("pools: must be a list of pools")
        return []
    return section


def _pools(pool_list, settings, default_provider, providers, entries, problems, warnings) -> list:
    pools, seen = [], set()
    for index, raw in enumerate(pool_list):
        where = f"pools[{index}]"
        if not isinstance(raw, dict):
            problems.append(f"{where}: must be a mapping with name, template and size")
            continue
        pool = _pool(raw, where, settings, default_provider, providers, entries, problems, warnings)
        if pool is None:
            continue
        if pool.name in seen:
            problems.append(f"{where}.name: pool {pool.name!r} is defined twice")
        seen.add(pool.name)
        pools.append(pool)
    clashes = {a for p in pools for a in p.alias} & seen
    for alias in sorted(clashes):
        owners = [p.name for p in pools if alias in p.alias]
        if any(o != alias for o in owners):
            problems.append(f"pools: alias {alias!r} is also the name of a pool")
    return pools


_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def _pool(raw, where, settings, default_provider, providers, entries, problems, warnings):
    before = len(problems)
    name, template = raw.get("name"), raw.get("template")
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(f"{where}.name: required, letters, digits, '.', '_' or '-' (got {name!r})")
    else:
        where = f"pools[{name}]"
    if not isinstance(template, str) or not template:
        problems.append(f"{where}.template: required, a non-empty string (got {template!r})")
    size = check_setting(Setting("size", "int", None, "", minimum=0), raw.get("size"), f"{where}.size", problems)
    if size is None:
        problems.append(f"{where}.size: required, an integer >= 0")
    provider = str(raw.get("provider", default_provider))
    if provider not in entries:
        problems.append(f"{where}.provider: {provider!r} is not configured under :providers:")
    alias = raw.get("alias") or []
    try:
        alias = tuple(coerce("list", alias))
    except ValueError as exc:
        problems.append(f"{where}.alias: {exc}")
        alias = ()
    core = read_settings(_POOL_SETTINGS, raw, problems, f"{where}.")
    schema = entries[provider][1] if entries.get(provider) else None
    extra = {s.key for s in schema.POOL_SETTINGS} if schema else set()
    for key in raw if schema is not None or provider not in entries else ():  # unknown class: unknown keys
        if key not in POOL_KEYS and key not in extra:
            warnings.append(unknown_key(where, key, POOL_KEYS | extra))
    provider_options = None
    if schema is not None:
        found: list = []
        provider_options = schema.pool_options(raw, providers[provider].options if provider in providers else None,
                                               found)
        problems.extend(f"{where}.{p}" for p in found)
    if len(problems) > before:
        return None
    return PoolConfig(
        name=name, template=template, size=size, provider=provider, alias=alias,
        timeout=settings.timeout if core["timeout"] is None else core["timeout"],
        ready_ttl=settings.ready_ttl if core["ready_ttl"] is None else core["ready_ttl"],
        check_hostname_for_mismatch=(settings.check_ready_vm_hostname_for_mismatch
                                     if core["check_hostname_for_mismatch"] is None
                                     else core["check_hostname_for_mismatch"]),
        timeout_notification=(settings.timeout_notification if core["timeout_notification"] is None
                              else core["timeout_notification"]),
        provider_options=provider_options, raw=dict(raw),
    )


# Pool keys that override a global setting (unset: the global value applies).
_POOL_SETTINGS = (Setting("timeout", "number", None, "", minimum=0),
                  Setting("ready_ttl", "number", None, "", minimum=0),
                  Setting("check_hostname_for_mismatch", "bool", None, ""),
                  Setting("timeout_notification", "number", None, "", minimum=0))


def _tagfilter(section, problems) -> dict:
    filters = {}
    for tag, pattern in mapping_of(section, "tagfilter", problems).items():
        try:
            filters[str(tag)] = re.compile(str(pattern))
        except re.error as exc:
            problems.append(f"tagfilter.{tag}: not a valid regular expression: {exc}")
    return filters


def _database_url(section, environ, problems) -> str:
    section = mapping_of(section, "database", problems)
    url = environ.get("DATABASE_URL") or section.get("url") or DEFAULT_DATABASE_URL
    if not isinstance(url, str) or "://" not in url:
        problems.append(f"database.url: must be an SQLAlchemy URL such as {DEFAULT_DATABASE_URL}, not {url!r}")
    return url
