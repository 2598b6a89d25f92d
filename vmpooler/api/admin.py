"""What the run-time configuration routes share (/config/poolsize, /config/pooltemplate,
/config/clonetarget, /poolreset): the experimental_features switch, the token and ``:auth:
admins`` check; their body is ``{"<pool>": value}`` (``BaseHandler.json_body``: anything else,
``null`` included, is a 400)."""
from __future__ import annotations

from vmpooler.api.base import BaseHandler
from vmpooler.api.errors import ApiError
from vmpooler.db.overrides import Actor


class ChangeMixin(BaseHandler):
    async def authorize_change(self) -> Actor:
        """Who asks, once they may: 405 while experimental_features is off (before anything else,
        as the original), a token when an auth store is configured (401), and one of the users of
        ``:auth: admins`` when that is set (403)."""
        if not self.config.settings.experimental_features:
            raise ApiError(405, "changing the pool configuration at run time needs experimental_features")
        if self.context.auth is None:
            return Actor(None, self.request.remote_ip)
        row = await self.credentials.token(self.request, required=True)
        admins = self.config.auth.get("admins")
        if admins is not None and row.user not in admins:
            raise ApiError(403, f"only the admins (:auth: admins) may change the pool configuration, "
                           f"and {row.user!r} is not one")
        return Actor(row.user, self.request.remote_ip)
