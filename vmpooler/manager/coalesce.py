"""Writes made in one IOLoop turn by many tasks, submitted as one: the clones a fill started end
together (a provider that answers at once ends them in the same turn), and recording them in one
transaction (each VM still its own guarded UPDATE with its events) costs one commit, one set of
shared-row changes (db/shared.py: the day's durations, the pool's last boot) and, on PostgreSQL,
one transaction's round trips, where one transaction per VM would take as many of each and queue
on the shared rows' locks."""
from __future__ import annotations

import asyncio
from typing import Any, Callable, List


class Coalesced:
    """``await coalesced(item)``: ``item``'s answer from ``function(db, items)``, a ``@writes``
    function of db/ given every item asked for in the same IOLoop turn and answering a list, one
    answer per item, in order. An error of the write is every caller's."""

    def __init__(self, db, function: Callable[..., List[Any]]):
        self.db = db
        self.function = function
        self._waiting: list = []  # (item, future) asked for in this turn

    def __call__(self, item) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._submit)
        self._waiting.append((item, future))
        return future

    def _submit(self) -> None:
        waiting, self._waiting = self._waiting, []
        written = asyncio.ensure_future(self.db.run(self.function, [item for item, _ in waiting]))
        written.add_done_callback(lambda done: _answer(done, [future for _, future in waiting]))


def _answer(done: asyncio.Future, futures: list) -> None:
    if done.cancelled():
        for future in futures:
            future.cancel()
        return
    error = done.exception()
    for index, future in enumerate(futures):
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(done.result()[index])
