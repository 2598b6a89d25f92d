"""The VM a /vm/<host>... path names, for every handler that acts on one VM."""
from __future__ import annotations

import datetime

from vmpooler.api.errors import ApiError
from vmpooler.context import Context
from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow


async def find_vm(context: Context, name: str, states=None):
    """The newest row of the VM ``name``, else 404 (see ``found``)."""
    vm = await context.db.run(vm_store.latest, name)
    return found(context, vm, name, states)


def found(context: Context, vm, name: str, states=None):
    """``vm``, unless it is None, not in ``states`` or destroyed more than data_ttl hours ago (404)."""
    ttl = datetime.timedelta(hours=context.config.settings.data_ttl)
    if vm is None or (states and vm.state not in states) or (
            vm.destroyed_at is not None and utcnow() - vm.destroyed_at > ttl):
        raise ApiError(404, f"no such VM: {name}" if states is None else f"no such VM in a state that allows "
                       f"this: {name}")
    return vm
