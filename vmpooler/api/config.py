"""GET /config (every pool's effective configuration) and the run-time changes of a pool's size,
template and clone target: POST /config/poolsize|pooltemplate|clonetarget, and DELETE
/config/poolsize/<pool> and /config/pooltemplate/<pool> to undo an override. The changes are
kept in the database (db/overrides.py) and applied by the manager's next pass."""
from __future__ import annotations

import json
from typing import Any, Dict

from vmpooler.api.admin import ChangeMixin
from vmpooler.api.base import BaseHandler
from vmpooler.api.errors import ApiError
from vmpooler.api.render import shown, whole_number
from vmpooler.db import overrides
from vmpooler.db.database import utcnow

#: the largest size a pool may be given at run time
MAX_POOL_SIZE = 10000
MAX_TEXT = 500  # the length of vms.template


def pool_size(value):
    size = whole_number(value, max_digits=5)
    return size if size is not None and 0 <= size <= MAX_POOL_SIZE else None


def template_path(value):
    """A template as the original accepts it: a path with a '/', neither first nor last."""
    if isinstance(value, str) and "/" in value and value[0] != "/" and value[-1] != "/" and len(value) <= MAX_TEXT:
        return value
    return None


def clone_target(value):
    return value if isinstance(value, str) and value.strip() and len(value) <= MAX_TEXT else None


def _json_safe(options) -> dict:
    """A pool's configuration mapping as JSON can carry it (YAML may hold dates and the like)."""
    return json.loads(json.dumps(dict(options), default=str))


class ConfigHandler(BaseHandler):
    async def get(self) -> None:
        drains = await self.db.run(overrides.pending_drains)
        configuration = []
        for pool in await self.db.run(overrides.effective_pools, self.config.pools):
            entry = _json_safe(pool.raw)
            entry.update(size=pool.size, template=pool.template, template_ready=pool.name not in drains)
            configuration.append(entry)
        self.reply({"pool_configuration": configuration, "status": {"ok": True}})


class _SettingHandler(ChangeMixin, BaseHandler):
    #: the pool setting, how a requested value is checked (None: refused), the key listing refusals
    pool_setting = ""
    failures = ""

    @staticmethod
    def parse(value):
        raise NotImplementedError

    async def post(self) -> None:
        actor = await self.authorize_change()
        values, refused = {}, []
        for name, raw in self.json_body().items():
            value = self.parse(raw) if name in self.config.pools_by_name else None
            if value is None:
                refused.append(name)
            else:
                values[name] = value
        if refused:
            failures: Dict[str, Any] = {self.failures: refused}
            raise ApiError(400, f"unknown pools or bad values of {self.pool_setting}: "
                           + ", ".join(shown(name) for name in refused[:5]), **failures)
        changed = await self.db.run(overrides.change_setting, self.config.pools_by_name, self.pool_setting, values,
                                    actor, utcnow())
        if changed:
            self.context.wake()
        self.reply({"ok": True}, 201 if changed else 200)


class _UndoHandler(ChangeMixin, BaseHandler):
    """DELETE: back to the configuration file's value; 201 when that changed something, else 200."""

    pool_setting = ""
    shown_as = ""  # the original's prefix of the answer's keys

    async def delete(self, name: str) -> None:
        actor = await self.authorize_change()
        pool = self.config.pools_by_name.get(name)
        if pool is None:
            raise ApiError(404, f"no such pool: {shown(name)}")
        before, configured, changed = await self.db.run(overrides.undo, pool, self.pool_setting, actor, utcnow())
        if changed:
            self.context.wake()
        self.reply({"ok": True, f"{self.shown_as}_before_reset": before,
                    f"{self.shown_as}_before_overrides": configured}, 201 if changed else 200)


class PoolSizeHandler(_SettingHandler):
    pool_setting, failures, parse = overrides.SIZE, "not_configured", staticmethod(pool_size)


class PoolTemplateHandler(_SettingHandler):
    pool_setting, failures, parse = overrides.TEMPLATE, "bad_templates", staticmethod(template_path)


class CloneTargetHandler(_SettingHandler):
    pool_setting, failures, parse = overrides.CLONE_TARGET, "bad_templates", staticmethod(clone_target)


class PoolSizeUndoHandler(_UndoHandler):
    pool_setting, shown_as = overrides.SIZE, "pool_size"


class PoolTemplateUndoHandler(_UndoHandler):
    pool_setting, shown_as = overrides.TEMPLATE, "template"
