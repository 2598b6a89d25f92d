"""GET /poolstat?pool=a,b (size and ready count of pools, by name or alias) and GET /totalrunning."""
from __future__ import annotations

from vmpooler.api.base import BaseHandler
from vmpooler.api.render import alias_as_configured
from vmpooler.db import overrides
from vmpooler.db import stats as stat_store
from vmpooler.db.database import utcnow


class PoolstatHandler(BaseHandler):
    async def get(self) -> None:
        wanted = set(self.get_argument("pool", "").split(","))
        counts = await self.db.run(stat_store.pool_counts, utcnow())
        result = {}
        for pool in await self.db.run(overrides.effective_pools, self.config.pools):
            if pool.name in wanted or wanted.intersection(pool.alias):
                entry = {"max": pool.size}
                if pool.alias:
                    entry["alias"] = alias_as_configured(pool)
                entry["ready"] = counts.get(pool.name, stat_store.NO_VMS).ready
                result[pool.name] = entry
        self.reply({"pools": result})


class TotalRunningHandler(BaseHandler):
    async def get(self) -> None:
        counts = await self.db.run(stat_store.pool_counts, utcnow())
        self.reply({"running": sum(counts.get(pool.name, stat_store.NO_VMS).running for pool in self.config.pools)})
