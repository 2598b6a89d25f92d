"""GET /vm (pool names) and POST /vm (a JSON batch checkout, see ``checkout``)."""
from __future__ import annotations

from vmpooler.api.base import BaseHandler
from vmpooler.api.checkout import answer, validate_body
from vmpooler.api.delivery import HandsOut


class VmsHandler(HandsOut, BaseHandler):
    def get(self) -> None:
        self.reply([pool.name for pool in self.config.pools])

    async def post(self) -> None:
        requested = self.versioned_body()
        if self.version.validates:
            validate_body(requested)
        await answer(self, requested)
