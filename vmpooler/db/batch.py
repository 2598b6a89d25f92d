"""Group commit: the write requests that arrive together share one database transaction.

``Database.run`` hands every ``@writes`` function here. Requests queue; a batch takes at most
``MAX_BATCH`` of them (and stops taking more once it has run ``MAX_BATCH_SECONDS``), applies each
in order in ONE transaction, each request inside its own SAVEPOINT (``Database.write()`` inside a
batch), commits, and only then answers every request of the batch, in order. So:

- each request is all-or-nothing on its own: one checkout's shortfall rolls back its savepoint
  only, and its neighbours commit;
- a request sees the effects of the requests before it in the batch (a second checkout takes
  another VM), and nobody is answered before the commit that holds what it was told: a kill -9
  before the commit loses only unanswered requests;
- when the batch as a whole fails (the database is locked, gone, or the commit fails), every
  request in it gets the ``StoreUnavailable`` it would have got alone (the API's 503).

On SQLite a batch runs inline on the IOLoop, one per loop turn (everything the handlers of one
turn asked for). On PostgreSQL it runs in a database thread; up to ``batches`` batches are in
flight at once, and requests that arrive meanwhile form the next batch: the slower the database,
the larger the batches.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time

from vmpooler.db.errors import StoreUnavailable

log = logging.getLogger("vmpooler.state")

#: most requests in one batch, and the time after which a batch takes no more (seconds): a batch
#: on the IOLoop (SQLite) must leave it to the other requests soon
MAX_BATCH = 64
MAX_BATCH_SECONDS = 0.01


@dataclasses.dataclass
class Request:
    function: object
    args: tuple
    kwargs: dict
    future: asyncio.Future


class GroupCommit:
    def __init__(self, db, inline: bool, batches: int):
        self.db = db
        self.inline = inline
        self.batches = 1 if inline else batches
        self.queue: collections.deque = collections.deque()
        self.max_batch, self.max_seconds = MAX_BATCH, MAX_BATCH_SECONDS
        self.in_flight = 0
        self.scheduled = False  # a batch is about to start (at the end of this loop turn)
        #: counters, for tests and benchmarks: batches committed or failed, requests applied
        self.stats = collections.Counter()

    def submit(self, function, args: tuple, kwargs: dict) -> asyncio.Future:
        """Queue one request; its future is resolved after the commit of the batch holding it."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.queue.append(Request(function, args, kwargs, future))
        self._start(loop)
        return future

    def _start(self, loop) -> None:
        """Start a batch at the end of this loop turn (so that every request this turn's handlers
        make joins it), unless one is about to start or as many as allowed are in flight."""
        if self.queue and not self.scheduled and self.in_flight < self.batches:
            self.scheduled = True
            loop.call_soon(self._dispatch, loop)

    def _dispatch(self, loop) -> None:
        self.scheduled = False
        self.in_flight += 1
        if self.inline:
            self._answer(loop, self._apply_queued())
            return
        done = loop.run_in_executor(self.db.executor(), self._apply_queued)
        done.add_done_callback(lambda finished: self._answer(loop, finished.result()))

    def _apply_queued(self) -> list:
        """Take and apply one batch (in the thread that runs it); [(request, ok, value)]."""
        started, taken, outcomes = time.monotonic(), [], []
        if not self.queue:  # a batch beside this one took them
            return outcomes
        try:
            with self.db.batch():
                while (self.queue and len(taken) < self.max_batch
                       and (not taken or time.monotonic() - started < self.max_seconds)):
                    request = self.queue.popleft()
                    taken.append(request)
                    outcomes.append(_apply(self.db, request))
        except Exception as error:  # the batch as a whole: each request fails as it would alone
            self.stats["failed_batches"] += 1
            if not isinstance(error, StoreUnavailable):
                log.exception("a batch of %d writes failed", len(taken))
            return [(request, False, _copy(error)) for request in taken]
        self.stats["batches"] += 1
        self.stats["requests"] += len(taken)
        return outcomes

    def _answer(self, loop, outcomes: list) -> None:
        """On the IOLoop: answer the batch's requests in their order, then start the next batch."""
        self.in_flight -= 1
        for request, ok, value in outcomes:
            if request.future.cancelled():
                continue
            if ok:
                request.future.set_result(value)
            else:
                request.future.set_exception(value)
        self._start(loop)


def _apply(db, request: Request) -> tuple:
    """One request inside the batch. A StoreUnavailable means the transaction itself is broken:
    it fails the whole batch. Any other error is the request's own (its savepoint was rolled back
    by ``Database.write()``)."""
    try:
        return request, True, request.function(db, *request.args, **request.kwargs)
    except StoreUnavailable:
        raise
    except Exception as error:
        return request, False, error


def _copy(error: Exception) -> Exception:
    """A StoreUnavailable of its own for each request (each is raised in its own handler)."""
    if isinstance(error, StoreUnavailable):
        return StoreUnavailable(str(error))
    return StoreUnavailable(f"the database could not apply the batch: {error}")
