"""The floors: bare Tornado apps doing, with the database driver alone, what a route of the service
needs from the database at the least. ``benchmarks/server.py floor`` serves one of them:

- ``floor_app(None)``: GET /floor, a small JSON object (the HTTP floor);
- ``floor_app(path)``: sqlite3; GET /count (the per-pool, per-state count of /status), POST
  /api/v1/vm/<pool> (one transaction: pick the longest-ready VM, the guarded UPDATE) and DELETE
  /api/v1/vm/<name> (one transaction giving it back);
- ``floor_app(path, promises=True)``: sqlite3, the floor with the same promises as the service
  (issue 21): per checkout one transaction with the pick, the guarded UPDATE and the event; right
  after answering, the taken VM replaced: a pending row and its event in one transaction, then
  ready with its event and a clone-duration row in another. A return marks the VM completed with
  its event, answers, then destroys it (guarded UPDATE and event) in a second transaction;
- ``postgres_app(url)``: psycopg; GET /api/v1/vm/<host> reads the VM's row by name with one
  SELECT, POST /api/v1/vm/<pool> is one transaction (the FOR UPDATE SKIP LOCKED pick, the guarded
  UPDATE, the event, COMMIT), DELETE marks the VM completed with its event in one transaction.

The database work runs on the IOLoop, blocking: a floor has one request in flight at a time, and
no thread hand-off is the cheapest way to do it.
"""
from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import sqlite3

import tornado.web

COUNT_SQL = ("SELECT pool, state, count(*) FROM vms WHERE state IN ('pending', 'ready', 'running', 'completed') "
             "GROUP BY pool, state")
PICK_SQL = "SELECT id, name FROM vms WHERE pool = ? AND state = 'ready' ORDER BY ready_at, id LIMIT 1"
EVENT_SQL = ("INSERT INTO vm_events (vm_id, vm_name, pool, at, from_state, to_state, reason) "
             "VALUES (?, ?, ?, ?, ?, ?, ?)")

# What the service sends to PostgreSQL for GET /vm/<host> (db/vms.py _latest_with_extras) and for a
# checkout (_take_one: the oldest ready VM, skipping rows another transaction holds; the guarded
# change; its event), in one transaction each.
PG_READ_SQL = ("SELECT * FROM vms WHERE name = %s ORDER BY id DESC LIMIT 1",
               "SELECT name, value FROM vm_tags WHERE vm_id = %s ORDER BY id",
               "SELECT kind, arg FROM tasks WHERE vm_id = %s AND state = 'done' AND kind IN ('snapshot', 'disk') "
               "ORDER BY id")
PG_TAKE_SQL = ("SELECT id, name FROM vms WHERE pool = %s AND state = 'ready' ORDER BY ready_at, id LIMIT 1 "
               "FOR UPDATE SKIP LOCKED")
PG_MOVE_SQL = ("UPDATE vms SET state = 'running', checkout_at = now(), state_changed_at = now() WHERE id = %s "
               "AND state = 'ready'")
PG_EVENT_SQL = ("INSERT INTO vm_events (vm_id, vm_name, pool, at, from_state, to_state, reason) "
                "VALUES (%s, %s, %s, now(), %s, %s, %s)")


def _now() -> str:
    return str(datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None))


# --- sqlite3: the writes, shared by the floors and the refill floor (scenarios.refill_floor) -------
def connect_sqlite(path: str) -> sqlite3.Connection:
    """A connection as the service configures SQLite (WAL, synchronous NORMAL), in autocommit mode:
    each transaction is explicit."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection):
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when the body raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def insert_pending(db: sqlite3.Connection, name: str, pool: str, now: str) -> int:
    """One transaction: a new VM ``name`` of ``pool`` (pending, clone requested) and its event."""
    with transaction(db):
        vm_id = db.execute("INSERT INTO vms (name, live_name, pool, provider, template, state, state_changed_at, "
                           "created_at, clone_attempts, destroy_attempts) VALUES (?, ?, ?, 'dummy', ?, 'pending', "
                           "?, ?, 0, 0)", (name, name, pool, pool, now, now)).lastrowid
        db.execute(EVENT_SQL, (vm_id, name, pool, now, None, "pending", "clone requested"))
    return vm_id


def mark_ready(db: sqlite3.Connection, vm_id: int, name: str, pool: str, now: str, clone_seconds=None) -> None:
    """One transaction: the pending VM ready (guarded), its event, and when ``clone_seconds`` is
    given its clone-duration sample."""
    with transaction(db):
        db.execute("UPDATE vms SET state = 'ready', state_changed_at = ?, cloned_at = ?, ready_at = ? "
                   "WHERE id = ? AND state = 'pending'", (now, now, now, vm_id))
        db.execute(EVENT_SQL, (vm_id, name, pool, now, "pending", "ready", "booted"))
        if clone_seconds is not None:
            db.execute("INSERT INTO durations (kind, pool, vm_name, seconds, at, day) VALUES ('clone', ?, ?, ?, ?, ?)",
                       (pool, name, clone_seconds, now, now[:10]))


def take_ready(db: sqlite3.Connection, pool: str, now: str, event: bool):
    """One transaction: the longest-ready VM of ``pool`` running (guarded), with its event when
    ``event``; (id, name), or None when the pool is empty."""
    with transaction(db):
        row = db.execute(PICK_SQL, (pool,)).fetchone()
        if row is None:
            return None
        db.execute("UPDATE vms SET state = 'running', checkout_at = ?, state_changed_at = ? "
                   "WHERE id = ? AND state = 'ready'", (now, now, row[0]))
        if event:
            db.execute(EVENT_SQL, (row[0], row[1], pool, now, "ready", "running", "checked out"))
    return row


def _move_sqlite(db: sqlite3.Connection, where: str, params: tuple, from_state: str, to_state: str, column: str,
                 reason: str, now: str):
    """One transaction: the VM matching ``where`` (and in ``from_state``) moved to ``to_state``,
    stamping ``column``, with its event; (id, name, pool) or None when no VM matched."""
    with transaction(db):
        row = db.execute(f"UPDATE vms SET state = ?, state_changed_at = ?, {column} = ? WHERE {where} "
                         f"AND state = ? RETURNING id, name, pool", (to_state, now, now, *params, from_state)).fetchone()
        if row is not None:
            db.execute(EVENT_SQL, (row[0], row[1], row[2], now, from_state, to_state, reason))
    return row


# --- the handlers ---------------------------------------------------------------------------------
class FloorHandler(tornado.web.RequestHandler):
    def get(self):
        self.write({"ok": True})


class CountHandler(tornado.web.RequestHandler):
    def get(self):
        counts = {}
        for pool, state, n in self.settings["db"].execute(COUNT_SQL):
            counts.setdefault(pool, {})[state] = n
        self.write({"ok": True, "pools": counts})


class CheckoutHandler(tornado.web.RequestHandler):
    """The plain floor: one transaction per checkout (pick, guarded UPDATE), no event, no refill."""

    def post(self, pool):
        row = take_ready(self.settings["db"], pool, _now(), event=False)
        if row is None:
            self.set_status(503)
            return self.write({"ok": False})
        self.write({"ok": True, pool: {"hostname": row[1]}})

    def delete(self, name):
        with transaction(self.settings["db"]) as db:
            db.execute("UPDATE vms SET state = 'ready' WHERE live_name = ? AND state = 'running'", (name,))
        self.write({"ok": True})


class PromisesHandler(tornado.web.RequestHandler):
    """The floor with the same promises: each change its own guarded transaction with its event,
    the refill and the destroy done right after answering, as the service's manager does them."""

    def post(self, pool):
        db, now = self.settings["db"], _now()
        row = take_ready(db, pool, now, event=True)
        if row is None:
            self.set_status(503)
            return self.finish({"ok": False})
        self.finish({"ok": True, pool: {"hostname": row[1]}})
        name = f"{pool}-f{next(self.settings['names']):06d}"  # seeded names are <pool>-<n>: never the same
        vm_id = insert_pending(db, name, pool, now)
        mark_ready(db, vm_id, name, pool, _now(), clone_seconds=0.0)

    def delete(self, name):
        db, now = self.settings["db"], _now()
        row = _move_sqlite(db, "live_name = ?", (name,), "running", "completed", "completed_at", "returned", now)
        if row is None:
            self.set_status(404)
            return self.finish({"ok": False})
        self.finish({"ok": True})
        _move_sqlite(db, "id = ?", (row[0],), "completed", "destroyed", "destroyed_at", "destroyed", now)


class PostgresVmHandler(tornado.web.RequestHandler):
    """GET: the VM's row by name, one SELECT; POST: one checkout transaction; DELETE: one
    transaction marking the VM completed with its event."""

    def get(self, name):
        with self.settings["pg"].cursor() as cursor:
            cursor.execute(PG_READ_SQL[0], (name,))
            row = cursor.fetchone()
            columns = [column.name for column in cursor.description]
        if row is None:
            self.set_status(404)
            return self.write({"ok": False})
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"ok": True, name: dict(zip(columns, row))}, default=str))

    def post(self, pool):
        conn = self.settings["pg"]
        with conn.transaction(), conn.cursor() as cursor:
            cursor.execute(PG_TAKE_SQL, (pool,))
            row = cursor.fetchone()
            if row is not None:
                cursor.execute(PG_MOVE_SQL, (row[0],))
                cursor.execute(PG_EVENT_SQL, (row[0], row[1], pool, "ready", "running", "checked out"))
        if row is None:
            self.set_status(503)
            return self.write({"ok": False})
        self.write({"ok": True, pool: {"hostname": row[1]}})

    def delete(self, name):
        conn = self.settings["pg"]
        with conn.transaction(), conn.cursor() as cursor:
            cursor.execute("UPDATE vms SET state = 'completed', completed_at = now(), state_changed_at = now() "
                           "WHERE live_name = %s AND state = 'running' RETURNING id, pool", (name,))
            row = cursor.fetchone()
            if row is not None:
                cursor.execute(PG_EVENT_SQL, (row[0], name, row[1], "running", "completed", "returned"))
        self.set_status(200 if row else 404)
        self.write({"ok": row is not None})


# --- the apps ---------------------------------------------------------------------------------------
def floor_app(db_path=None, promises: bool = False) -> tornado.web.Application:
    routes = [(r"/floor", FloorHandler)]
    settings = {}
    if db_path:
        routes += [(r"/count", CountHandler),
                   (r"/api/v1/vm/([^/]+)", PromisesHandler if promises else CheckoutHandler)]
        settings.update(db=connect_sqlite(db_path), names=itertools.count())
    return tornado.web.Application(routes, **settings)


def postgres_app(url: str) -> tornado.web.Application:
    import psycopg

    from vmpooler.db.notify import libpq_url

    conn = psycopg.connect(libpq_url(url), autocommit=True)  # a read is its one statement; writes open a transaction
    return tornado.web.Application([(r"/floor", FloorHandler), (r"/api/v1/vm/([^/]+)", PostgresVmHandler)], pg=conn)
