"""GET /poolstat?pool=a,b (size and ready count of pools, by name or alias) and GET /totalrunning."""
from __future__ import annotations

from vmpooler.api.base import BaseHandler
from vmpooler.api.render import alias_as_configured
from vmpooler.db import overrides
from vmpooler.db import stats as stat_store
from vmpooler.db.database import utcnow


class PoolstatHandler(BaseHandler):
    def get(self) -> None:
        wanted = set(self.get_argument("pool", "").split(","))
        counts = stat_store.pool_counts(self.context.db, utcnow())
        result = {}
        for pool in overrides.effective_pools(self.context.db, self.config.pools):
            if pool.name in wanted or wanted.intersection(pool.alias):
                entry = {"max": pool.size}
                if pool.alias:
                    entry["alias"] = alias_as_configured(pool)
                entry["ready"] = counts.get(pool.name, {}).get("ready", 0)
                result[pool.name] = entry
        self.reply({"pools": result})


class TotalRunningHandler(BaseHandler):
    def get(self) -> None:
        counts = stat_store.pool_counts(self.context.db, utcnow())
        self.reply({"running": sum(counts.get(pool.name, {}).get("running", 0) for pool in self.config.pools)})
