"""The dashboard: ``GET /`` redirects to ``/dashboard/``, the page and its assets (served from
``api/static/dashboard``, so it works with no internet), and its two JSON routes in the original's
shapes. Counts come from the database; the history is rebuilt from the event log (db/history.py)."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import html
import os
import re
from typing import Any, Dict, Optional

from tornado.ioloop import IOLoop

from vmpooler.api.base import ApiError, BaseHandler
from vmpooler.db import history, overrides
from vmpooler.db import stats as stat_store
from vmpooler.db.database import utcnow

ASSET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", "dashboard")
PAGE = "index.html"
CONTENT_TYPES = {".css": "text/css; charset=UTF-8", ".js": "text/javascript; charset=UTF-8",
                 ".svg": "image/svg+xml", ".html": "text/html; charset=UTF-8"}
#: an asset asked for with its current version (``?v=``) never changes: browsers may keep it
IMMUTABLE = "public, max-age=31536000, immutable"
#: the original repeats each of graphite's minute points 8 times in a pool's history (its page
#: draws 500 points, one per 5 s refresh); we keep that shape
POINT_REPEAT = 8
_PLACEHOLDER = re.compile(r"\{\{([\w.-]+)\}\}")
_TAG = re.compile(r"<[^>]*>")


@dataclasses.dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    version: str


@functools.lru_cache(maxsize=1)
def assets() -> dict:
    """Every file of the asset directory, read once: a few kilobytes."""
    found = {}
    for name in sorted(os.listdir(ASSET_DIR)):
        extension = os.path.splitext(name)[1]
        if extension in CONTENT_TYPES:
            with open(os.path.join(ASSET_DIR, name), "rb") as handle:
                body = handle.read()
            found[name] = Asset(body, CONTENT_TYPES[extension], hashlib.sha256(body).hexdigest()[:16])
    return found


def site_title(site_name: str) -> str:
    """``site_name`` as text for the page. The original inserts it as raw HTML (its default is
    ``<b>vmpooler</b>``); we drop tags and escape the rest, so a config cannot inject script."""
    return html.escape(_TAG.sub("", site_name).strip() or "vmpooler")


def render_page(site_name: str) -> bytes:
    """The page with ``{{site_name}}`` filled in and ``{{<asset>}}`` replaced by that asset's
    version, so a new release's scripts are fetched at once and old ones may be cached forever."""
    known = assets()

    def fill(match) -> str:
        key = match.group(1)
        return site_title(site_name) if key == "site_name" else known[key].version

    return _PLACEHOLDER.sub(fill, known[PAGE].body.decode("utf-8")).encode("utf-8")


def major(pool_name: str) -> str:
    """The platform a pool belongs to: its name up to the first ``-`` (the whole name without one)."""
    return pool_name.split("-", 1)[0]


def _series(past: dict, pool: str, state: str, count_now: int) -> list:
    """A pool's past counts of ``state``; flat at ``count_now`` for a pool with no VMs in the log."""
    return past.get(pool, {}).get(state) or [count_now] * history.Window.steps


def _read(db, pools, cache: Optional[history.ChangeCache]):
    """(the effective pools (run-time sizes applied, as /status and /poolstat show them),
    {pool: counts}, {pool: {"ready": [...], "running": [...]}} or None without a cache)."""
    now = utcnow()
    counts = stat_store.pool_counts(db, now)
    past = history.state_history(db, history.Window(now), counts, cache) if cache else None
    return overrides.effective_pools(db, pools), counts, past


class DashboardHandler(BaseHandler):
    """What the dashboard's routes share: answers the browser must revalidate before reuse."""

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Content-Type-Options", "nosniff")

    async def counts_and_history(self):
        """The effective pools and the counts, read as /status does (one grouped count, ``db.run``); with the history
        (``?history``), in the executor even on SQLite: scanning an hour of events at heavy churn
        takes a while (CPU as much as the database)."""
        if self.get_argument("history", None) is None:
            return await self.db.run(_read, self.config.pools, None)
        # one cache per application, shared by its handlers and the executor's threads
        cache = self.application.settings.setdefault("vmpooler_dashboard_changes", history.ChangeCache())
        return await IOLoop.current().run_in_executor(self.context.executor, _read, self.context.db,
                                                 self.config.pools, cache)


class RootHandler(DashboardHandler):
    def get(self) -> None:
        self.clear_header("Content-Type")
        self.redirect("/dashboard/", permanent=False)


class PageHandler(DashboardHandler):
    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPES[".html"])
        self.finish(render_page(self.config.settings.site_name))


class AssetHandler(DashboardHandler):
    def get(self, name: str) -> None:
        asset = assets().get(name) if name != PAGE else None
        if asset is None:
            raise ApiError(404, f"no dashboard asset {name!r}")
        self.set_header("Content-Type", asset.content_type)
        if self.get_argument("v", None) == asset.version:
            self.set_header("Cache-Control", IMMUTABLE)
        self.finish(asset.body)


class PoolStatsHandler(DashboardHandler):
    """{"<pool>": {"size": N, "ready": N[, "history": [ready, ...]][, "domain": D]}}: the history
    holds the ready count at the end of each minute of the past hour, oldest first, each repeated
    8 times; ``domain`` (ours) is the pool's DNS domain, when it has one."""

    async def get(self) -> None:
        pools, counts, past = await self.counts_and_history()
        body = {}
        for pool in pools:
            entry = body[pool.name] = {"size": pool.size, "ready": counts.get(pool.name, stat_store.NO_VMS).ready}
            if past is not None:
                entry["history"] = [n for n in _series(past, pool.name, "ready", entry["ready"])
                                    for _ in range(POINT_REPEAT)]
            if pool.domain:
                entry["domain"] = pool.domain
        self.reply(body)


class RunningStatsHandler(DashboardHandler):
    """{"<platform>": {"running": N[, "history": [running, ...]]}}, summed over the pools whose
    names start with ``<platform>-``; the history is one count per minute of the past hour."""

    async def get(self) -> None:
        pools, counts, past = await self.counts_and_history()
        body: Dict[str, Dict[str, Any]] = {}
        for pool in pools:
            entry = body.setdefault(major(pool.name), {"running": 0})
            running = counts.get(pool.name, stat_store.NO_VMS).running
            entry["running"] += running
            if past is not None:
                series = _series(past, pool.name, "running", running)
                entry["history"] = [a + b for a, b in zip(entry.get("history", [0] * len(series)), series)]
        self.reply(body)


#: (name as in openapi.json, URL pattern, handler); the stats routes take a trailing slash, as
#: the original's Sinatra routes do
ROUTES = [
    ("/", r"^/$", RootHandler),
    ("/dashboard/", r"^/dashboard/?$", PageHandler),
    ("/dashboard/stats/vmpooler/pool", r"^/dashboard/stats/vmpooler/pool/?$", PoolStatsHandler),
    ("/dashboard/stats/vmpooler/running", r"^/dashboard/stats/vmpooler/running/?$", RunningStatsHandler),
    ("/dashboard/{asset}", r"^/dashboard/([A-Za-z0-9_-][A-Za-z0-9_.-]*)$", AssetHandler),
]
