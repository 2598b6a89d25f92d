"""Counting what a user holds, inside the transaction that would give them more, so that two
concurrent requests cannot both pass a quota (see vmpooler/quotas.py for the configuration).

A user holds their running VMs (checkouts, and on-demand VMs once handed over) plus every VM their
pending on-demand requests asked for. The user's token rows are locked first (FOR UPDATE: a no-op
on SQLite, whose write transactions are serialised anyway), so on PostgreSQL a second request of
the same user waits until the first has committed and then counts what it took.
"""
from __future__ import annotations

from sqlalchemy import bindparam, func, select

from vmpooler.db.models import ondemand_requests, ondemand_wants, tokens, vms
from vmpooler.model import OD_PENDING, RUNNING


class QuotaExceeded(Exception):
    """Taking ``asked`` more VMs would put ``user`` over their quota: nothing was taken."""

    def __init__(self, user: str, limit: int, held: int, asked: int):
        self.user, self.limit, self.held, self.asked = user, limit, held, asked
        super().__init__(f"user {user!r} holds {held} VMs and asks for {asked} more; the quota is {limit} at once")


_LOCK_USER = select(tokens.c.id).where(tokens.c.user == bindparam("user")).order_by(tokens.c.id).with_for_update()
_RUNNING = select(func.count()).select_from(vms).where(vms.c.token_user == bindparam("user"), vms.c.state == RUNNING)
_REQUESTED = (select(func.coalesce(func.sum(ondemand_wants.c.count), 0))
              .select_from(ondemand_wants.join(ondemand_requests,
                                               ondemand_requests.c.id == ondemand_wants.c.request_ref))
              .where(ondemand_requests.c.token_user == bindparam("user"), ondemand_requests.c.state == OD_PENDING))


def held(conn, user: str) -> int:
    return int(conn.execute(_RUNNING, {"user": user}).scalar() or 0) + \
        int(conn.execute(_REQUESTED, {"user": user}).scalar() or 0)


def check(conn, user: str, asked: int, limit: int) -> None:
    """Raise QuotaExceeded when ``user`` may not take ``asked`` more VMs (run in the taking transaction)."""
    conn.execute(_LOCK_USER, {"user": user}).all()
    holding = held(conn, user)
    if holding + asked > limit:
        raise QuotaExceeded(user, limit, holding, asked)
