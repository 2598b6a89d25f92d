"""GET /vm (pool names) and POST /vm (a JSON batch checkout, see ``checkout``)."""
from __future__ import annotations

from vmpooler.api.base import BaseHandler
from vmpooler.api.checkout import checkout


class VmsHandler(BaseHandler):
    def get(self) -> None:
        self.reply([pool.name for pool in self.config.pools])

    def post(self) -> None:
        requested = self.json_body()
        self.reply(checkout(self.context, requested, self.credentials.token_if_configured(self.request, False)))
