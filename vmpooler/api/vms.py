"""GET /vm (pool names), POST /vm (JSON batch checkout) and the checkout both POST forms share."""
from __future__ import annotations

from vmpooler.api.base import ApiError, BaseHandler, shown, whole_number
from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow

#: most VMs one request may take (the original had no bound)
MAX_VMS_PER_REQUEST = 100


class CheckoutMixin:
    """Checks out ``{requested name: count}`` all-or-nothing and answers as the original does."""

    async def checkout(self: BaseHandler, requested: dict) -> None:
        config = self.config
        # With an auth store a token is optional but, when given, must be valid; without one the
        # header is ignored (as the original).
        row = await self.token(required=False) if self.context.auth is not None else None
        unknown = [name for name in requested if not config.backends(name)]
        if unknown:
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
        wants = [vm_store.Want(name, tuple(config.backends(name)), count) for name, count in counts.items() if count]
        owner = vm_store.Owner(row.token_hash, row.user) if row is not None else None
        try:
            taken = await self.db.run(vm_store.checkout, wants, utcnow(), self.setting("vm_lifetime"), owner,
                                      self.setting("vm_lifetime_auth"))
        except vm_store.Shortfall as shortfall:
            raise ApiError(503, f"not enough ready VMs for {shown(str(shortfall))}; nothing was checked out")
        body = {"ok": True}
        for name, hosts in taken.items():
            body[name] = {"hostname": hosts[0] if len(hosts) == 1 else hosts}
        if config.domain:
            body["domain"] = config.domain
        if wants:
            self.context.wake()
        self.reply(body)


def parse_path(names: str) -> dict:
    """``a+a+b`` -> {"a": 2, "b": 1}."""
    parts = names.split("+")
    if len(parts) > MAX_VMS_PER_REQUEST:
        raise ApiError(400, f"at most {MAX_VMS_PER_REQUEST} VMs may be requested at once")
    counts = {}
    for part in parts:
        counts[part] = counts.get(part, 0) + 1
    return counts


class VmsHandler(CheckoutMixin, BaseHandler):
    def get(self) -> None:
        self.reply([pool.name for pool in self.config.pools])

    async def post(self) -> None:
        await self.checkout(self.json_body())
