"""/token: create, list, inspect and delete tokens. Without an auth store every route is 404.

Tokens are stored as hashes, so GET /token lists each by its 8-character prefix; the full token
is shown once, by POST /token. DELETE /token/<t> takes the full token, or, from its owner
(Basic auth), the listed prefix.
"""
from __future__ import annotations

import logging

from vmpooler.api.base import BaseHandler
from vmpooler.api.errors import ApiError
from vmpooler.api.render import ruby_time
from vmpooler.auth import tokens as token_store
from vmpooler.db import queries
from vmpooler.db.database import utcnow

log = logging.getLogger("vmpooler.api")


class _TokenBase(BaseHandler):
    def prepare(self) -> None:
        super().prepare()
        if self.context.auth is None:
            raise ApiError(404)


class TokensHandler(_TokenBase):
    async def get(self) -> None:
        user = await self.credentials.basic_user(self.request)
        with self.context.db.read() as conn:
            rows = queries.tokens_of_user(conn, user)
        if not rows:
            raise ApiError(404, f"{user} has no tokens")
        body = {"ok": True}
        for row in rows:
            body[row.prefix] = {"created": ruby_time(row.created_at),
                                "last": ruby_time(row.last_used_at) if row.last_used_at else "never"}
        self.reply(body)

    async def post(self) -> None:
        user = await self.credentials.basic_user(self.request)
        token = token_store.create(self.context.db, user, utcnow())
        log.info("token %s... created for %s", token[:token_store.PREFIX_LENGTH], user)
        self.reply({"ok": True, "token": token})


class TokenHandler(_TokenBase):
    def get(self, token: str) -> None:
        # No credentials are needed (as the original): an unknown token counts as a wrong one.
        with self.context.db.read() as conn:
            row = queries.token_by_hash(conn, token_store.token_hash(token))
            running = queries.running_vms_of_token(conn, row.token_hash) if row is not None else []
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
        with self.context.db.read() as conn:
            if len(token) == token_store.PREFIX_LENGTH:
                rows = queries.tokens_of_user(conn, user, prefix=token)
            else:
                rows = [row for row in [queries.token_by_hash(conn, token_store.token_hash(token))] if row]
        if len(rows) > 1:
            raise ApiError(409, "several of your tokens start with that prefix; give the whole token")
        if not rows or not token_store.remove(self.context.db, rows[0].id):
            raise ApiError(404, "no such token")
        log.info("token %s... of %s deleted by %s", rows[0].prefix, rows[0].user, user)
        self.reply({"ok": True})
