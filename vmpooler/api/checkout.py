"""The checkout both POST forms share (``POST /vm`` with a JSON body, ``POST /vm/a+a+b``):
``{requested name: count}`` all-or-nothing, answered as the original does."""
from __future__ import annotations

from typing import Optional

from vmpooler.api.errors import ApiError
from vmpooler.api import validation
from vmpooler.api.render import handed_out, shown, whole_number
from vmpooler.api.version import ApiVersion
from vmpooler.context import Context
from vmpooler.db import vms as vm_store
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
    counts = {}
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
    counts, problems = {}, []
    for name, raw in requested.items():
        counts[name] = count = whole_number(raw, max_digits=6)
        if count is None or not 0 <= count <= MAX_VMS_PER_REQUEST:
            problems.append(f"the count for {shown(name)} must be a whole number from 0 to "
                            f"{MAX_VMS_PER_REQUEST}, not {shown(raw)}")
    if not problems and sum(counts.values()) > MAX_VMS_PER_REQUEST:
        problems.append(f"at most {MAX_VMS_PER_REQUEST} VMs may be requested at once")
    if problems:
        raise ApiError(400, "; ".join(problems))
    return [vm_store.Want(name, tuple(config.backends(name)), count) for name, count in counts.items() if count]


def validate_body(requested: dict) -> None:
    """v3's checks of a POST /vm body (3.8.1): each name and count, with the original's messages;
    an empty body asks for nothing known (404), as there."""
    for name, count in requested.items():
        validation.pool_name(name)
        validation.vm_count(count)
    if not requested:
        raise ApiError(404, "the request asks for no pool")


async def checkout(context: Context, requested: dict, token: Optional[object],
                   version: ApiVersion = ApiVersion.V1) -> dict:
    """Check out ``requested`` for ``token`` (a token row, or None: anonymous); the answer's body,
    rendered for ``version``. 503 when a pool has too few ready VMs, 403 when the token's user
    would pass their quota."""
    config, settings = context.config, context.config.settings
    wanted = wants(config, requested, context.metrics)
    owner = vm_store.Owner(token.token_hash, token.user) if token is not None else None
    try:
        taken = await context.db.run(vm_store.checkout, wanted, utcnow(), settings.vm_lifetime, owner,
                                     settings.vm_lifetime_auth, config.quota(owner.user) if owner else None)
    except vm_store.Shortfall as shortfall:
        context.metrics.checkout_empty(str(shortfall))
        raise ApiError(503, f"not enough ready VMs for {shown(str(shortfall))}; nothing was checked out")
    except QuotaExceeded as exceeded:
        raise ApiError(403, f"{exceeded}; nothing was checked out", quota=exceeded.limit, held=exceeded.held)
    context.metrics.checkout(vm.pool for vms in taken.values() for vm in vms)
    if wanted:
        context.refill()
    body = {"ok": True}
    hostnames, domain = handed_out(config, taken, version.fqdn)
    for name, hosts in hostnames.items():
        body[name] = {"hostname": hosts[0] if len(hosts) == 1 else hosts}
    if domain:
        body["domain"] = domain
    return body
