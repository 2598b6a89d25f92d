"""GET /vm (pool names) and POST /vm (a JSON batch checkout, see ``checkout``)."""
from __future__ import annotations

from vmpooler.api.base import BaseHandler
from vmpooler.api.checkout import checkout, validate_body


class VmsHandler(BaseHandler):
    def get(self) -> None:
        self.reply([pool.name for pool in self.config.pools])

    async def post(self) -> None:
        requested = self.versioned_body()
        if self.version.validates:
            validate_body(requested)
        token = await self.credentials.token_if_configured(self.request, False)
        self.reply(await checkout(self.context, requested, token, self.version))
