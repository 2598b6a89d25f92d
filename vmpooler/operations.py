"""The bodies of the operator's commands ``vmpooler db backup`` and ``vmpooler history``.

Each takes the loaded configuration and a stream, prints, and returns the exit status; cli.py
only parses the arguments.
"""
from __future__ import annotations

import datetime
from typing import TextIO

from sqlalchemy import exc

from vmpooler.db.backup import BackupError, backup, missing_file
from vmpooler.db.database import Database, StoreUnavailable
from vmpooler.db.audit import VmLife, vm_history
from vmpooler.model import TaskKind


def backup_command(config, target: str, out: TextIO, err: TextIO) -> int:
    try:
        pages = backup(config.database_url, target)
    except BackupError as error:
        print(f"vmpooler: {error}", file=err)
        return 1
    print(f"{target}: a consistent copy of the database ({pages} pages, integrity ok)", file=out)
    return 0


class _Unreadable(Exception):
    """The database could not be read; the reason was printed."""


def _read(config, reader, err: TextIO):
    """``reader(db)`` on the configured database, or _Unreadable with one line printed."""
    if missing_file(config.database_url):
        print(f"vmpooler: {missing_file(config.database_url)}", file=err)
        raise _Unreadable()
    db = Database(config.database_url)
    try:
        return reader(db)
    except (StoreUnavailable, exc.SQLAlchemyError) as error:
        print(f"vmpooler: cannot read the database (is its schema there? vmpooler db upgrade): {error}"
              .splitlines()[0], file=err)
        raise _Unreadable() from None
    finally:
        db.dispose()


def _lives(db, hostname: str) -> list:
    with db.read() as conn:
        return vm_history(conn, hostname)


def history_command(config, hostname: str, out: TextIO, err: TextIO) -> int:
    try:
        lives = _read(config, lambda db: _lives(db, hostname), err)
    except _Unreadable:
        return 1
    if not lives:
        print(f"vmpooler: no VM named {hostname!r} in the database", file=err)
        return 1
    print("\n\n".join(format_life(life) for life in lives), file=out)
    return 0


def format_life(life: VmLife) -> str:
    """A VM's life as text: what it is, who had it, its tags, then one line per event."""
    vm = life.vm
    lines = [f"{vm.name} (vm #{vm.id}): pool {vm.pool}, template {vm.template}, provider {vm.provider}, "
             f"now {vm.state}" + (f", ip {vm.ip}" if vm.ip else "")]
    if vm.checkout_at:
        token = (f"token {life.token_prefix}..." if life.token_prefix else
                 "a token deleted since" if vm.token_hash else "no token")
        lines.append(f"  checked out {_time(vm.checkout_at)} by {vm.token_user or 'an anonymous client'} with "
                     f"{token}; lifetime {_hours(vm.lifetime)}"
                     + (f", expires {_time(vm.expires_at)}" if vm.expires_at else ""))
    for tag in life.tags:
        lines.append(f"  tag {tag.name}={tag.value} (set {_time(tag.tagged_at)})")
    lines.extend(_task_line(task) for task in life.tasks)
    if vm.last_error:
        lines.append(f"  last error: {vm.last_error}")
    for event in life.events:
        change = (f"{event.from_state or '(new)'} -> {event.to_state}" if event.from_state != event.to_state
                  else f"{event.to_state}")
        lines.append(f"  {_time(event.at)}  {change:<24}  {event.reason}")
    return "\n".join(lines)


def _task_line(task) -> str:
    """``  snapshot 'before-upgrade' queued <time>: done <time> (1 attempt)`` and the like."""
    what = f"disk of {task.arg} GB" if task.kind == TaskKind.DISK else f"{task.kind} {task.arg!r}"
    ended = f" {_time(task.finished_at)}" if task.finished_at else ""
    attempts = f" ({task.attempts} attempt{'' if task.attempts == 1 else 's'})" if task.attempts else ""
    error = f": {task.last_error}" if task.last_error else ""
    return f"  {what} queued {_time(task.created_at)}: {task.state}{ended}{attempts}{error}"


def _time(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def _hours(value) -> str:
    return "-" if value is None else f"{value:g}h"


def import_redis_command(config, url: str, out: TextIO, err: TextIO) -> int:
    """Read the original's Redis at ``url`` and write it into the configured, empty database."""
    try:
        import redis
    except ImportError:
        print("vmpooler: import-redis needs the redis package: pip install 'vmpooler-py[redis]'", file=err)
        return 2
    from vmpooler.auth.tokens import token_hash
    from vmpooler.db import redis_reader
    from vmpooler.db.import_redis import ImportRefused, import_state

    shown = _without_password(url)
    try:
        client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=30)
        state = redis_reader.read(client)
    except ValueError as error:
        print(f"vmpooler: {shown} is not a Redis URL such as redis://host:6379/0: {error}", file=err)
        return 2
    except redis.RedisError as error:
        print(f"vmpooler: cannot read {shown}: {error}", file=err)
        return 1
    db = Database(config.database_url)
    try:
        db.upgrade()
        report = import_state(db, state, {pool.name: pool for pool in config.pools}, config.settings.vm_lifetime,
                              shown, datetime.datetime.utcnow().replace(microsecond=0), token_hash)
    except (ImportRefused, StoreUnavailable) as error:
        print(f"vmpooler: nothing imported: {error}", file=err)
        return 1
    finally:
        db.dispose()
    if report.already is not None:
        print(f"{shown} was imported already (at {report.already:%Y-%m-%d %H:%M:%S} UTC); nothing to do", file=out)
        return 0
    for what, count in sorted(report.imported.items()):
        print(f"imported {count} {what}", file=out)
    for reason in report.skipped:
        print(f"skipped {reason}", file=out)
    print(f"imported from {shown} in one transaction; start the service to take over", file=out)
    return 0


def _without_password(url: str) -> str:
    """The URL as it may be printed and stored: a password replaced by ***."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def dlq_command(config, pool, limit: int, out: TextIO, err: TextIO) -> int:
    """``vmpooler dlq``: the dead-letter queue, newest first, one VM a line."""
    from vmpooler.db import dead_letters

    if pool is not None and pool not in {p.name for p in config.pools}:
        print(f"vmpooler: no pool named {pool!r} in the configuration", file=err)
        return 1
    try:
        entries = _read(config, lambda db: dead_letters.entries(db, pool, None, limit), err)
    except _Unreadable:
        return 1
    for entry in entries:
        request = f" request {entry.request_id}" if entry.request_id else ""
        print(f"{_time(entry.failed_at)}  {entry.pool}  {entry.vm}  {entry.queue_from}  {entry.error_class}: "
              f"{entry.error_message} (retries: {entry.retry_count}){request}", file=out)
    print(f"{len(entries)} dead letter(s)" + (f" of pool {pool}" if pool else ""), file=out)
    return 0
