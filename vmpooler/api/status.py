"""GET /status: capacity, today's clone and boot times, queues, pools, providers, health.

Computed with a fixed number of queries (five: the pool counts, today's durations, the last
boots, the manager's lease, the pool overrides; in parallel on PostgreSQL) whatever the number of
pools, and reused for ``status_cache_seconds`` when that is set, but never once the database
changed since it was read (a write of this process, or a change another process announced).
"""
from __future__ import annotations

import asyncio
import time
import urllib.parse
from typing import Optional

from vmpooler.api.base import BaseHandler
from vmpooler.api.render import alias_as_configured, encode, rfc3339, ruby_time, task_json
from vmpooler.db import overrides
from vmpooler.db import stats as stat_store
from vmpooler.db.database import utcnow

SECTIONS = ("boot", "capacity", "clone", "pools", "providers", "queue", "status")


def requested_sections(query: str) -> frozenset:
    """The sections ``?view=a,b`` asks for, plus status. No ``view`` or a bare ``?view``: all;
    ``?view=`` : status only; unknown names are ignored (as the original)."""
    view: Optional[str] = None
    for part in query.split("&"):
        name, equals, value = part.partition("=")
        if urllib.parse.unquote_plus(name) == "view":
            view = urllib.parse.unquote_plus(value) if equals else None
    if view is None:
        return frozenset(SECTIONS)
    return frozenset(name for name in view.split(",") if name in SECTIONS) | {"status"}


def _leadership(_db, leader) -> dict:
    """``leader()`` reads the manager's lease, a database read: run through ``db.run`` like the others."""
    return leader()


async def _nothing(_db) -> None:
    return None


async def build_status(context, sections: frozenset, requested: bool = False) -> dict:
    """The body of /status for ``sections``; ``requested``: ``queue`` shows the on-demand requests
    waiting (3.8.1+, /api/v3)."""
    config, now = context.config, utcnow()
    day = now.strftime("%Y-%m-%d")
    db = context.db
    counts, samples, boots, manager, effective, waiting = await asyncio.gather(
        db.run(stat_store.pool_counts, now), db.run(stat_store.duration_stats, day, day),
        db.run(stat_store.last_boots), db.run(_leadership, context.leader),
        db.run(overrides.effective_pools, config.pools),
        db.run(stat_store.ondemand_waiting) if requested and "queue" in sections else _nothing(db))
    pools = {pool.name: counts.get(pool.name, stat_store.NO_VMS) for pool in effective}
    body = {}
    for kind in ("boot", "clone"):
        if kind in sections:
            total = stat_store.Stats()
            for _day, sample_kind, _pool, stats in samples:
                if sample_kind == kind:
                    total = total.add(stats)
            body[kind] = task_json(total)
    if "capacity" in sections:
        current, size = sum(c.ready for c in pools.values()), sum(p.size for p in effective)
        body["capacity"] = {"current": current, "total": size,
                            "percent": round(current / size * 100, 1) if size else 0}
    if "pools" in sections:
        body["pools"], waits = {}, context.pool_waits()
        for pool in effective:
            counted = pools[pool.name]
            entry = {"ready": counted.ready, "running": counted.running, "pending": counted.pending}
            entry.update(max=pool.size, lastBoot=ruby_time(boots[pool.name]) if pool.name in boots else "")
            if pool.alias:
                entry["alias"] = alias_as_configured(pool)
            if pool.name in waits:  # ours: new clones held back after failures (manager/backoff.py)
                entry["waiting"] = dict(waits[pool.name], until=rfc3339(waits[pool.name]["until"]))
            body["pools"][pool.name] = entry
    if "providers" in sections:
        body["providers"] = context.provider_health()
    if "queue" in sections:
        queued = stat_store.PoolCounts.total(pools.values())
        queue = {"requested": waiting or 0} if requested else {}
        queue.update(pending=queued.pending, cloning=queued.cloning, booting=queued.booting, ready=queued.ready,
                     running=queued.running, completed=queued.completed)
        # 3.8.1+ counts the waiting requests in the total too
        queue["total"] = sum(queue.get(key, 0) for key in ("requested", "pending", "ready", "running", "completed"))
        body["queue"] = queue
    status = {"ok": True, "message": "Battle station fully armed and operational."}
    empty = [pool.name for pool in effective if pool.size and not pools[pool.name].ready]
    if "pools" in sections and empty:
        status.update(ok=False, message=f"Found {len(empty)} empty pools.", empty=empty)
    status["uptime"] = round(time.monotonic() - context.started_at, 1)
    status["manager"] = manager  # which process runs the pool manager (several may share the database)
    body["status"] = status
    return {key: body[key] for key in SECTIONS if key in body}  # sorted, as the original


class StatusHandler(BaseHandler):
    async def get(self) -> None:
        sections = requested_sections(self.request.query)
        requested = self.version.queue_requested
        seconds = self.config.settings.status_cache_seconds
        cache = self.state.status_cache
        key = (sections, requested)
        cached = cache.get(key)
        # reused while young and while nothing changed since it was read: no write of this process
        # and (PostgreSQL) no change another process announced (Database.generation counts both)
        generation = self.db.generation
        if seconds and cached is not None and cached[0] > time.monotonic() and cached[1] == generation:
            return self.reply_encoded(cached[2])
        text = encode(await build_status(self.context, sections, requested))
        if seconds:  # kept encoded: clients poll /status, and encoding it was most of a cached answer
            cache[key] = (time.monotonic() + seconds, generation, text)
        self.reply_encoded(text)
