"""Whether the database can take a write now, proven by making one: GET /healthcheck and the
start of ``vmpooler serve`` rewrite this process's row of ``heartbeats``. A probe that only reads,
or only opens a transaction, passes on a full disk and on a connection SQLite opened read-only."""
from __future__ import annotations

import datetime
import os
import socket
from typing import Optional

from sqlalchemy import delete

from vmpooler.db.database import Database, upsert, utcnow, writes
from vmpooler.db.models import heartbeats

#: this process's row (host and pid: several processes may share a database)
PROCESS = f"{socket.gethostname()}:{os.getpid()}"
#: rows of processes that stopped beating this long ago are removed
KEEP = datetime.timedelta(days=1)
#: an SQLite database whose file system has less room than this counts as on a full disk: its next
#: growth (a new page, a longer WAL) fails even when this heartbeat still fits
MIN_FREE_BYTES = 1024 * 1024


@writes
def beat(db: Database) -> None:
    """Write this process's heartbeat in a transaction of its own; StoreUnavailable when the
    database cannot take it (read-only, full, locked past the busy timeout, unreachable).
    Through ``Database.run`` (the group commit) on the IOLoop."""
    with db.write(invalidates=False) as conn:  # no cached read shows heartbeats
        now = utcnow()
        upsert(conn, heartbeats, ("process",), process=PROCESS, beat_at=now)
        conn.execute(delete(heartbeats).where(heartbeats.c.beat_at < now - KEEP))


def disk_full(db: Database) -> Optional[str]:
    """Why the disk holding an SQLite database counts as full, or None (and None on PostgreSQL,
    whose disk is the server's: its heartbeat write fails when it is full)."""
    if not db.is_sqlite or not db.engine.url.database:
        return None
    directory = os.path.dirname(os.path.abspath(db.engine.url.database))
    try:
        stat = os.statvfs(directory)
    except OSError as error:
        return f"the database's directory {directory} cannot be examined: {error.strerror}"
    free = stat.f_bavail * stat.f_frsize
    if free >= MIN_FREE_BYTES:
        return None
    return f"the disk holding the database is full ({free // 1024} KiB free in {directory})"
