"""Per-user quotas (beyond the original): ``:auth: quotas: {default: N, <user>: M}`` caps how many
VMs the tokens of one user hold at once, checkouts and on-demand requests together.

A leaf module (it imports nothing of ours): the configuration validates the section with
``parse``, the API asks ``limit_for``; the count itself is taken inside the taking transaction by
``vmpooler.db.quotas``.
"""
from __future__ import annotations

from typing import Mapping, Optional

DEFAULT = "default"


def parse(section, where: str = "auth.quotas") -> tuple:
    """({user or "default": limit}, [problems naming the key]) of the ``quotas`` mapping."""
    if section is None:
        return {}, []
    if not isinstance(section, dict):
        return {}, [f"{where}: must be a mapping of user name (or 'default') to a number of VMs"]
    limits, problems = {}, []
    for user, value in section.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems.append(f"{where}.{user}: must be a whole number of VMs >= 0, not {value!r}")
            continue
        limits[str(user)] = value
    return limits, problems


def limit_for(limits: Mapping[str, int], user: Optional[str]) -> Optional[int]:
    """How many VMs ``user`` may hold; None when unlimited (no quota for them and no default,
    or no user: a checkout without a token cannot be attributed to anyone)."""
    if user is None or not limits:
        return None
    return limits.get(user, limits.get(DEFAULT))
