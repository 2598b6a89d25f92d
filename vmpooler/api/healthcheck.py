"""GET /healthcheck: 200 {"ok": true} while the service can work; 503 with the reasons while the
database cannot take a write (this process's heartbeat row is written: a probe that only reads
passes on a read-only connection and on a full disk), while the disk holding an SQLite database is
full, or while the pool manager has stopped finishing its passes. ``?details`` adds each check's
verdict (``checks``) and which process runs the pool manager (``manager``, as in /status), for
operators; the plain answer stays the original's."""
from __future__ import annotations

from typing import Optional

from tornado.ioloop import IOLoop

from vmpooler.api.base import BaseHandler
from vmpooler.db import heartbeat
from vmpooler.db.database import StoreUnavailable


class HealthcheckHandler(BaseHandler):
    async def get(self) -> None:
        # the write waits out the database's busy timeout when it is locked: in a thread, not on the IOLoop
        database, disk = await IOLoop.current().run_in_executor(self.context.executor, self._database_checks)
        checks = {"database": database, "disk": disk, "manager": self.context.manager_stalled()}
        reasons = [reason for reason in checks.values() if reason]
        body = {"ok": False, "error": "; ".join(reasons), "reasons": reasons} if reasons else {"ok": True}
        if self.get_query_argument("details", None) is not None:
            body["checks"] = {name: {"ok": True} if reason is None else {"ok": False, "error": reason}
                              for name, reason in checks.items()}
            if database is None:
                body["manager"] = await IOLoop.current().run_in_executor(self.context.executor,
                                                                         self.context.leader)
        self.reply(body, 503 if reasons else 200)

    def _database_checks(self) -> tuple:
        """(why the database takes no write, why its disk counts as full): None each when fine."""
        return self._write_refused(), heartbeat.disk_full(self.context.db)

    def _write_refused(self) -> Optional[str]:
        try:
            heartbeat.beat(self.context.db)
        except StoreUnavailable as error:
            return f"the database is unavailable: {error}"
        return None
