"""A VM's whole life, read from the audit trail (``vmpooler history HOSTNAME``).

A hostname may have been used by several VMs over time (names are reused once a VM is gone), so
the answer is one ``VmLife`` per ``vms`` row of that name, oldest first: the row itself, its
events (every state change, and every other change recorded as an event), its tags, its
snapshot, revert and disk tasks and the prefix of the token it was checked out with (None when there was none or it was deleted since).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from vmpooler.model import VMRow

from sqlalchemy import select

from vmpooler.db.models import tasks, tokens, vm_events, vm_tags, vms


@dataclasses.dataclass
class VmLife:
    vm: VMRow
    events: list
    tags: list
    token_prefix: Optional[str]
    tasks: list  # the tasks rows (snapshots, reverts, added disks), oldest first


def vm_history(conn, name: str) -> list:
    rows = conn.execute(select(vms).where(vms.c.name == name).order_by(vms.c.id)).all()
    ids = [row.id for row in rows]
    if not ids:
        return []
    events = conn.execute(select(vm_events).where(vm_events.c.vm_id.in_(ids)).order_by(vm_events.c.id)).all()
    tags = conn.execute(select(vm_tags).where(vm_tags.c.vm_id.in_(ids)).order_by(vm_tags.c.id)).all()
    work = conn.execute(select(tasks).where(tasks.c.vm_id.in_(ids)).order_by(tasks.c.id)).all()
    hashes = {row.token_hash for row in rows if row.token_hash}
    prefixes = dict(conn.execute(select(tokens.c.token_hash, tokens.c.prefix)
                                 .where(tokens.c.token_hash.in_(hashes))).all()) if hashes else {}
    return [VmLife(vm=row, events=[event for event in events if event.vm_id == row.id],
                   tags=[tag for tag in tags if tag.vm_id == row.id], token_prefix=prefixes.get(row.token_hash),
                   tasks=[task for task in work if task.vm_id == row.id])
            for row in rows]
