"""/vm/<name>: POST checks out pools (``a+a+b``); GET, PUT and DELETE act on one VM."""
from __future__ import annotations

import datetime
import json

from vmpooler.api import validation
from vmpooler.api.base import BaseHandler
from vmpooler.api.checkout import answer, parse_path
from vmpooler.api.delivery import HandsOut
from vmpooler.api.errors import ApiError
from vmpooler.api.render import rfc3339, shown, whole_number
from vmpooler.api.version import ApiVersion
from vmpooler.api.vmlookup import find_vm, found
from vmpooler.db import client_changes
from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow
from vmpooler.model import COMPLETED, DESTROYED, FAILED, GONE, LIVE_STATES, PENDING, QUEUED, READY, RUNNING

#: states as GET /vm/<host> shows them (a gone VM is destroyed; a failed destroy still awaits one)
SHOWN_STATE = {PENDING: "pending", READY: "ready", RUNNING: "running", COMPLETED: "completed",
               DESTROYED: "destroyed", GONE: "destroyed", FAILED: "completed"}
#: a PUT lifetime above this is refused even without max_lifetime_upper_limit (ten years)
MAX_LIFETIME = 87600
MAX_TAG_NAME, MAX_TAG_VALUE = 255, 1024


def _hours(delta: datetime.timedelta) -> float:
    return round(delta.total_seconds() / 3600, 2)


def _number(value):
    return int(value) if float(value).is_integer() else value


def details(vm, extras: vm_store.VMExtras, config, now: datetime.datetime,
            version: ApiVersion = ApiVersion.V1) -> dict:
    """The body of GET /vm/<host> for one VM row, in the original's key order: the domain as
    ``domain`` (v1) or the VM's ``fqdn`` (v2, v3)."""
    lifetime = vm.lifetime if vm.lifetime is not None else config.settings.vm_lifetime
    info = {"template": vm.pool, "lifetime": _number(lifetime)}
    state = SHOWN_STATE.get(vm.state, vm.state)
    if vm.checkout_at is not None:
        ended = now if state == "running" else (vm.destroyed_at or vm.completed_at or vm.state_changed_at)
        info["running"] = _hours(ended - vm.checkout_at)
        if state == "running":
            if vm.expires_at is not None:  # absent when the lifetime is 0 (never expires)
                info["remaining"] = _hours(vm.expires_at - now)
            info["start_time"] = rfc3339(vm.checkout_at)
            if vm.expires_at is not None:
                info["end_time"] = rfc3339(vm.expires_at)
    info["state"] = state
    if extras.tags:
        info["tags"] = extras.tags
    if extras.snapshots:
        info["snapshots"] = extras.snapshots
    if extras.disks:
        info["disk"] = [f"+{size}gb" for size in extras.disks]
    info["ip"] = vm.ip or ""
    domain = config.domain_of(vm.pool)
    if domain:
        info.update({"fqdn": f"{vm.name}.{domain}"} if version.fqdn else {"domain": domain})
    if extras.tasks:
        info["tasks"] = [task_status(task) for task in extras.tasks]
    return info


def task_status(task) -> dict:
    """One snapshot, revert or disk task as GET /vm/<host> shows it (beyond the original, which
    showed nothing of a task that failed)."""
    shown = {"kind": task.kind, "argument": task.arg, "state": task.state, "attempts": task.attempts,
             "queued_at": rfc3339(task.created_at)}
    if task.state == QUEUED and task.next_attempt_at is not None:
        shown["next_attempt_at"] = rfc3339(task.next_attempt_at)
    if task.finished_at is not None:
        shown["finished_at"] = rfc3339(task.finished_at)
    if task.last_error:
        shown["error"] = task.last_error
    return shown


def validate_changes(body: dict, config, version: ApiVersion = ApiVersion.V1) -> tuple:
    """(lifetime or None, tags or None, failures) for a PUT body, as the original words them (v3:
    as 3.8.1 does)."""
    lifetime, tags, failures = None, None, []
    for key, value in body.items():
        if key == "lifetime":
            lifetime = whole_number(value)
            limit = config.settings.max_lifetime_upper_limit
            if (lifetime is None or lifetime <= 0) and version.validates:
                failures.append(f"Lifetime must be a positive integer (got {_ruby_text(value)})")
            elif lifetime is None or lifetime <= 0:
                failures.append(f"You provided a lifetime ({shown(value)}) but you must provide a positive whole number of hours.")
            elif limit and lifetime >= limit:
                failures.append(f"You provided a lifetime ({lifetime}) that exceeds the configured maximum of {limit}.")
            elif lifetime > MAX_LIFETIME:
                failures.append(f"You provided a lifetime ({lifetime}) that exceeds the maximum of {MAX_LIFETIME}.")
        elif key == "tags":
            tags = _validate_tags(value, config, failures, version)
        else:
            failures.append(f"Unknown argument {shown(key)}.")
    return lifetime, tags, failures


def _ruby_text(value) -> str:
    """A JSON value as the original's message interpolates it (Ruby's to_s)."""
    return "" if value is None else value if isinstance(value, str) else json.dumps(value)


def _validate_tags(tags, config, failures: list, version: ApiVersion) -> dict:
    if not isinstance(tags, dict):
        failures.append(f"You provided tags ({shown(tags)}) as something other than a hash.")
        return {}
    if version.validates:  # 3.8.1's checks first; ours then find nothing more to say
        problems = [problem for problem in (validation.tag_problem(k, v) for k, v in tags.items()) if problem]
        if problems:
            failures.extend(problems)
            return {}
    allowed = config.settings.allowed_tags
    unsupported = {k: v for k, v in tags.items() if allowed and k not in allowed}
    if unsupported:
        failures.append(f"You provided unsuppored tags ({json.dumps(unsupported)[:200]}).")
    result = {}
    for name, value in tags.items():
        if not 0 < len(name) <= MAX_TAG_NAME:
            failures.append(f"A tag name must be 1 to {MAX_TAG_NAME} characters long ({shown(name)}).")
        elif isinstance(value, (dict, list, bool)):
            failures.append(f"The value of tag {shown(name)} must be a string.")
        elif value is not None:
            value = str(value)
            pattern = config.tagfilter.get(name)
            match = pattern.search(value) if pattern is not None else None
            if match is not None:
                value = "".join(group or "" for group in match.groups())
            if len(value) > MAX_TAG_VALUE:
                failures.append(f"The value of tag {shown(name)} is longer than {MAX_TAG_VALUE} characters.")
            elif value:  # empty values are skipped
                result[name] = value
    return result


class VmHandler(HandsOut, BaseHandler):
    async def post(self, names: str) -> None:
        await answer(self, parse_path(names))

    async def get(self, raw: str) -> None:
        name = self.hostname(raw)
        # one consistent read of the row and its extras, reused until the next write: clients poll this
        vm, extras = await self.db.run(vm_store.latest_with_extras, name)
        vm = found(self.context, vm, name)
        self.reply({"ok": True, vm.name: details(vm, extras, self.config, utcnow(), self.version)})

    async def put(self, raw: str) -> None:
        vm = await find_vm(self.context, self.hostname(raw), LIVE_STATES)
        body = self.versioned_body()
        # With an auth store a lifetime needs a token (a tags-only change does not), as the original.
        lifetime_needs_token = self.context.auth is not None and "lifetime" in body
        await self.credentials.authorize_vm(self.request, vm, token_needed=lifetime_needs_token)
        lifetime, tags, failures = validate_changes(body, self.config, self.version)
        if failures:
            raise ApiError(400, "; ".join(failures), failure=failures)
        if not await self.db.run(client_changes.modify, vm, utcnow(), lifetime, tags):
            raise ApiError(409, f"{vm.name} changed state meanwhile; nothing was changed, try again")
        self.reply({"ok": True})

    async def delete(self, raw: str) -> None:
        vm = await find_vm(self.context, self.hostname(raw), (RUNNING,))
        await self.credentials.authorize_vm(self.request, vm, token_needed=False)
        completed = await self.db.run(client_changes.delete, vm, utcnow())
        self.context.metrics.deleted(completed is not None)
        if completed is None:
            raise ApiError(404, f"{vm.name} is no longer running")
        self.context.destroy(completed)
        self.reply({"ok": True})
