"""The checkout both POST forms share (``POST /vm`` with a JSON body, ``POST /vm/a+a+b``):
``{requested name: count}`` all-or-nothing, answered as the original does."""
from __future__ import annotations

import dataclasses
import datetime
from typing import Any, Dict, Optional

from vmpooler.api.delivery import HEADER, request_key
from vmpooler.api.errors import ApiError
from vmpooler.api import validation
from vmpooler.api.render import handed_out, shown, whole_number
from vmpooler.api.version import ApiVersion
from vmpooler.context import Context
from vmpooler.db import checkout as checkout_store
from vmpooler.db import handout, idempotency
from vmpooler.db.database import utcnow
from vmpooler.metrics import DISABLED
from vmpooler.db.quotas import QuotaExceeded

#: most VMs one request may take (the original had no bound)
MAX_VMS_PER_REQUEST = 100


def parse_path(names: str) -> dict:
    """``a+a+b`` -> {"a": 2, "b": 1}."""
    parts = names.split("+")
    if len(parts) > MAX_VMS_PER_REQUEST:
        raise ApiError(400, f"at most {MAX_VMS_PER_REQUEST} VMs may be requested at once")
    counts: Dict[str, int] = {}
    for part in parts:
        counts[part] = counts.get(part, 0) + 1
    return counts


def wants(config, requested: dict, metrics=DISABLED) -> list:
    """What ``requested`` asks for, one ``Want`` per name with a count; 404 for an unknown pool or
    alias, 400 for a bad count (nothing is checked out then)."""
    unknown = [name for name in requested if not config.backends(name)]
    if unknown:
        metrics.checkout_invalid(unknown)
        raise ApiError(404, "unknown pool or alias: " + ", ".join(shown(n) for n in unknown[:5]))
    counts: Dict[str, Any] = {}
    problems = []
    for name, raw in requested.items():
        counts[name] = count = whole_number(raw, max_digits=6)
        if count is None or not 0 <= count <= MAX_VMS_PER_REQUEST:
            problems.append(f"the count for {shown(name)} must be a whole number from 0 to "
                            f"{MAX_VMS_PER_REQUEST}, not {shown(raw)}")
    if not problems and sum(counts.values()) > MAX_VMS_PER_REQUEST:
        problems.append(f"at most {MAX_VMS_PER_REQUEST} VMs may be requested at once")
    if problems:
        raise ApiError(400, "; ".join(problems))
    return [checkout_store.Want(name, tuple(config.backends(name)), count) for name, count in counts.items() if count]


def validate_body(requested: dict) -> None:
    """v3's checks of a POST /vm body (3.8.1): each name and count, with the original's messages;
    an empty body asks for nothing known (404), as there."""
    for name, count in requested.items():
        validation.pool_name(name)
        validation.vm_count(count)
    if not requested:
        raise ApiError(404, "the request asks for no pool")


@dataclasses.dataclass
class Handout:
    """A checkout made (or, under an Idempotency-Key, made before): its answer and what it took."""
    body: dict
    taken: dict
    checkout_at: datetime.datetime
    replayed: bool = False


async def checkout(context: Context, requested: dict, token: Optional[Any],
                   key: Optional[idempotency.Key] = None, version: ApiVersion = ApiVersion.V1) -> Handout:
    """Check out ``requested`` for ``token`` (a token row, or None: anonymous), the answer rendered
    for ``version``. 503 when a pool has too few ready VMs, 403 when the token's user would pass
    their quota; under ``key`` the answer the key got before (nothing more taken), or 422 when it
    was used for another request."""
    config, settings = context.config, context.config.settings
    wanted = wants(config, requested, context.metrics)
    owner = checkout_store.Owner(token.token_hash, token.user) if token is not None else None
    now, replayed = utcnow(), False
    try:
        taken = await context.db.run(handout.checkout, wanted, now, settings.vm_lifetime, owner,
                                     settings.vm_lifetime_auth, config.quota(owner.user) if owner else None, key)
    except checkout_store.Shortfall as shortfall:
        context.metrics.checkout_empty(str(shortfall))
        raise ApiError(503, f"not enough ready VMs for {shown(str(shortfall))}; nothing was checked out")
    except QuotaExceeded as exceeded:
        raise ApiError(403, f"{exceeded}; nothing was checked out", quota=exceeded.limit, held=exceeded.held)
    except (idempotency.Replay, idempotency.KeyInFlight, idempotency.KeyReused) as earlier:
        taken, now = handout.recalled((await replay(context, key, earlier)).answer)
        replayed = True
    if not replayed:
        context.metrics.checkout(vm.pool for vms in taken.values() for vm in vms)
        if wanted:
            context.refill()
    body: Dict[str, Any] = {"ok": True}
    hostnames, domain = handed_out(config, taken, version.fqdn)
    for name, hosts in hostnames.items():
        body[name] = {"hostname": hosts[0] if len(hosts) == 1 else hosts}
    if domain:
        body["domain"] = domain
    return Handout(body, taken, now, replayed)


async def replay(context: Context, key: Optional[idempotency.Key], earlier: Exception) -> idempotency.Replay:
    """The answer ``key`` got before: ``earlier`` itself, or, when a concurrent request with the key
    committed first (KeyInFlight), that request's answer; 422 for a key used for another request."""
    try:
        if isinstance(earlier, idempotency.KeyInFlight) and key is not None:  # raised only under a key
            await context.db.run(idempotency.lookup, key, utcnow())
            raise ApiError(409, f"a request with this {HEADER} is still being made; retry it")
        raise earlier
    except idempotency.Replay as found:
        return found
    except idempotency.KeyReused:
        raise ApiError(422, f"this {HEADER} was used for another request (method, path or body); "
                            "nothing was done") from None


async def answer(handler, requested: dict) -> None:
    """POST /vm and POST /vm/<a+a+b>: check out ``requested`` and answer, or, when the client is
    gone before its answer is written, hand the VMs back (api/delivery.py)."""
    token = await handler.credentials.token_if_configured(handler.request, False)
    key = request_key(handler, token.token_hash if token is not None else "")
    handed = await checkout(handler.context, requested, token, key, handler.version)
    if handed.replayed:
        handler.set_header("Idempotent-Replayed", "true")

    async def undo(reason: str) -> None:
        await handler.db.run(handout.hand_back, handed.taken, handed.checkout_at, f"handed back: {reason}",
                             utcnow(), key)

    await handler.deliver(handed.body, 200, undo)
