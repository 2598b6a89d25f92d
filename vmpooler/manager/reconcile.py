"""Making the database agree with each provider's inventory of a pool's folder.

Acts only on a complete inventory (a failed listing changes nothing), and never on a VM whose
row changed while the listing ran or that has provider work in flight:
- a VM the provider has but the database does not know is recorded completed, so it is destroyed
  (the original's "discovered"); one we had written off reappearing is destroyed again;
- a live VM the provider no longer has is marked gone (no phantoms), and its DNS record removed
  once, best effort; but a completed VM of a pool whose DNS records the service keeps is left to
  the destroy loop, which finds it gone and retries removing its record (manager/records.py);
- a clone interrupted by a stop whose VM exists is taken as cloned; one whose VM does not exist
  is left to the clone retry.
"""
from __future__ import annotations

import logging

from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow
from vmpooler.model import COMPLETED, PENDING
from vmpooler.providers.base import ProviderError

log = logging.getLogger("vmpooler.manager")


async def reconcile_pool(manager, pool) -> bool:
    started = utcnow()
    try:
        inventory = await manager.runner.call(pool.provider, lambda p: p.list_vms(pool))
    except ProviderError as error:
        log.warning("[%s] inventory failed, nothing reconciled: %s", pool.name, error)
        return False
    listed = {info.name: info for info in inventory}
    rows = {row.name: row for row in await manager.db.run(vm_store.live_in_pool, pool.name)}
    for name, row in rows.items():
        if manager.busy(name) or row.state_changed_at >= started:
            continue
        cloning = row.state == PENDING and row.cloned_at is None
        if name in listed and cloning:
            await _resolve_interrupted_clone(manager, row, listed[name])
        elif name not in listed and not cloning and not (row.state == COMPLETED and manager.records.plugin(pool)):
            if await manager.db.run(vm_store.gone, row, "no longer in the provider", utcnow()):
                await manager.records.forget(pool, name)
    unknown = set(listed) - set(rows)
    dead = await manager.db.run(vm_store.latest_dead, pool.name, unknown)
    for name in sorted(unknown):
        if manager.busy(name):
            continue
        if name in dead:
            if dead[name].state_changed_at < started:
                await manager.db.run(vm_store.revive, dead[name], utcnow())
        else:
            await manager.db.run(vm_store.discovered, pool, name, utcnow())
    return True


async def _resolve_interrupted_clone(manager, row, info) -> None:
    """A clone cut short by a stop left its VM: take it as cloned when it is powered on; one
    stopped before its power-on would never boot, so it is retired (destroyed and replaced)."""
    if info.powered_on:
        await manager.db.run(vm_store.cloned, row, utcnow())
    else:
        await manager.db.run(vm_store.complete, row, "clone interrupted before its power-on", utcnow(),
                             error="clone interrupted before its power-on")


async def purge_provider(manager, provider_name: str) -> None:
    """Let a provider remove what lies in its pools' base folders but belongs to no pool (it
    does so only when purge_unconfigured_folders is on for it)."""
    pools = [pool for pool in manager.pools.values() if pool.provider == provider_name]
    try:
        removed = await manager.runner.call(provider_name, lambda p: p.purge_unconfigured(pools))
    except ProviderError as error:
        log.warning("provider %s: purge of unconfigured folders failed: %s", provider_name, error)
        return
    for name in removed or ():
        log.info("provider %s: purged %s (no pool uses it)", provider_name, name)
