"""The request rate limits of 3.9.1: ``:config: rate_limiting_enabled: true`` turns them on, the
top-level ``:rate_limits:`` section changes a class's numbers::

    :rate_limits:
      :vm_creation:
        :limit: 20      # requests
        :period: 60     # seconds

Four classes, as 3.9.1 has them (the limiter itself is ``vmpooler.api.ratelimit``):
``vm_creation`` (a POST on a /vm path: checkout, disk, snapshot), ``vm_deletion`` (a DELETE on a
/vm path), ``authenticated`` (any other request with a valid credential) and ``global_per_ip``
(everything else, per client address).
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Mapping

from vmpooler.settings import Setting, check_setting


class LimitClass(str, enum.Enum):
    VM_CREATION = "vm_creation"
    VM_DELETION = "vm_deletion"
    AUTHENTICATED = "authenticated"
    GLOBAL_PER_IP = "global_per_ip"


@dataclasses.dataclass(frozen=True)
class Limit:
    #: requests a client may make within ``period`` seconds
    limit: int
    period: int


#: 3.9.1's DEFAULT_LIMITS
DEFAULTS = {LimitClass.GLOBAL_PER_IP: Limit(100, 60), LimitClass.AUTHENTICATED: Limit(500, 60),
            LimitClass.VM_CREATION: Limit(20, 60), LimitClass.VM_DELETION: Limit(50, 60)}
_KEYS = (Setting("limit", "int", None, "", minimum=1), Setting("period", "int", None, "", minimum=1))


def _plain(mapping: Mapping) -> dict:
    """Keys without the original's leading colon (``:limit:`` and ``limit`` alike)."""
    return {str(key).strip(":"): value for key, value in mapping.items()}


def parse(section, problems: list, warnings: list, where: str = "rate_limits") -> Mapping[LimitClass, Limit]:
    """{class: Limit} for every class: the section's numbers over 3.9.1's defaults."""
    limits = dict(DEFAULTS)
    if section is None:
        return limits
    if not isinstance(section, dict):
        problems.append(f"{where}: must be a mapping of class ({', '.join(c.value for c in LimitClass)}) to "
                        "{limit, period}")
        return limits
    for name, entry in _plain(section).items():
        try:
            kind = LimitClass(name)
        except ValueError:
            warnings.append(f"{where}.{name} is not a known class ({', '.join(c.value for c in LimitClass)}); "
                            "ignored")
            continue
        if not isinstance(entry, dict):
            problems.append(f"{where}.{name}: must be a mapping with limit and period")
            continue
        entry = _plain(entry)
        for key in set(entry) - {s.key for s in _KEYS}:
            warnings.append(f"{where}.{name}.{key} is not a known key (limit, period); ignored")
        values = {s.key: check_setting(s, entry.get(s.key), f"{where}.{name}.{s.key}", problems) for s in _KEYS}
        limits[kind] = Limit(values["limit"] or DEFAULTS[kind].limit, values["period"] or DEFAULTS[kind].period)
    return limits
