"""The ``:dns_configs:`` section (each entry's plugin class, domain and options, typed by the
plugin's schema) and each pool's DNS setup and domain (its ``dns_plugin``), validated; read by
config.py, which hands in the DNS plugin registry."""
from __future__ import annotations

import dataclasses
import re

from vmpooler.model import DnsConfig, PoolConfig
from vmpooler.settings import Setting, check_setting, did_you_mean, mapping_of, unknown_key


def dns_configs(section, registry, problems: list, warnings: list) -> tuple:
    """({name: DnsConfig} of the valid entries of :dns_configs:, the names of all its entries).
    An entry's plugin class is its ``dns_class``, else its name (as in the original); the class's
    schema types the rest of the entry."""
    configs, names = {}, set()
    for name, entry in mapping_of(section, "dns_configs", problems).items():
        name = str(name).strip(":")  # written as symbols (:example:) in the original
        names.add(name)
        where = f"dns_configs.{name}"
        entry = mapping_of(entry, where, problems)
        before = len(problems)
        dns_class = check_setting(Setting("dns_class", "str", None, ""), entry.get("dns_class", name),
                                  f"{where}.dns_class", problems)
        schema = registry.schema(dns_class) if dns_class else None
        if dns_class and schema is None:
            problems.append(f"{where}.dns_class: unknown DNS plugin {dns_class!r}"
                            f"{did_you_mean(dns_class, registry.names())} "
                            f"(known: {', '.join(registry.names()) or 'none installed'})")
        domain = check_setting(Setting("domain", "str", None, ""), entry.get("domain"), f"{where}.domain", problems)
        if not domain or not _DOMAIN.match(domain):
            problems.append(f"{where}.domain: required, a DNS domain such as example.com (got {domain!r})")
        if len(problems) > before:
            continue
        domain = domain.rstrip(".")
        assert schema is not None  # else its dns_class was a problem
        known = {"dns_class", "domain"} | {s.key for s in schema.SETTINGS}
        warnings.extend(unknown_key(where, str(key), known) for key in entry if str(key) not in known)
        found: list = []
        options = schema.options(entry, domain, found)
        problems.extend(f"{where}.{p}" for p in found)
        if not found:
            configs[name] = DnsConfig(name, dns_class, domain, options, dict(entry))
    return configs, names


_DOMAIN = re.compile(r"^(?=.{1,253}\.?$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*"
                     r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?$")


def with_domain(pool: PoolConfig, settings, dns: dict, dns_names: set, problems: list) -> PoolConfig:
    """The pool with its DNS setup and domain: its ``dns_plugin``'s domain, else the default."""
    name = pool.raw.get("dns_plugin")
    if name is None:
        return dataclasses.replace(pool, domain=settings.domain or None)
    name = str(name).strip(":")
    if name not in dns_names:
        problems.append(f"pools[{pool.name}].dns_plugin: {name!r} is not configured under :dns_configs:"
                        f"{did_you_mean(name, dns_names)} (configured: {', '.join(sorted(dns_names)) or 'none'})")
    if name not in dns:
        return pool
    return dataclasses.replace(pool, dns_plugin=name, domain=dns[name].domain)
