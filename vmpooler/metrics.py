"""Prometheus metrics: the original vmpooler's names, types, labels and buckets, and a few of ours.

Built only when ``:prometheus:`` is configured; otherwise every part of the service holds
``DISABLED``, whose hooks do nothing, so metrics cost nothing. Counters and histograms are kept
by one-line hooks where things happen (``context.metrics.checkout(...)``, ``manager.metrics.cloned(...)``);
what the database or the breakers already know (ready and running VMs, breaker states, database
errors, the on-demand queue) is read when scraped. Each service has its own registry, so several
services in one process (tests) never share a sample.

Names start with ``prometheus_prefix``; every sample carries ``vmpooler_instance`` = ``prefix``.
The original's counters are named without ``_total`` (its Ruby client added none), which the Python
client cannot write, so the text exposition is rendered here from the registry's samples.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.utils import floatToGoString
from vmpooler.db import dead_letters, queue_health
from vmpooler.db import stats as stat_store
from vmpooler.db.database import StoreUnavailable, utcnow
from vmpooler.model import BreakerState

log = logging.getLogger("vmpooler.metrics")

# The original's buckets (lib/vmpooler/metrics/promstats.rb, 0.18.2) ...
CLONE_BUCKETS = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 180.0, 240.0, 300.0, 600.0)
READY_BUCKETS = (30.0, 60.0, 120.0, 180.0, 240.0, 300.0, 500.0, 800.0, 1200.0, 1600.0)
#: ... and its Ruby client's default, which its request-duration histogram used
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Ours: a provider call takes milliseconds (dummy) to minutes (a vSphere clone); a pass milliseconds.
PROVIDER_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
PASS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: the label value of checkouts of names that are no pool (the original's own for an unreadable request)
UNKNOWN = "unknown"
INSTANCE = "vmpooler_instance"


class Hooks:
    """What the service reports as things happen. These do nothing: no ``:prometheus:`` section."""

    enabled = False
    #: where the metrics are served (``Metrics``: ``prometheus_endpoint``); nowhere here
    endpoint = ""

    def checkout(self, pools: Iterable[str]) -> None:
        """VMs handed out, one pool name per VM."""

    def checkout_empty(self, requested: str) -> None:
        """A checkout refused because ``requested`` (a pool or an alias) had too few ready VMs."""

    def checkout_invalid(self, names: list) -> None:
        """A checkout naming ``names``, which are no pool or alias."""

    def deleted(self, ok: bool) -> None:
        """DELETE /vm/<host>: the VM was returned (ok), or left running state meanwhile."""

    def cloned(self, vm, now, ready: bool) -> None:
        """The clone of ``vm`` (a row as read: pool, created_at) finished at ``now``; ``ready``: it is
        ready too. Timed from the clone's request, as the database records it for /status."""

    def became_ready(self, vm, now) -> None:
        """``vm`` (pending, as read) became ready at ``now``."""

    def destroyed(self, pool: str, seconds: float) -> None:
        """A VM of ``pool`` was destroyed by a provider call that took ``seconds``."""

    def marked_failed(self, pool: str) -> None:
        """A pending VM of ``pool`` was given up after the pool's timeout."""

    def observed(self, name: str, provider):
        """The provider an operation of the runner is given: here the provider itself; with
        metrics, a view of it whose method calls are timed and their errors counted."""
        return provider

    def manager_pass(self, seconds: float) -> None:
        """The pool manager finished a pass that took ``seconds``."""

    def http_request(self, method: str, path: str, code: str, seconds: float) -> None:
        """An HTTP request was answered (``path`` already collapsed: no hostnames or tokens in it)."""

    def http_vm_operation(self, method: str, subpath: str, operation: str) -> None:
        """The original's per-route counter of /vm and /ondemandvm requests."""

    def http_exception(self, name: str) -> None:
        """A handler raised an exception of class ``name`` that nothing handled (a 500)."""

    def ondemand_generated(self, duplicate: bool = False) -> None:
        """POST /ondemandvm created a request, or was refused as a duplicate request id."""

    def ondemand_failed(self, reason: str, pool: str) -> None:
        """POST /ondemandvm refused for ``pool``: reason ``toomanyrequests`` or ``invalid``."""

    def watch(self, breakers: Callable[[], dict]) -> None:
        """Where scrapes read the circuit breakers from: a callable giving {provider: breaker}."""


DISABLED = Hooks()


def build_metrics(config, db) -> Hooks:
    """``Metrics`` for a configuration with ``:prometheus:``, else ``DISABLED``."""
    return Metrics(config, db) if config.prometheus is not None else DISABLED


class Metrics(Hooks):
    enabled = True

    def __init__(self, config, db):
        options = config.prometheus
        self.config, self.db = config, db
        self.instance = options.prefix
        self.endpoint = options.prometheus_endpoint
        self.prometheus_prefix = options.prometheus_prefix
        self.registry = CollectorRegistry(auto_describe=False)
        self._bare = set()  # counters the original named without _total
        self._breakers: Callable[[], dict] = dict
        self._define_originals()
        self._define_ours()
        self.registry.register(_ScrapeTime(self))

    # -- definitions -----------------------------------------------------------------------
    def _named(self, suffix: str) -> str:
        return f"{self.prometheus_prefix}_{suffix}"

    def _counter(self, suffix: str, doc: str, labels=(), bare: bool = True) -> Counter:
        counter = Counter(self._named(suffix), doc, (*labels, INSTANCE), registry=self.registry)
        if bare:
            self._bare.add(self._named(suffix))
        if not labels:
            counter.labels(self.instance)  # a counter without labels of its own is shown from 0
        return counter

    def _histogram(self, suffix: str, doc: str, labels, buckets) -> Histogram:
        return Histogram(self._named(suffix), doc, (*labels, INSTANCE), buckets=buckets, registry=self.registry)

    def _define_originals(self) -> None:
        """The original's metrics that happen here, with its docstrings (promstats.rb)."""
        checkout = "Pool checkout counts"
        self._checkout_success = self._counter("checkout_success", f"{checkout} successful checkout", ("poolname",))
        self._checkout_empty = self._counter("checkout_empty", f"{checkout} checkout failed - no machine",
                                             ("poolname",))
        self._checkout_invalid = self._counter("checkout_invalid", f"{checkout} checkout failed - invalid template",
                                               ("poolname",))
        self._delete = {ok: self._counter(f"delete_{suffix}", f"Delete machine {suffix}")
                        for ok, suffix in ((True, "success"), (False, "failed"))}
        self._errors_markedasfailed = self._counter(
            "errors_markedasfailed", "Count of errors for pool timeout waiting for instance to initialise",
            ("template_name",))
        self._ondemand_generate = {duplicate: self._counter(f"ondemandrequest_generate_{suffix}",
                                                            f"Ondemand request {doc}")
                                   for duplicate, suffix, doc in ((False, "success", "succeeded"),
                                                                  (True, "duplicaterequests",
                                                                   "failed duplicate request"))}
        self._ondemand_fail = {reason: self._counter(f"ondemandrequest_fail_{reason}", f"Ondemand request failure "
                                                     f"{doc}", ("poolname",))
                               for reason, doc in (("toomanyrequests", "too many requests"),
                                                   ("invalid", "invalid poolname"))}
        self._http_vm = self._counter("http_requests_vm_total", "Total number of HTTP request/sub-operations handled "
                                      "by the Rack application under the /vm endpoint",
                                      ("method", "subpath", "operation"), bare=False)
        self._clone = self._histogram("clone", "vmpooler time taken to clone machine", ("poolname",), CLONE_BUCKETS)
        self._destroy = self._histogram("destroy", "vmpooler time taken to destroy machine", ("poolname",),
                                        CLONE_BUCKETS)
        self._time_to_ready = self._histogram("time_to_ready_state", "Time taken for machine to read ready state "
                                              "for pool", ("poolname",), READY_BUCKETS)
        # the original's collector middleware (named <prometheus_prefix>_http_...)
        self._http_requests = self._counter("http_requests_total", "The total number of HTTP requests handled by "
                                            "the Rack application.", ("code", "method", "path"), bare=False)
        self._http_durations = self._histogram("http_request_duration_seconds", "The HTTP response duration of "
                                               "the Rack application.", ("method", "path"), HTTP_BUCKETS)
        self._http_exceptions = self._counter("http_exceptions_total", "The total number of exceptions raised by "
                                              "the Rack application.", ("exception",), bare=False)

    def _define_ours(self) -> None:
        self._provider_seconds = self._histogram("provider_call_duration_seconds", "Seconds a provider call took, "
                                                 "by provider and operation", ("provider", "operation"),
                                                 PROVIDER_BUCKETS)
        self._provider_errors = self._counter("provider_errors_total", "Provider calls that raised, by provider, "
                                              "operation and error class", ("provider", "operation", "error"),
                                              bare=False)
        self._pass_seconds = self._histogram("manager_pass_duration_seconds", "Seconds a pass of the pool manager "
                                             "took (its provider work runs in the background)", (), PASS_BUCKETS)

    # -- hooks -----------------------------------------------------------------------------
    def checkout(self, pools: Iterable[str]) -> None:
        for pool in pools:
            self._checkout_success.labels(pool, self.instance).inc()

    def checkout_empty(self, requested: str) -> None:
        self._checkout_empty.labels(requested, self.instance).inc()

    def checkout_invalid(self, names: list) -> None:
        # The original labels the name asked for: any client could then add series, and a
        # hostname or token sent by mistake would become a label. All count as "unknown".
        self._checkout_invalid.labels(UNKNOWN, self.instance).inc(len(names))

    def deleted(self, ok: bool) -> None:
        self._delete[ok].labels(self.instance).inc()

    def cloned(self, vm, now, ready: bool) -> None:
        seconds = _since(vm.created_at, now)
        self._clone.labels(vm.pool, self.instance).observe(seconds)
        if ready:
            self._time_to_ready.labels(vm.pool, self.instance).observe(seconds)

    def became_ready(self, vm, now) -> None:
        self._time_to_ready.labels(vm.pool, self.instance).observe(_since(vm.created_at, now))

    def destroyed(self, pool: str, seconds: float) -> None:
        self._destroy.labels(pool, self.instance).observe(seconds)

    def marked_failed(self, pool: str) -> None:
        self._errors_markedasfailed.labels(pool, self.instance).inc()

    def observed(self, name: str, provider):
        return _ObservedProvider(self, name, provider)

    def timed(self, provider: str, operation: str, function: Callable) -> Callable:
        """``function`` (the provider's method ``operation``), timed and its errors counted."""
        duration = self._provider_seconds.labels(provider, operation, self.instance)

        def call(*args, **kwargs):  # runs in a provider thread; the client's metrics are thread-safe
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            except Exception as error:
                self._provider_errors.labels(provider, operation, type(error).__name__, self.instance).inc()
                raise
            finally:
                duration.observe(time.perf_counter() - started)

        return call

    def manager_pass(self, seconds: float) -> None:
        self._pass_seconds.labels(self.instance).observe(seconds)

    def http_request(self, method: str, path: str, code: str, seconds: float) -> None:
        self._http_requests.labels(code, method, path, self.instance).inc()
        self._http_durations.labels(method, path, self.instance).observe(seconds)

    def http_vm_operation(self, method: str, subpath: str, operation: str) -> None:
        self._http_vm.labels(method, subpath, operation, self.instance).inc()

    def http_exception(self, name: str) -> None:
        self._http_exceptions.labels(name, self.instance).inc()

    def ondemand_generated(self, duplicate: bool = False) -> None:
        self._ondemand_generate[duplicate].labels(self.instance).inc()

    def ondemand_failed(self, reason: str, pool: str) -> None:
        self._ondemand_fail[reason].labels(pool, self.instance).inc()

    def watch(self, breakers: Callable[[], dict]) -> None:
        self._breakers = breakers

    # -- the exposition --------------------------------------------------------------------
    def exposition(self) -> bytes:
        """The text format (0.0.4) of every metric, as the original's exporter wrote it."""
        lines = []
        for family in self.registry.collect():
            name = family.name
            if family.type == "counter" and name not in self._bare:
                name += "_total"
            lines.append(f"# HELP {name} {_escape_help(family.documentation)}")
            lines.append(f"# TYPE {name} {family.type}")
            for sample in family.samples:
                if sample.name == family.name + "_created":
                    continue  # OpenMetrics only; the original has none
                sample_name = name if family.type == "counter" else sample.name
                lines.append(f"{sample_name}{_labels(sample.labels)} {floatToGoString(sample.value)}")
        return ("\n".join(lines) + "\n").encode("utf-8")

    # -- read at scrape time ---------------------------------------------------------------
    def scrape_time_families(self):
        yield from self._pool_gauges()
        yield from self._breaker_gauges()
        errors = CounterMetricFamily(self._named("database_errors"), "Times the database could not serve (locked, "
                                     "full, read-only, connection lost)", labels=(INSTANCE,))
        errors.add_metric((self.instance,), self.db.unavailable_count)
        yield errors
        yield from self._ondemand_gauge()
        yield from self._queue_gauges()

    def _queue_gauges(self):
        """3.8.1's dead-letter and queue-health figures (``vmpooler_dlq.*``, ``vmpooler_health.*``),
        which it pushed to statsd: here gauges read when scraped."""
        settings = self.config.settings
        try:
            letters = dead_letters.counts(self.db) if settings.dlq_enabled else {}
            health = (queue_health.measure(self.db, utcnow(), settings.health_thresholds,
                                           [pool.name for pool in self.config.pools])
                      if settings.health_check_enabled else None)
        except StoreUnavailable as error:
            log.warning("scrape without the queue gauges: %s", error)
            return
        if settings.dlq_enabled:
            family = GaugeMetricFamily(self._named("dlq_entries"), "VMs in the dead-letter queue, by pool and "
                                       "where they failed", labels=("poolname", "queue_type", INSTANCE))
            for (pool, queue), count in sorted(letters.items()):
                family.add_metric((pool, queue, self.instance), count)
            yield family
        if health is not None:
            status = GaugeMetricFamily(self._named("health_status"), "Queue health: 0 healthy, 1 degraded, "
                                       "2 unhealthy", labels=(INSTANCE,))
            status.add_metric((self.instance,), health.status.gauge)
            stuck = GaugeMetricFamily(self._named("health_stuck_vms"), "VMs pending longer than "
                                      "stuck_vm_age_threshold", labels=("poolname", INSTANCE))
            oldest = GaugeMetricFamily(self._named("health_pending_oldest_age_seconds"), "Age of each pool's "
                                       "oldest pending VM", labels=("poolname", INSTANCE))
            for name, queues in sorted(health.pools.items()):
                stuck.add_metric((name, self.instance), queues.stuck)
                oldest.add_metric((name, self.instance), queues.pending_oldest_age)
            yield from (status, stuck, oldest)

    def _pool_gauges(self):
        try:
            counts = stat_store.pool_counts(self.db, utcnow())  # the one query /status counts with
        except StoreUnavailable as error:
            log.warning("scrape without the pool gauges: %s", error)
            return
        families = {state: GaugeMetricFamily(self._named(state), doc, labels=("poolname", INSTANCE))
                    for state, doc in (("ready", "vmpooler number of machines in ready State"),
                                       ("running", "vmpooler number of machines running"))}
        for pool in self.config.pools:
            counted = counts.get(pool.name, stat_store.NO_VMS)
            families["ready"].add_metric((pool.name, self.instance), counted.ready)
            families["running"].add_metric((pool.name, self.instance), counted.running)
        yield from families.values()

    def _breaker_gauges(self):
        family = GaugeMetricFamily(self._named("provider_circuit_breaker_state"), "1 for the state each provider's "
                                   "circuit breaker is in, 0 for the others", labels=("provider", "state", INSTANCE))
        for provider, breaker in sorted(self._breakers().items()):
            for state in BreakerState:
                family.add_metric((provider, str(state), self.instance), 1 if breaker.state is state else 0)
        yield family

    def _ondemand_gauge(self):
        try:
            waiting = stat_store.ondemand_waiting(self.db)
        except StoreUnavailable as error:
            log.warning("scrape without the on-demand queue: %s", error)
            return
        if waiting is None:
            return
        family = GaugeMetricFamily(self._named("ondemand_queue_depth"), "On-demand requests waiting for their VMs",
                                   labels=(INSTANCE,))
        family.add_metric((self.instance,), waiting)
        yield family


class _ObservedProvider:
    """A provider whose public methods are timed and counted by operation (the method's name)
    when an operation of the runner calls them: ``lambda p: p.create_vm(pool, name)``."""

    def __init__(self, metrics: Metrics, name: str, provider):
        self._metrics, self._name, self._provider = metrics, name, provider

    def __getattr__(self, attribute: str):
        value = getattr(self._provider, attribute)
        if attribute.startswith("_") or not callable(value):
            return value
        return self._metrics.timed(self._name, attribute, value)


class _ScrapeTime:
    """The registry's view of what is read when scraped."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def collect(self):
        return self.metrics.scrape_time_families()


def _since(then, now) -> float:
    return max((now - then).total_seconds(), 0.0)


def _escape_help(doc: str) -> str:
    return doc.replace("\\", r"\\").replace("\n", r"\n")


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    parts = []
    for name, value in labels.items():
        if "\\" in value or '"' in value or "\n" in value:  # rare: label values are names
            value = value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
        parts.append(f'{name}="{value}"')
    return "{" + ",".join(parts) + "}"
