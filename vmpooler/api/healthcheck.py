"""GET /healthcheck: 200 {"ok": true} while the service can work; 503 with the reasons when the
database cannot take a write or the pool manager has stopped finishing its passes.
``?details`` adds which process runs the pool manager (``manager``, as in /status), for operators
of several processes; the plain answer stays the original's."""
from __future__ import annotations

from tornado.ioloop import IOLoop

from vmpooler.api.base import BaseHandler
from vmpooler.db.database import StoreUnavailable


class HealthcheckHandler(BaseHandler):
    rate_limited = False  # balancers and monitors poll it

    async def get(self) -> None:
        reasons = []
        try:  # waits out the database's busy timeout when it is locked: in a thread, not on the IOLoop
            await IOLoop.current().run_in_executor(self.context.executor, self.context.db.ping)
        except StoreUnavailable as error:
            reasons.append(f"the database is unavailable: {error}")
        stalled = self.context.manager_stalled()
        if stalled:
            reasons.append(stalled)
        body = {"ok": False, "error": "; ".join(reasons), "reasons": reasons} if reasons else {"ok": True}
        if self.get_query_argument("details", None) is not None and not reasons:
            body["manager"] = await IOLoop.current().run_in_executor(self.context.executor, self.context.leader)
        self.reply(body, 503 if reasons else 200)
