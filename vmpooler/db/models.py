"""The schema. Alembic's migrations in migrations/versions must match these tables (a test checks).

Times are naive UTC datetimes. Rows of VMs are never deleted: with the event log they are the
audit trail. ``live_name`` carries a VM's name while it can still exist in a provider and is
cleared when it is destroyed or gone, so a hostname is unique among live VMs (NULLs never clash,
in SQLite as in PostgreSQL) and may be reused once its VM is gone.
"""
from __future__ import annotations

from sqlalchemy import (Column, DateTime, Float, ForeignKey, Index, Integer, MetaData, String, Table,
                        Text, UniqueConstraint)

# The states stored in vms.state and tasks.state, and the kinds in tasks.kind, are vmpooler.model's.
from vmpooler.model import (ALL_STATES, COMPLETED, DESTROYED, DONE, FAILED, GONE, LIVE_STATES,  # noqa: F401
                            PENDING, QUEUED, READY, RUNNING, TASK_FAILED, TASK_RUNNING)

# Constraint names must be stable so Alembic (batch mode on SQLite) can find them later.
metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

pools = Table(
    "pools", metadata,
    Column("name", String(100), primary_key=True),
    Column("provider", String(100), nullable=False),
    Column("template", String(500), nullable=False),
    Column("size", Integer, nullable=False),
    Column("last_boot_at", DateTime),
    Column("updated_at", DateTime, nullable=False),
)

vms = Table(
    "vms", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, index=True),
    Column("live_name", String(64), unique=True),
    Column("pool", String(100), nullable=False),
    Column("provider", String(100), nullable=False),
    Column("template", String(500), nullable=False),
    Column("state", String(16), nullable=False),
    Column("state_changed_at", DateTime, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("cloned_at", DateTime),
    Column("ready_at", DateTime),
    Column("checked_at", DateTime),
    Column("checkout_at", DateTime),
    Column("expires_at", DateTime),
    Column("completed_at", DateTime),
    Column("destroyed_at", DateTime),
    Column("lifetime", Float),
    Column("token_hash", String(64), index=True),
    Column("token_user", String(255)),
    Column("clone_attempts", Integer, nullable=False, default=0),
    Column("destroy_attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime),
    Column("last_error", Text),
    Column("ip", String(64)),
    # the on-demand request (its wanted pool) this VM was cloned for; NULL for a pool's own VMs
    Column("want_id", Integer, ForeignKey("ondemand_wants.id"), index=True),
    # checkout: the longest-ready VM of a pool, straight from the index
    Index("ix_vms_pool_state_ready", "pool", "state", "ready_at", "id"),
    # pool counts (status, the manager's pass): an index-only GROUP BY
    Index("ix_vms_state_pool_counts", "state", "pool", "cloned_at", "next_attempt_at", "want_id"),
    # per-user quotas: the VMs a user holds
    Index("ix_vms_token_user_state", "token_user", "state"),
    Index("ix_vms_state_expires", "state", "expires_at"),
)

vm_events = Table(
    "vm_events", metadata,
    Column("id", Integer, primary_key=True),
    Column("vm_id", Integer, nullable=False, index=True),
    Column("vm_name", String(64), nullable=False, index=True),
    Column("pool", String(100), nullable=False),
    Column("at", DateTime, nullable=False, index=True),
    Column("from_state", String(16)),
    Column("to_state", String(16), nullable=False),
    Column("reason", Text, nullable=False),
)

tokens = Table(
    "tokens", metadata,
    Column("id", Integer, primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(8), nullable=False),
    Column("user", String(255), nullable=False, index=True),
    Column("created_at", DateTime, nullable=False),
    Column("last_used_at", DateTime),
)

vm_tags = Table(
    "vm_tags", metadata,
    Column("id", Integer, primary_key=True),
    Column("vm_id", Integer, ForeignKey("vms.id"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("value", String(1024), nullable=False),
    Column("tagged_at", DateTime, nullable=False),
    Column("day", String(10), nullable=False),
    UniqueConstraint("vm_id", "name", name="uq_vm_tags_vm_id_name"),
    # covering the summary's tag counts GROUP BY day, name, value
    Index("ix_vm_tags_day_name_value", "day", "name", "value"),
)

durations = Table(
    "durations", metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(8), nullable=False),  # clone | boot
    Column("pool", String(100), nullable=False),
    Column("vm_name", String(64), nullable=False),
    Column("seconds", Float, nullable=False),
    Column("at", DateTime, nullable=False),
    Column("day", String(10), nullable=False),
    # covering the summary's GROUP BY kind, day, pool with min/max/sum(seconds): an index-only scan
    Index("ix_durations_kind_day_pool_seconds", "kind", "day", "pool", "seconds"),
)

# Daily totals of ``durations`` per kind and pool, kept in the same transaction as each sample,
# so that /summary over a year reads a few thousand rows instead of a million samples.
duration_days = Table(
    "duration_days", metadata,
    Column("kind", String(8), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("pool", String(100), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("total", Float, nullable=False),
    Column("low", Float, nullable=False),
    Column("high", Float, nullable=False),
)

# Queued work on a VM that the manager carries out (model.TaskKind), in a model.TaskState.
tasks = Table(
    "tasks", metadata,
    Column("id", Integer, primary_key=True),
    Column("vm_id", Integer, ForeignKey("vms.id"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # snapshot | revert | disk
    Column("arg", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime),
    Column("last_error", Text),
    Column("created_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Index("ix_tasks_state", "state"),
)

# Pool configuration changed at run time (POST /config/...): the value of one setting of one pool
# (size, template, clone_target) that replaces the configuration file's until undone. Values are
# text; the code that reads them knows each setting's type.
pool_overrides = Table(
    "pool_overrides", metadata,
    Column("pool", String(100), primary_key=True),
    Column("setting", String(32), primary_key=True),
    Column("value", Text, nullable=False),
    Column("user", String(255)),
    Column("changed_at", DateTime, nullable=False),
)

# A pool the manager must drain (its ready and pending VMs completed, then refilled): asked for by
# POST /poolreset and by a new template or clone target, in the same transaction as the change.
pool_drains = Table(
    "pool_drains", metadata,
    Column("pool", String(100), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("requested_at", DateTime, nullable=False),
)

# The audit trail of run-time configuration: who changed what, from what to what, and the drains
# the manager carried out. Never deleted.
pool_events = Table(
    "pool_events", metadata,
    Column("id", Integer, primary_key=True),
    Column("pool", String(100), nullable=False, index=True),
    Column("at", DateTime, nullable=False),
    Column("action", String(32), nullable=False),
    Column("before", Text),
    Column("after", Text),
    Column("user", String(255)),
    Column("address", String(64)),
)

# Which process holds a role (the pool manager) when several share the database: see db/leases.py.
leases = Table(
    "leases", metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(255)),
    Column("epoch", Integer, nullable=False),
    Column("expires_at", DateTime),
    Column("renewed_at", DateTime),
)

# On-demand requests (POST /ondemandvm): VMs cloned for one client, beside the pools' sizes.
# state is a vmpooler.model.RequestState: pending until handed over (ready), or failed or deleted.
ondemand_requests = Table(
    "ondemand_requests", metadata,
    Column("id", Integer, primary_key=True),
    # the client's id (or a UUID4); unique, so two POSTs with one id cannot both create it
    Column("request_id", String(64), nullable=False, unique=True),
    Column("state", String(16), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("state_changed_at", DateTime, nullable=False),
    Column("token_hash", String(64)),
    Column("token_user", String(255)),
    Column("failure", Text),  # why it failed, shown by GET
    Index("ix_ondemand_requests_state", "state"),
    Index("ix_ondemand_requests_user_state", "token_user", "state"),
)

# What a request asked for: ``count`` VMs of ``pool`` under the name it used (a pool or an alias).
ondemand_wants = Table(
    "ondemand_wants", metadata,
    Column("id", Integer, primary_key=True),
    Column("request_ref", Integer, ForeignKey("ondemand_requests.id"), nullable=False, index=True),
    Column("requested", String(100), nullable=False),
    Column("pool", String(100), nullable=False),
    Column("count", Integer, nullable=False),
)

# The health check's proof that the database takes writes (db/heartbeat.py): one row per process,
# rewritten at every GET /healthcheck and at start; rows of processes gone a day are removed.
heartbeats = Table(
    "heartbeats", metadata,
    Column("process", String(255), primary_key=True),
    Column("beat_at", DateTime, nullable=False),
)

# Idempotency-Key (the IETF httpapi draft header) on the POSTs that take VMs: the answer a key got,
# written in the transaction that took the VMs, so a retry with the key gets it again and takes
# nothing more (db/idempotency.py). ``scope`` is the token's hash ("" without a token).
idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("id", Integer, primary_key=True),
    Column("scope", String(64), nullable=False),
    Column("key", String(255), nullable=False),
    Column("fingerprint", String(64), nullable=False),  # sha256 of method, path and body
    Column("status", Integer, nullable=False),
    Column("answer", Text, nullable=False),  # JSON: what the taking function returned
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
    UniqueConstraint("scope", "key", name="uq_idempotency_keys_scope_key"),
    Index("ix_idempotency_keys_expires_at", "expires_at"),
)

# The dead-letter queue (3.8.1's, kept in the database): every VM that failed, with why; bounded
# by dlq_ttl and dlq_max_entries (db/dead_letters.py). vm_id is the VM row (no foreign key: the
# queue is trimmed on its own schedule).
dead_letters = Table(
    "dead_letters", metadata,
    Column("id", Integer, primary_key=True),
    Column("vm_id", Integer),
    Column("vm_name", String(64), nullable=False),
    Column("pool", String(100), nullable=False),
    Column("pool_alias", String(100)),
    Column("queue_from", String(16), nullable=False),  # model.DeadLetterQueue
    Column("error_class", String(100), nullable=False),
    Column("error_message", Text, nullable=False),
    Column("retry_count", Integer, nullable=False),
    Column("request_id", String(64)),
    Column("failed_at", DateTime, nullable=False),
    Index("ix_dead_letters_failed_at", "failed_at"),
    Index("ix_dead_letters_pool_failed_at", "pool", "failed_at"),
)
