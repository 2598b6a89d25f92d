"""Applying run-time pool configuration (POST /config/..., /poolreset): each pass starts from
the effective pools (the file's configuration with the database's overrides), so a pool grows
or shrinks at once, and carries out the drains asked for, so a pool whose template or clone target
changed (or that was reset) is refilled with VMs made the new way."""
from __future__ import annotations

import logging

from vmpooler.db import overrides as override_store

log = logging.getLogger("vmpooler.manager")
WATCHED = ("size", "template", "clone_target")


def run(manager, work) -> None:
    """First of a pass's loops: the drained VMs are completed before the pass reads the pending
    ones (``work.pending``), and replenishment then refills the pools the new way."""
    refresh(manager)
    for name, request in override_store.pending_drains(manager.db).items():
        if name in manager.pools:
            override_store.drain(manager.db, name, request, work.now)


def refresh(manager) -> None:
    """Replace ``manager.pools`` with the effective pools, logging what changed."""
    pools = {pool.name: pool for pool in override_store.effective_pools(manager.db, manager.config.pools)}
    for name, pool in pools.items():
        old = manager.pools.get(name)
        for key in WATCHED:
            was, now = (None, None) if old is None else (old.raw.get(key), pool.raw.get(key))
            if was != now:
                log.info("[%s] %s is now %s (was %s)", name, key, now, was)
    manager.pools = pools
