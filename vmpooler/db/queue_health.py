"""Queue health (3.8.1's ``health_check``): each pool's pending, ready and completed VMs with their
ages, the VMs stuck pending, the dead-letter queue's size, and the verdict: healthy, degraded or
unhealthy by ``health_thresholds``. The original computed it and showed it nowhere; here
/healthcheck?details, the metrics and the dashboard show it (manager/queues.py logs it).

One grouped query for the pools and one count for the dead-letter queue, so any process (an API
process on PostgreSQL too) can compute it when asked.
"""
from __future__ import annotations

import dataclasses
import datetime
import enum
from typing import Dict, Mapping

from sqlalchemy import and_, case, func, select

from vmpooler.db.database import Database
from vmpooler.db.models import dead_letters, vms
from vmpooler.model import COMPLETED, PENDING, READY

#: 3.8.1's defaults (seconds for the age)
DEFAULT_THRESHOLDS = {"pending_queue_max": 100, "ready_queue_max": 500, "dlq_max_warning": 100,
                      "dlq_max_critical": 1000, "stuck_vm_age_threshold": 7200, "stuck_vm_max_warning": 10,
                      "stuck_vm_max_critical": 50}


class Health(str, enum.Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"

    def __str__(self) -> str:
        return self.value

    @property
    def gauge(self) -> int:
        """3.8.1's ``vmpooler_health.status`` value: 0 healthy, 1 degraded, 2 unhealthy."""
        return (Health.HEALTHY, Health.DEGRADED, Health.UNHEALTHY).index(self)


@dataclasses.dataclass(frozen=True)
class PoolQueues:
    pending: int = 0
    pending_oldest_age: int = 0  # seconds
    stuck: int = 0  # pending longer than stuck_vm_age_threshold
    ready: int = 0
    ready_oldest_age: int = 0
    completed: int = 0


@dataclasses.dataclass(frozen=True)
class QueueHealth:
    status: Health
    reasons: tuple  # why it is not healthy, one line each
    pools: Dict[str, PoolQueues]
    dlq_total: int
    stuck_total: int

    def as_json(self) -> dict:
        return {"status": str(self.status), "reasons": list(self.reasons), "dlq_total_size": self.dlq_total,
                "stuck_vm_count": self.stuck_total,
                "queues": {name: dataclasses.asdict(queues) for name, queues in sorted(self.pools.items())}}


def thresholds(configured: Mapping) -> dict:
    """``health_thresholds`` over 3.8.1's defaults."""
    return {**DEFAULT_THRESHOLDS, **{str(key): value for key, value in configured.items()}}


def measure(db: Database, now: datetime.datetime, configured: Mapping, pool_names) -> QueueHealth:
    """The queue health now, for the configured pools (``pool_names``)."""
    limits = thresholds(configured)
    stuck_before = now - datetime.timedelta(seconds=limits["stuck_vm_age_threshold"])
    query = (select(vms.c.pool,
                    func.count().filter(vms.c.state == PENDING).label("pending"),
                    func.min(case((vms.c.state == PENDING, vms.c.created_at))).label("pending_since"),
                    func.count().filter(and_(vms.c.state == PENDING, vms.c.created_at < stuck_before)).label("stuck"),
                    func.count().filter(vms.c.state == READY).label("ready"),
                    func.min(case((vms.c.state == READY, vms.c.ready_at))).label("ready_since"),
                    func.count().filter(vms.c.state == COMPLETED).label("completed"))
             .where(vms.c.state.in_((PENDING, READY, COMPLETED)))
             .group_by(vms.c.pool))
    with db.read() as conn:
        rows = {row.pool: row for row in conn.execute(query)}
        dlq_total = conn.execute(select(func.count()).select_from(dead_letters)).scalar_one()
    pools = {}
    for name in pool_names:
        row = rows.get(name)
        pools[name] = PoolQueues() if row is None else PoolQueues(
            row.pending, _age(now, row.pending_since), row.stuck, row.ready, _age(now, row.ready_since), row.completed)
    return verdict(pools, dlq_total, limits)


def _age(now, since) -> int:
    return max(int((now - since).total_seconds()), 0) if since is not None else 0


def verdict(pools: Dict[str, PoolQueues], dlq_total: int, limits: dict) -> QueueHealth:
    """3.8.1's rules: unhealthy past a critical limit (or twice a queue's maximum), degraded past a
    warning limit (or a queue's maximum)."""
    stuck = sum(queues.stuck for queues in pools.values())
    unhealthy, degraded = [], []
    if dlq_total > limits["dlq_max_critical"]:
        unhealthy.append(f"{dlq_total} dead letters (dlq_max_critical {limits['dlq_max_critical']})")
    elif dlq_total > limits["dlq_max_warning"]:
        degraded.append(f"{dlq_total} dead letters (dlq_max_warning {limits['dlq_max_warning']})")
    if stuck > limits["stuck_vm_max_critical"]:
        unhealthy.append(f"{stuck} VMs stuck pending (stuck_vm_max_critical {limits['stuck_vm_max_critical']})")
    elif stuck > limits["stuck_vm_max_warning"]:
        degraded.append(f"{stuck} VMs stuck pending (stuck_vm_max_warning {limits['stuck_vm_max_warning']})")
    for name, queues in sorted(pools.items()):
        for queue, size, limit in (("pending", queues.pending, limits["pending_queue_max"]),
                                   ("ready", queues.ready, limits["ready_queue_max"])):
            if size > 2 * limit:
                unhealthy.append(f"{name}: {size} {queue} (twice {queue}_queue_max {limit})")
            elif size > limit:
                degraded.append(f"{name}: {size} {queue} ({queue}_queue_max {limit})")
    status = Health.UNHEALTHY if unhealthy else Health.DEGRADED if degraded else Health.HEALTHY
    return QueueHealth(status, tuple(unhealthy + degraded), pools, dlq_total, stuck)
