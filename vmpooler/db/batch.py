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
  request in it gets the ``StoreUnavailable`` it would have got alone (the API's 503);
- a transaction PostgreSQL aborts for a conflict with a concurrent one (deadlock detected,
  serialization failure: ``TransactionConflict``) is run again, as the database asks: a request
  alone up to ``CONFLICT_RETRIES`` times after a short random pause; a batch by running each of
  its requests alone, so that one request's conflict never fails its neighbours. Shared rows are
  taken in one order (db/shared.py), so conflicts are rare; a retry is the exception, not the rule.

A batch of one request runs exactly as that request alone (its own transaction, no savepoint).
On SQLite a batch runs inline on the IOLoop, one per loop turn (everything the handlers of one
turn asked for). On PostgreSQL it runs in a database thread; up to ``batches`` batches are in
flight at once, so that a request rarely waits for another's round trips, and the requests that
arrive while all are busy form the next batch: the more writes queue, the larger the batches.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import random
import time
from typing import Any, Callable, Optional

from vmpooler.db.errors import StoreUnavailable, TransactionConflict, WouldWait

log = logging.getLogger("vmpooler.state")

#: most requests in one batch, and the time after which a batch takes no more (seconds): a batch
#: on the IOLoop (SQLite) must leave it to the other requests soon; one in a database thread
#: (PostgreSQL) holds only its own requests' answers back
MAX_BATCH = 64
MAX_BATCH_SECONDS = {"inline": 0.01, "thread": 0.05}
#: reruns of a request whose transaction the database aborted for a conflict, and the longest
#: random pause before the first (doubled before each next one)
CONFLICT_RETRIES = 5
CONFLICT_PAUSE = 0.01


@dataclasses.dataclass
class Request:
    function: Callable[..., Any]
    args: tuple
    kwargs: dict
    future: asyncio.Future


class GroupCommit:
    def __init__(self, db, inline: bool, batches: int):
        self.db = db
        self.inline = inline
        self.batches = 1 if inline else batches
        self.queue: collections.deque = collections.deque()
        self.max_batch, self.max_seconds = MAX_BATCH, MAX_BATCH_SECONDS["inline" if inline else "thread"]
        self._loop: Optional[asyncio.AbstractEventLoop] = None  # the IOLoop the batches answer on
        self.in_flight = 0
        self.scheduled = False  # a batch is about to start (at the end of this loop turn)
        #: counters, for tests and benchmarks: batches committed or failed, requests in them, requests alone
        self.stats: collections.Counter = collections.Counter()

    def submit(self, function, args: tuple, kwargs: dict) -> asyncio.Future:
        """Queue one request; its future is resolved after the commit of the batch holding it."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (tests run several in turn): the old one's state is void
            self._loop, self.scheduled, self.in_flight = loop, False, 0
        future = loop.create_future()
        self.queue.append(Request(function, args, kwargs, future))
        self._start(loop)
        return future

    def _start(self, loop) -> None:
        """Start batches at the end of this loop turn (so that every request this turn's handlers
        make can join), unless that is already asked for or every batch slot is busy."""
        if self.queue and not self.scheduled and self.in_flight < self.batches:
            self.scheduled = True
            loop.call_soon(self._dispatch, loop)

    def _dispatch(self, loop) -> None:
        """Spread the queued requests over the free batch slots: with slots to spare each request
        runs alone and in parallel (on a network database a batch's requests wait for each
        other's round trips); only when every slot is busy do the requests queue into batches."""
        self.scheduled = False
        while self.queue and self.in_flight < self.batches:
            free = self.batches - self.in_flight
            taken = [self.queue.popleft() for _ in range(min(self.max_batch, -(-len(self.queue) // free)))]
            self.in_flight += 1
            if self.inline:  # one batch per loop turn: the rest of the queue waits for the next
                try:
                    with self.db.not_waiting():
                        applied = self._apply_batch(taken)
                except WouldWait:  # another process holds the lock: wait for it off the IOLoop
                    self.stats["moved_to_thread"] += 1
                    self._in_thread(loop, taken)
                    return
                self._answer(loop, applied)
                return
            self._in_thread(loop, taken)

    def _in_thread(self, loop, taken: list) -> None:
        done = loop.run_in_executor(self.db.executor(), self._apply_batch, taken)
        done.add_done_callback(lambda finished: self._answer(loop, finished.result()))

    def _apply_batch(self, taken: list) -> tuple:
        """Apply ``taken`` (in the thread that runs the batch): ([(request, ok, value)], requests
        left for the next batch by the time bound). A batch of one runs exactly as the request
        would alone (its own transaction, no savepoint)."""
        if len(taken) == 1:
            return [self._alone(taken[0])], []
        started, outcomes = time.monotonic(), []  # type: float, list
        try:
            with self.db.batch():
                for request in taken:
                    if outcomes and time.monotonic() - started >= self.max_seconds:
                        break
                    outcomes.append(_apply(self.db, request))
        except WouldWait:  # nothing was applied (the transaction rolled back): tried again in a thread
            raise
        except TransactionConflict as error:  # rolled back: each request again, on its own
            self.stats["conflicted_batches"] += 1
            log.info("a batch of %d writes was rolled back (%s); applying them one by one", len(taken), error)
            return [self._alone(request) for request in taken], []
        except Exception as error:  # the batch as a whole: each request fails as it would alone
            self.stats["failed_batches"] += 1
            if not isinstance(error, StoreUnavailable):
                log.exception("a batch of %d writes failed", len(taken))
            return [(request, False, _copy(error)) for request in taken], []
        self.stats["batches"] += 1
        self.stats["requests"] += len(outcomes)
        return outcomes, taken[len(outcomes):]

    def _alone(self, request: Request) -> tuple:
        """``request`` in its own transaction, run again (after a short random pause) while the
        database aborts it for a conflict with a concurrent transaction, at most
        ``CONFLICT_RETRIES`` times."""
        self.stats["alone"] += 1
        for attempt in range(CONFLICT_RETRIES + 1):
            outcome = _apply(self.db, request, alone=True)
            if outcome[1] or not isinstance(outcome[2], TransactionConflict) or attempt == CONFLICT_RETRIES:
                return outcome
            self.stats["conflict_retries"] += 1
            time.sleep(random.uniform(0, CONFLICT_PAUSE * 2 ** attempt))  # in a database thread
        return outcome

    def _answer(self, loop, applied: tuple) -> None:
        """On the IOLoop: answer the batch's requests in their order, put back what the time bound
        left (first in the queue), then start the next batches."""
        outcomes, left = applied
        if loop is self._loop:
            self.in_flight -= 1
        self.queue.extendleft(reversed(left))
        for request, ok, value in outcomes:
            if request.future.cancelled() or request.future.get_loop().is_closed():
                continue
            if ok:
                request.future.set_result(value)
            else:
                request.future.set_exception(value)
        if loop is self._loop:
            self._start(loop)


def _apply(db, request: Request, alone: bool = False) -> tuple:
    """One request. Inside a batch a StoreUnavailable means the transaction itself is broken: it
    fails the whole batch. Any other error is the request's own (its savepoint was rolled back by
    ``Database.write()``)."""
    try:
        return request, True, request.function(db, *request.args, **request.kwargs)
    except WouldWait:
        raise
    except StoreUnavailable as error:
        if alone:
            return request, False, error
        raise
    except Exception as error:
        return request, False, error


def _copy(error: Exception) -> Exception:
    """A StoreUnavailable of its own for each request (each is raised in its own handler)."""
    if isinstance(error, StoreUnavailable):
        return StoreUnavailable(str(error))
    return StoreUnavailable(f"the database could not apply the batch: {error}")
