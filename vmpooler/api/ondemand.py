"""On-demand requests (the original's 0.13+ routes): VMs cloned for one client on request.

POST /ondemandvm (JSON ``{"<pool or alias>": count, ..., "request_id": optional}``) and
POST /ondemandvm/<a+a+b> answer 201 with the request_id; GET /ondemandvm/<id> answers 202 while
VMs are pending and 200 once the request is ready, failed or deleted; DELETE /ondemandvm/<id>
cancels it. Bodies, keys and codes are the original's (its ``message`` beside our ``error``).
The manager fills requests (vmpooler/manager/ondemand.py).
"""
from __future__ import annotations

import random
import re
import uuid
from typing import Dict

from vmpooler.api.base import BaseHandler
from vmpooler.api.checkout import parse_path, replay
from vmpooler.api.delivery import HandsOut, request_key
from vmpooler.api.errors import ApiError
from vmpooler.api.render import handed_out, shared_domain, shown, whole_number
from vmpooler.db import idempotency
from vmpooler.db import ondemand as requests_db
from vmpooler.db.checkout import Owner
from vmpooler.db.database import utcnow
from vmpooler.model import OD_DELETED, OD_FAILED, OD_READY, READY
from vmpooler.db.quotas import QuotaExceeded

_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


def refuse(status: int, message: str, **fields):
    """An error in the original's shape (``message``), with our ``error`` beside it."""
    raise ApiError(status, message, message=message, **fields)


def choose_pools(backends: list, count: int, rng=random) -> dict:
    """{pool: how many} for ``count`` VMs of a name that ``backends`` serve: each VM drawn
    uniformly from them, as the original draws without backend weights."""
    chosen: Dict[str, int] = {}
    for _ in range(count):
        pool = rng.choice(backends)
        chosen[pool] = chosen.get(pool, 0) + 1
    return chosen


class OndemandHandler(HandsOut, BaseHandler):
    """What the routes share: creating a request and finding one."""

    async def owner_token(self):
        """With auth configured a valid token is required (401), as the original; without, the
        header is ignored."""
        return await self.credentials.token_if_configured(self.request, True)

    async def create(self, requested: dict, request_id, row) -> None:
        config, metrics = self.config, self.context.metrics
        unknown = [name for name in requested if not config.backends(name)]
        if unknown:
            for _name in unknown:  # labelled "unknown", not with the name: a client must not grow the metrics
                metrics.ondemand_failed("invalid", "unknown")
            raise ApiError(404, "unknown pool or alias: " + ", ".join(shown(n) for n in unknown[:5]),
                           bad_templates=unknown)
        counts = self._counts(requested)
        generated = request_id is None
        if generated:
            request_id = str(uuid.uuid4())
        elif not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
            raise ApiError(400, "request_id must be 1 to 64 letters, digits, '_', '.', ':' or '-', "
                                f"starting with a letter or digit, not {shown(request_id)}")
        wants = [(name, pool, count) for name, total in counts.items()
                 for pool, count in choose_pools(config.backends(name), total).items()]
        owner = Owner(row.token_hash, row.user) if row is not None else None
        key = request_key(self, owner.token_hash if owner else "")
        try:
            await self.db.run(requests_db.create, request_id, wants, utcnow(), owner,
                              config.quota(owner.user) if owner else None, key, generated)
            metrics.ondemand_generated()
            self.context.wake()
        except requests_db.DuplicateRequest:
            metrics.ondemand_generated(duplicate=True)
            refuse(409, f"request_id '{request_id}' has already been created", request_id=request_id)
        except QuotaExceeded as exceeded:
            raise ApiError(403, f"{exceeded}; nothing was requested", quota=exceeded.limit,
                           held=exceeded.held) from None
        except (idempotency.Replay, idempotency.KeyInFlight, idempotency.KeyReused) as earlier:
            answer = (await replay(self.context, key, earlier)).answer
            request_id, generated = answer["request_id"], answer["generated"]
            self.set_header("Idempotent-Replayed", "true")
        body = {"ok": True, "request_id": request_id}
        domain = None if self.version.fqdn else shared_domain(config, [pool for _name, pool, _count in wants])
        if domain:
            body["domain"] = domain

        async def undo(reason: str) -> None:
            """Only we know a request_id we made: a client that never got it cannot use the request."""
            if generated:
                await self.db.run(requests_db.cancel, request_id, utcnow(), f"on-demand request {request_id} "
                                  f"cancelled: {reason}", key)

        await self.deliver(body, 201, undo)

    def _counts(self, requested: dict) -> dict:
        """{name: count > 0}; 400 for a count that is not a whole number >= 0 or for nothing at
        all, 403 above max_ondemand_instances_per_request (the original's message)."""
        limit = self.config.settings.max_ondemand_instances_per_request
        counts, problems = {}, []
        for name, raw in requested.items():
            count = whole_number(raw, max_digits=6)
            if count is None or count < 0:
                problems.append(f"the count for {shown(name)} must be a whole number, not {shown(raw)}")
            elif count:
                counts[name] = count
        if problems:
            raise ApiError(400, "; ".join(problems))
        too_many = [name for name, count in counts.items() if count > limit]
        if too_many:
            self.context.metrics.ondemand_failed("toomanyrequests", too_many[0])  # the first, as the original
            refuse(403, f"requested amount of instances exceeds the maximum {limit}")
        if not counts:
            raise ApiError(400, "the request asks for no VMs")
        return counts

    async def request_or_404(self, request_id: str):
        request = await self.db.run(requests_db.find, request_id)
        if request is None:
            refuse(404, f"no request found for request_id '{request_id}'")
        return request


class OndemandBodyHandler(OndemandHandler):
    """POST /ondemandvm with a JSON body."""

    async def post(self) -> None:
        row = await self.owner_token()
        try:
            payload = self.json_body()
        except ApiError as error:
            raise ApiError(400, error.error, message="JSON payload could not be parsed") from None
        request_id = payload.pop("request_id", None)
        await self.create(payload, request_id, row)


class OndemandRequestHandler(OndemandHandler):
    """POST /ondemandvm/<a+a+b> (a new request), GET and DELETE /ondemandvm/<request_id>."""

    async def post(self, names: str) -> None:
        row = await self.owner_token()
        await self.create(parse_path(names), None, row)

    async def get(self, request_id: str) -> None:
        request = await self.request_or_404(request_id)
        state = request.row.state
        body = {"ok": True, "request_id": request_id, "ready": state == OD_READY}
        if state == OD_READY:
            hostnames, domain = handed_out(self.config, {want.id: [
                vm for vm in request.vms if vm.want_id == want.id and vm.checkout_at is not None]
                for want in request.wants}, self.version.fqdn)
            for want in request.wants:
                body.setdefault(want.requested, {"hostname": []})["hostname"].extend(hostnames[want.id])
            if domain:
                body["domain"] = domain
        elif state == OD_FAILED:
            body["message"] = request.row.failure
        elif state == OD_DELETED:
            body["message"] = "The request has been deleted"
        else:
            for want in request.wants:  # the original's counts are strings
                entry = body.setdefault(want.requested, {"ready": "0", "pending": "0"})
                ready = min(len(request.vms_of(want, (READY,))), want.count)
                entry["ready"] = str(int(entry["ready"]) + ready)
                entry["pending"] = str(int(entry["pending"]) + want.count - ready)
        self.reply(body, 200 if state in (OD_READY, OD_FAILED, OD_DELETED) else 202)

    async def delete(self, request_id: str) -> None:
        row = await self.owner_token()
        request = await self.request_or_404(request_id)
        if row is not None and request.row.token_hash is not None and request.row.token_hash != row.token_hash:
            raise ApiError(403, f"on-demand request {request_id!r} was made with another token; only that token "
                                "may delete it")
        cancelled = await self.db.run(requests_db.cancel, request_id, utcnow())
        if cancelled is None:
            await self.request_or_404(request_id)
        if not cancelled:
            return self.reply({"ok": True, "message": "the request has already been deleted"})
        self.context.wake()
        self.reply({"ok": True})
