"""GET /dlq: the dead-letter queue (3.8.1 keeps it in Redis and shows it on no route): every VM
that failed, newest first, with its pool, where it failed, the error's class and message, its
retry count and on-demand request. ``?pool=`` and ``?queue=`` (clone, pending, ready) narrow it,
``?limit=`` (1 to 1000, default 100) bounds it."""
from __future__ import annotations

from vmpooler.api.base import BaseHandler
from vmpooler.api.errors import ApiError
from vmpooler.api.render import rfc3339, shown
from vmpooler.db import dead_letters
from vmpooler.model import DeadLetterQueue

MAX_LIMIT = 1000


class DeadLetterHandler(BaseHandler):
    async def get(self) -> None:
        pool = self.get_query_argument("pool", None)
        queue = self.get_query_argument("queue", None)
        if pool is not None and pool not in {p.name for p in self.config.pools}:
            raise ApiError(404, f"unknown pool: {shown(pool)}")
        if queue is not None and queue not in {str(q) for q in DeadLetterQueue}:
            raise ApiError(400, f"queue must be one of {', '.join(str(q) for q in DeadLetterQueue)}, not "
                                f"{shown(queue)}")
        limit = self._limit()
        entries = await self.db.run(dead_letters.entries, pool, queue, limit)
        self.reply({"ok": True, "enabled": self.config.settings.dlq_enabled, "count": len(entries),
                    "dlq": [{"vm": e.vm, "pool": e.pool, "pool_alias": e.pool_alias, "queue_from": e.queue_from,
                             "error_class": e.error_class, "error_message": e.error_message,
                             "failed_at": rfc3339(e.failed_at), "retry_count": e.retry_count,
                             "request_id": e.request_id} for e in entries]})

    def _limit(self) -> int:
        raw = self.get_query_argument("limit", "100")
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise ApiError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}, not {shown(raw)}")
        return int(raw)
