"""Work the manager does on a VM in the background: snapshot, revert, add a disk (answers 202)."""
from __future__ import annotations

import re

from vmpooler.api import validation
from vmpooler.api.base import BaseHandler
from vmpooler.api.errors import ApiError
from vmpooler.api.render import shown
from vmpooler.api.vmlookup import find_vm
from vmpooler.auth.tokens import random_name
from vmpooler.db import tasks as task_store
from vmpooler.db.database import utcnow
from vmpooler.model import LIVE_STATES, TaskKind

MAX_DISK_GB = 2048


class _TaskHandler(BaseHandler):
    async def target(self, raw: str, check=None):
        """The VM to work on, once the request may: with an auth store a token is needed (401
        before the VM is looked up, as the original), and a VM's own token wherever it has one.
        ``check``: run between the hostname's check and the lookup (v3's disk size, as 3.x)."""
        row = await self.credentials.token_if_configured(self.request, required=True)
        name = self.hostname(raw)
        if check is not None:
            check()
        vm = await find_vm(self.context, name, LIVE_STATES)
        await self.credentials.authorize_vm(self.request, vm, token_needed=False, row=row)
        return vm

    async def queue(self, vm, kind: str, arg: str, body: dict) -> None:
        await self.db.run(task_store.queue, vm, kind, arg, utcnow())
        self.context.wake()
        self.reply(body, status=202)


class SnapshotHandler(_TaskHandler):
    async def post(self, raw: str) -> None:
        vm = await self.target(raw)
        name = random_name()
        await self.queue(vm, TaskKind.SNAPSHOT, name, {"ok": True, vm.name: {"snapshot": name}})


class RevertHandler(_TaskHandler):
    async def post(self, raw: str, snapshot: str) -> None:
        vm = await self.target(raw)
        if not await self.db.run(task_store.has_snapshot, vm.id, snapshot):
            raise ApiError(404, f"{vm.name} has no snapshot {shown(snapshot)} (yet)")
        await self.queue(vm, TaskKind.REVERT, snapshot, {"ok": True})


class DiskHandler(_TaskHandler):
    async def post(self, raw: str, size: str) -> None:
        vm = await self.target(raw, (lambda: validation.disk_size(size)) if self.version.validates else None)
        if not re.fullmatch(r"\d{1,4}", size) or not 1 <= int(size) <= MAX_DISK_GB:
            raise ApiError(400, f"the disk size must be a whole number of GB from 1 to {MAX_DISK_GB}, "
                           f"not {shown(size)}")
        await self.queue(vm, TaskKind.DISK, str(int(size)), {"ok": True, vm.name: {"disk": f"+{int(size)}gb"}})
