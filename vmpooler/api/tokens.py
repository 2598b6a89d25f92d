"""/token: create, list, inspect and delete tokens. Without an auth store every route is 404.

Tokens are stored as hashes, so GET /token lists each by its 8-character prefix; the full token
is shown once, by POST /token. DELETE /token/<t> takes the full token, or, from its owner
(Basic auth), the listed prefix.
"""
from __future__ import annotations

import logging
from typing import Any, Dict

from vmpooler.api.base import BaseHandler
from vmpooler.api.errors import ApiError
from vmpooler.api.render import ruby_time
from vmpooler.auth.tokens import PREFIX_LENGTH, issue, token_hash
from vmpooler.db import tokens as token_store
from vmpooler.db.database import utcnow

log = logging.getLogger("vmpooler.api")


class _TokenBase(BaseHandler):
    async def prepare(self) -> None:
        await super().prepare()
        if self.context.auth is None:
            raise ApiError(404)


class TokensHandler(_TokenBase):
    async def get(self) -> None:
        user = await self.credentials.basic_user(self.request)
        rows = await self.db.run(token_store.of_user, user)
        if not rows:
            raise ApiError(404, f"{user} has no tokens")
        body: Dict[str, Any] = {"ok": True}
        for row in rows:
            body[row.prefix] = {"created": ruby_time(row.created_at),
                                "last": ruby_time(row.last_used_at) if row.last_used_at else "never"}
        self.reply(body)

    async def post(self) -> None:
        user = await self.credentials.basic_user(self.request)
        token = await self.db.run(issue, user, utcnow())
        log.info("token %s... created for %s", token[:PREFIX_LENGTH], user)
        self.reply({"ok": True, "token": token})


class TokenHandler(_TokenBase):
    async def get(self, token: str) -> None:
        # No credentials are needed (as the original): an unknown token counts as a wrong one.
        row = await self.db.run(token_store.by_hash, token_hash(token))
        running = await self.db.run(token_store.running_vms, row.token_hash) if row is not None else []
        if row is None:
            self.credentials.wrong_token(self.request, "no such token", status=404)
        info = {"user": row.user, "created": ruby_time(row.created_at)}
        if row.last_used_at is not None:
            info["last"] = ruby_time(row.last_used_at)
        if running:
            info["vms"] = {"running": running}
        self.reply({"ok": True, token: info})

    async def delete(self, token: str) -> None:
        user = await self.credentials.basic_user(self.request)
        if len(token) == PREFIX_LENGTH:
            rows = await self.db.run(token_store.of_user, user, prefix=token)
        else:
            rows = [row for row in [await self.db.run(token_store.by_hash, token_hash(token))] if row]
        if len(rows) > 1:
            raise ApiError(409, "several of your tokens start with that prefix; give the whole token")
        if not rows or not await self.db.run(token_store.remove, rows[0].id):
            raise ApiError(404, "no such token")
        log.info("token %s... of %s deleted by %s", rows[0].prefix, rows[0].user, user)
        self.reply({"ok": True})
