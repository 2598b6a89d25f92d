"""How the API writes values: JSON answers, the original's time formats, client values quoted in
error messages, the original's lenient numbers, and JSON shapes several routes share."""
from __future__ import annotations

import datetime
import json
import re
from typing import Any, Dict, Optional

from vmpooler.db import stats as stat_store

#: answers up to this size are indented for people reading curl's output, as the original's are;
#: larger ones (a year of /summary) are sent compact: indenting megabytes costs more than the query
PRETTY_LIMIT = 64 * 1024


def encode(body) -> str:
    text = json.dumps(body)
    return (json.dumps(body, indent=2) if len(text) <= PRETTY_LIMIT else text) + "\n"


def ruby_time(when: datetime.datetime) -> str:
    """Ruby's Time#to_s, as the original shows token and lastBoot times (we are always UTC)."""
    return when.strftime("%Y-%m-%d %H:%M:%S +0000")


def rfc3339(when: datetime.datetime) -> str:
    return when.replace(tzinfo=datetime.timezone.utc).isoformat(timespec="seconds")


def shown(value, limit: int = 40) -> str:
    """A client's value, quoted and cut short, for error messages."""
    text = value if isinstance(value, str) else json.dumps(value)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def whole_number(value, max_digits: int = 9) -> Optional[int]:
    """An integer from JSON: 3, 3.0 or "3" (the original's strings); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 10 ** max_digits:
        return int(value)
    if isinstance(value, str) and re.fullmatch(rf"\s*[+-]?\d{{1,{max_digits}}}\s*", value):
        return int(value)
    return None


def shared_domain(config, pool_names) -> Optional[str]:
    """The top-level ``domain`` of a v1 answer about VMs of ``pool_names``: their pools' one domain
    (each pool's comes from its DNS setup, else the default), the default when there are no VMs,
    None when the pools' domains differ (then ``v1_hostnames`` writes each VM's FQDN)."""
    domains = {config.domain_of(pool) for pool in pool_names}
    if not domains:
        return config.domain
    return domains.pop() if len(domains) == 1 else None


def v1_hostnames(config, vms, domain: Optional[str]) -> list:
    """The VM rows' hostnames in a v1 answer whose top-level domain is ``domain`` (shared_domain):
    short names beside it (as v1 always answered), else each with its own pool's domain."""
    if domain:
        return [vm.name for vm in vms]
    return [fqdn_of(config, vm) for vm in vms]


def handed_out(config, vms_by_name: dict, fqdn: bool) -> tuple:
    """({requested name: [hostnames]}, the top-level domain or None) of an answer handing VMs out
    (checkout, a ready on-demand request): with ``fqdn`` (API v2, v3) each hostname carries its
    pool's domain and there is no top-level domain; else v1's (``shared_domain``, ``v1_hostnames``)."""
    if fqdn:
        return {name: [fqdn_of(config, vm) for vm in vms] for name, vms in vms_by_name.items()}, None
    domain = shared_domain(config, [vm.pool for vms in vms_by_name.values() for vm in vms])
    return {name: v1_hostnames(config, vms, domain) for name, vms in vms_by_name.items()}, domain


def fqdn_of(config, vm) -> str:
    """``<name>.<domain of its pool>``, or the name alone without a domain."""
    domain = config.domain_of(vm.pool)
    return f"{vm.name}.{domain}" if domain else vm.name


def alias_as_configured(pool):
    """A pool's alias as written in the configuration (a string or a list), None without one."""
    return pool.raw.get("alias") if pool.alias else None


def _duration_json(stats: stat_store.Stats) -> dict:
    return {"average": round(stats.total / stats.count, 1) if stats.count else 0, "min": round(stats.low, 2),
            "max": round(stats.high, 2), "total": round(stats.total, 2)}


def task_json(stats: stat_store.Stats, pools: Optional[dict] = None, daily_counts: Optional[list] = None) -> dict:
    """Clone or boot times as /status and /summary show them: {"duration": {average, min, max,
    total[, pool]}, "count": {[average, min, max,] total[, pool]}}."""
    duration = _duration_json(stats)
    count: Dict[str, Any] = {}
    if daily_counts is not None:
        count.update(average=round(sum(daily_counts) / len(daily_counts), 1) if daily_counts else 0,
                     min=min(daily_counts, default=0), max=max(daily_counts, default=0))
    count["total"] = stats.count
    if pools:
        ordered = sorted(pools.items())
        duration["pool"] = {name: _duration_json(pool) for name, pool in ordered}
        count["pool"] = {name: {"total": pool.count} for name, pool in ordered}
    return {"duration": duration, "count": count}
