"""POST /poolreset: the manager drains each named pool (completes its ready and pending VMs)
and refills it."""
from __future__ import annotations

from vmpooler.api.admin import ChangeMixin
from vmpooler.api.base import BaseHandler
from vmpooler.api.errors import ApiError
from vmpooler.api.render import shown
from vmpooler.db import overrides
from vmpooler.db.database import utcnow


class PoolResetHandler(ChangeMixin, BaseHandler):
    async def post(self) -> None:
        actor = await self.authorize_change()
        try:
            body = self.json_body()
        except ApiError as error:
            raise ApiError(400, error.error, message="JSON payload could not be parsed") from None
        refused = [name for name in body if name not in self.config.pools_by_name]
        if refused:
            raise ApiError(400, "unknown pools: " + ", ".join(shown(name) for name in refused[:5]), bad_pools=refused)
        if body:
            await self.db.run(overrides.request_reset, list(body), actor, utcnow())
            self.context.wake()
        self.reply({"ok": True}, 201)
