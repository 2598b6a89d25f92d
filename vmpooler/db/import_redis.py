"""``vmpooler db import-redis``: the original's state (db/redis_reader.py) written into our database.

All or nothing, in one transaction. The target must hold no data of its own (VMs, tokens, requests,
overrides, samples), so an import never merges into a running service's state; a second run
against a database this import already filled from the same source does nothing and says so, which
makes the command safe to repeat. Every VM gets an event naming where it came from, every token
is stored by its hash only, and what cannot be carried over is counted with the reason.
"""
from __future__ import annotations

import dataclasses
import datetime
import re
from typing import Dict, List, Optional

from sqlalchemy import func, insert, select

from vmpooler.db import stats
from vmpooler.db.database import Database
from vmpooler.db.events import record_event
from vmpooler.db.models import (dead_letters, durations, ondemand_requests, ondemand_wants, pool_drains, pool_events,
                                pool_overrides, tasks, tokens, vm_tags, vms)
from vmpooler.db.redis_reader import OriginalRequest, OriginalState, OriginalVM, parse_time
from vmpooler.model import COMPLETED, DONE, PENDING, READY, RUNNING, RequestState, TaskKind

#: the pool_events action that marks a finished import (pool "*": it concerns every pool)
IMPORT_ACTION = "import-redis"
#: tables whose rows mean the database is in use: an import refuses it
_DATA_TABLES = (vms, tokens, ondemand_requests, pool_overrides, durations, dead_letters)
_STATES = {"running": RUNNING, "ready": READY, "pending": PENDING, "completed": COMPLETED,
           "discovered": COMPLETED}
_REQUEST_STATES = {None: RequestState.PENDING, "ready": RequestState.READY, "failed": RequestState.FAILED,
                   "deleted": RequestState.DELETED}
_DISK = re.compile(r"\+?(\d+)gb", re.IGNORECASE)


class ImportRefused(Exception):
    """The import cannot run against this database; nothing was written."""


@dataclasses.dataclass
class ImportReport:
    source: str
    imported: Dict[str, int] = dataclasses.field(default_factory=dict)
    skipped: List[str] = dataclasses.field(default_factory=list)  # "what: why"
    already: Optional[datetime.datetime] = None  # set when an earlier run imported this source

    def count(self, what: str, n: int = 1) -> None:
        self.imported[what] = self.imported.get(what, 0) + n


def import_state(db: Database, state: OriginalState, pools: dict, default_lifetime: float, source: str,
                 now: datetime.datetime, token_hash) -> ImportReport:
    """Write ``state`` into ``db``: ``pools`` are the configured pools by name (a VM of a pool we
    do not have is skipped), ``token_hash`` hashes a token as the service stores it."""
    report = ImportReport(source)
    with db.write() as conn:
        earlier = conn.execute(select(pool_events.c.at).where(
            pool_events.c.action == IMPORT_ACTION, pool_events.c.after == source)).scalar()
        if earlier is not None:
            report.already = earlier
            return report
        occupied = [table.name for table in _DATA_TABLES
                    if conn.execute(select(func.count()).select_from(table)).scalar()]
        if occupied:
            raise ImportRefused("the database already holds data (in " + ", ".join(occupied) + "); "
                                "import only into an empty database")
        hashes = _import_tokens(conn, state, report, token_hash)
        ids = _import_vms(conn, state, pools, default_lifetime, now, source, hashes, report)
        _import_requests(conn, state.requests, pools, ids, now, hashes, report)
        _import_pool_changes(conn, state, pools, now, report)
        _import_durations(conn, state, report)
        _import_dead_letters(conn, state, now, report)
        conn.execute(insert(pool_events).values(pool="*", at=now, action=IMPORT_ACTION, before=None,
                                                after=source, user=None, address=None))
    return report


def _import_tokens(conn, state: OriginalState, report: ImportReport, token_hash) -> dict:
    hashes = {}
    for token in state.tokens:
        if not token.user:
            report.skipped.append(f"token {token.token[:8]}...: it has no user")
            continue
        digest = token_hash(token.token)
        conn.execute(insert(tokens).values(token_hash=digest, prefix=token.token[:8], user=token.user,
                                           created_at=token.created or token.last or datetime.datetime(1970, 1, 1),
                                           last_used_at=token.last))
        hashes[token.token] = digest
        report.count("tokens")
    return hashes


def _import_vms(conn, state, pools, default_lifetime, now, source, hashes, report) -> dict:
    ids = {}
    for vm in state.vms:
        pool = pools.get(vm.pool)
        if pool is None:
            report.skipped.append(f"VM {vm.name}: its pool {vm.pool} is not configured here")
            continue
        row = _vm_row(vm, pool, default_lifetime, now, hashes)
        vm_id = conn.execute(insert(vms).values(**row)).inserted_primary_key[0]
        ids[vm.name] = vm_id
        record = _EventVM(vm_id, vm.name, pool.name)
        record_event(conn, record, None, row["state"], f"imported from {source}: {vm.queue} in the original", now)
        _import_extras(conn, vm, vm_id, now, report)
        report.count(f"VMs {row['state']}")
    return ids


@dataclasses.dataclass(frozen=True)
class _EventVM:
    id: int
    name: str
    pool: str


def _vm_row(vm: OriginalVM, pool, default_lifetime: float, now, hashes: dict) -> dict:
    fields = vm.fields
    state = _STATES[vm.queue]
    cloned = parse_time(fields.get("clone")) or now
    row = dict(name=vm.name, live_name=vm.name, pool=pool.name, provider=pool.provider, template=pool.template,
               state=state, state_changed_at=now, created_at=cloned, cloned_at=cloned,
               ready_at=parse_time(fields.get("ready")), checked_at=parse_time(fields.get("check")),
               ip=fields.get("ip"), clone_attempts=1, destroy_attempts=0)
    if state in (READY, RUNNING) and row["ready_at"] is None:
        row["ready_at"] = cloned
    if state == RUNNING:
        checkout = vm.checkout or now
        lifetime = _number(fields.get("lifetime"))
        lifetime = default_lifetime if lifetime is None else lifetime
        row.update(checkout_at=checkout, lifetime=lifetime,
                   expires_at=checkout + datetime.timedelta(hours=lifetime) if lifetime > 0 else None)
        token = fields.get("token:token")
        if token:
            row.update(token_hash=hashes.get(token), token_user=fields.get("token:user"))
    if state == COMPLETED:
        row["completed_at"] = parse_time(fields.get("destroy")) or now
    return row


def _number(text: Optional[str]) -> Optional[float]:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _import_extras(conn, vm: OriginalVM, vm_id: int, now, report: ImportReport) -> None:
    """Tags, snapshots (as finished snapshot tasks, so a revert finds them) and added disks."""
    for key, value in vm.fields.items():
        if key.startswith("tag:"):
            conn.execute(insert(vm_tags).values(vm_id=vm_id, name=key[4:], value=value, tagged_at=now,
                                                day=now.strftime("%Y-%m-%d")))
            report.count("tags")
        elif key.startswith("snapshot:"):
            taken = parse_time(value) or now
            _done_task(conn, vm_id, TaskKind.SNAPSHOT, key[len("snapshot:"):], taken)
            report.count("snapshots")
    for size in _DISK.findall(vm.fields.get("disk", "")):
        _done_task(conn, vm_id, TaskKind.DISK, size, now)
        report.count("disks")


def _done_task(conn, vm_id: int, kind: TaskKind, arg: str, at) -> None:
    conn.execute(insert(tasks).values(vm_id=vm_id, kind=kind, arg=arg, state=DONE, attempts=1, created_at=at,
                                      finished_at=at))


def _import_requests(conn, requests: List[OriginalRequest], pools, ids: dict, now, hashes, report) -> None:
    for request in requests:
        unknown = sorted({pool for _alias, pool, _count in request.requested if pool not in pools})
        if unknown or request.status not in _REQUEST_STATES:
            why = f"pools not configured here: {', '.join(unknown)}" if unknown else f"status {request.status!r}"
            report.skipped.append(f"on-demand request {request.request_id}: {why}")
            continue
        ref = conn.execute(insert(ondemand_requests).values(
            request_id=request.request_id, state=_REQUEST_STATES[request.status],
            created_at=request.created or now, state_changed_at=now,
            token_hash=hashes.get(request.token) if request.token else None, token_user=request.user,
            failure=request.failure)).inserted_primary_key[0]
        for alias, pool, count in request.requested:
            want = conn.execute(insert(ondemand_wants).values(request_ref=ref, requested=alias, pool=pool,
                                                              count=count)).inserted_primary_key[0]
            delivered = [ids[name] for name in request.delivered.get((alias, pool), ()) if name in ids]
            if delivered:
                conn.execute(vms.update().where(vms.c.id.in_(delivered)).values(want_id=want))
        report.count("on-demand requests")


def _import_pool_changes(conn, state: OriginalState, pools, now, report) -> None:
    for setting, values in state.overrides.items():
        for pool, value in sorted(values.items()):
            if pool not in pools:
                report.skipped.append(f"{setting} override of pool {pool}: the pool is not configured here")
                continue
            conn.execute(insert(pool_overrides).values(pool=pool, setting=setting, value=value, user=None,
                                                       changed_at=now))
            report.count("pool overrides")
    for pool in state.resets:
        if pool in pools:
            conn.execute(insert(pool_drains).values(pool=pool, reason="pool reset pending in the original",
                                                    requested_at=now))
            report.count("pool resets")


def _import_durations(conn, state: OriginalState, report) -> None:
    """Every clone and boot sample, of configured pools or not: /summary's history stays whole."""
    for kind, pool, vm_name, seconds, day in state.durations:
        at = datetime.datetime.combine(day, datetime.time(12))
        stats.record_duration(conn, kind, pool, vm_name, seconds, at)
        report.count(f"{kind} samples")


def _import_dead_letters(conn, state: OriginalState, now, report: ImportReport) -> None:
    """The 3.x dead-letter queue's entries, as they were (their VM ids unknown here)."""
    for entry in state.dead_letters:
        conn.execute(insert(dead_letters).values(
            vm_id=None, vm_name=str(entry["vm"])[:64], pool=str(entry["pool"])[:100],
            pool_alias=entry.get("pool_alias"), queue_from=str(entry.get("queue_from") or "clone")[:16],
            error_class=str(entry.get("error_class") or "unknown")[:100],
            error_message=str(entry.get("error_message") or ""), retry_count=_count(entry.get("retry_count")),
            request_id=entry.get("request_id"), failed_at=parse_time(entry.get("failed_at")) or now))
        report.count("dead letters")
    if state.unreadable_dead_letters:
        report.skipped.append(f"{state.unreadable_dead_letters} dead-letter queue entries: not the 3.x format")


def _count(value) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0
