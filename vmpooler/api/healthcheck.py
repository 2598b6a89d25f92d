"""GET /healthcheck: 200 {"ok": true} while the service can work; 503 with the reasons while the
database cannot take a write (this process's heartbeat row is written: a probe that only reads
passes on a read-only connection and on a full disk), while the disk holding an SQLite database is
full, or while the pool manager has stopped finishing its passes. ``?details`` adds each check's
verdict (``checks``) and which process runs the pool manager (``manager``, as in /status), for
operators; the plain answer stays the original's."""
from __future__ import annotations

from typing import Any, Dict, Optional

from tornado.ioloop import IOLoop

from vmpooler.api.base import BaseHandler
from vmpooler.db import heartbeat, queue_health
from vmpooler.db.database import StoreUnavailable, utcnow


class HealthcheckHandler(BaseHandler):
    rate_limited = False  # balancers and monitors poll it

    async def get(self) -> None:
        db = self.context.db
        checks = {"database": await self._write_refused(), "disk": await db.run(heartbeat.disk_full),
                  "manager": self.context.manager_stalled()}
        reasons = [reason for reason in checks.values() if reason]
        body: Dict[str, Any] = {"ok": False, "error": "; ".join(reasons), "reasons": reasons} if reasons else {"ok": True}
        if self.get_query_argument("details", None) is not None:
            body["checks"] = {name: {"ok": True} if reason is None else {"ok": False, "error": reason}
                              for name, reason in checks.items()}
            if checks["database"] is None:
                body["manager"] = await IOLoop.current().run_in_executor(self.context.executor,
                                                                         self.context.leader)
                if self.config.settings.health_check_enabled:  # shown, never a 503 (3.8.1 shows it nowhere)
                    body["queue_health"] = (await self.db.run(
                        queue_health.measure, utcnow(), self.config.settings.health_thresholds,
                        [pool.name for pool in self.config.pools])).as_json()
        self.reply(body, 503 if reasons else 200)

    async def _write_refused(self) -> Optional[str]:
        """Why the database takes no write now, or None. Through the group commit, as every write:
        a lock held by another process is waited for off the IOLoop, up to the busy timeout."""
        try:
            await self.context.db.run(heartbeat.beat)
        except StoreUnavailable as error:
            return f"the database is unavailable: {error}"
        return None
