"""GET /summary[/<boot|clone|tag>[/<key>]]?from=YYYY-MM-DD&to=YYYY-MM-DD: clone and boot times
and tag counts, per day and over the range. The database aggregates per day and pool; only those
aggregates reach Python."""
from __future__ import annotations

import asyncio
import datetime
import re
from typing import Any, Dict, List, Optional

from vmpooler.api.base import BaseHandler
from vmpooler.api.errors import ApiError
from vmpooler.api.render import shown, task_json
from vmpooler.db import stats as stat_store
from vmpooler.db.database import utcnow

KINDS = ("boot", "clone")
#: the longest range one request may cover (five years)
MAX_DAYS = 366 * 5
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _parse_day(raw, default: datetime.date) -> datetime.date:
    if raw is None:
        return default
    if not _DATE.fullmatch(raw):
        raise ApiError(400, f"Invalid date format {shown(raw)}, must match YYYY-MM-DD.")
    try:
        return datetime.date.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, f"Invalid date {shown(raw)}: no such day.") from None


def day_range(first_raw, last_raw, today: datetime.date) -> list:
    """The days from ``from`` to ``to`` (both default to today), or a 400 saying what is wrong."""
    first, last = _parse_day(first_raw, today), _parse_day(last_raw, today)
    if last < first:
        raise ApiError(400, "Date range is invalid, 'to' cannot come before 'from'.")
    if first > today:
        raise ApiError(400, "Date range is invalid, 'from' must be in the past.")
    if (last - first).days >= MAX_DAYS:
        raise ApiError(400, f"Date range is too long: at most {MAX_DAYS} days.")
    return [(first + datetime.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def _tally(tags: dict, name: str, value: str, count: int) -> None:
    counts = tags.setdefault(name, {"total": 0})
    counts[value] = counts.get(value, 0) + count
    counts["total"] += count


async def build_summary(db, days: list, tag_name: Optional[str] = None) -> dict:
    samples, tag_rows = await asyncio.gather(db.run(stat_store.duration_stats, days[0], days[-1]),
                                             db.run(stat_store.tag_counts, days[0], days[-1], tag_name))
    # day -> kind -> pool -> Stats
    by_day: Dict[str, Dict[str, dict]] = {day: {kind: {} for kind in KINDS} for day in days}
    for day, kind, pool, stats in samples:
        by_day[day][kind][pool] = stats
    tags_by_day: Dict[str, dict] = {day: {} for day in days}
    tags: dict = {}
    for day, name, value, count in tag_rows:  # plain unpacking: tens of thousands of rows
        _tally(tags_by_day[day], name, value, count)
        _tally(tags, name, value, count)
    body: Dict[str, Any] = {}
    daily: List[Dict[str, Any]] = [{"date": day} for day in days]
    for kind in KINDS:
        overall, pools, counts = stat_store.Stats(), {}, []  # type: stat_store.Stats, dict, list
        for entry in daily:
            day_pools = by_day[entry["date"]][kind]
            day_total = stat_store.Stats()
            for pool, stats in day_pools.items():
                day_total = day_total.add(stats)
                pools[pool] = pools.get(pool, stat_store.Stats()).add(stats)
            entry[kind] = task_json(day_total, day_pools)
            overall = overall.add(day_total)
            counts.append(day_total.count)
        body[kind] = task_json(overall, pools, counts)
    for entry in daily:
        entry["tag"] = tags_by_day[entry["date"]]
    body["tag"] = tags
    body["daily"] = daily
    return body


class SummaryHandler(BaseHandler):
    async def get(self, section: Optional[str] = None, key: Optional[str] = None) -> None:
        if section not in (None, "tag") + KINDS or (section in KINDS and key not in (None, "duration", "count")):
            raise ApiError(404)
        days = day_range(self.get_argument("from", None), self.get_argument("to", None), utcnow().date())
        full = await build_summary(self.db, days, key if section == "tag" else None)
        if section is None:
            return self.reply(full)
        pick = (lambda block: block) if section == "tag" or key is None else (lambda block: {key: block[key]})
        self.reply({section: pick(full[section]),
                    "daily": [{"date": entry["date"], section: pick(entry[section])} for entry in full["daily"]]})
