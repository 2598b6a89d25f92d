"""The dashboard in a real headless Chromium, against the whole service on 127.0.0.1: the page
renders, its script shows every pool with the counts /status reports (and follows a checkout),
no script error happens, and a screenshot is kept (copied to $VMPOOLER_ARTIFACTS when set)."""
import asyncio
import json
import os
import shutil

import pytest

from tests.browser.chromium import Chromium, Page, chromium_binary
from tests.reliability.harness import pools_full, service_config, wait_until
from tests.service import InProcessService

POOLS = [{"name": "debian-7-i386", "template": "debian-7-i386", "size": 5},
         {"name": "debian-7-x86_64", "template": "debian-7-x86_64", "size": 3},
         {"name": "centos-6-x86_64", "template": "centos-6-x86_64", "size": 2},
         {"name": "win-2012r2-x86_64", "template": "win-2012r2", "size": 4, "dns_plugin": "windows"}]
#: the windows pool's DNS setup gives it a domain of its own; the others have :config: domain
DNS_CONFIGS = {"windows": {"dns_class": "dynamic-dns", "domain": "win.qa.test"}}

#: what the page shows of each pool and platform, read from the live DOM
READ_DOM = """(() => ({
  pools: Array.from(document.querySelectorAll('#dashboard-pool svg[data-pool]')).map(svg => ({
    pool: svg.dataset.pool,
    name: svg.querySelector('.pool-name').textContent,
    pct: svg.querySelector('.pool-pct').textContent,
    count: svg.querySelector('.pool-count').textContent,
    domain: (svg.querySelector('.pool-domain') || {}).textContent || null,
    drawn: svg.querySelector('path.area').getAttribute('d').length})),
  running: Object.fromEntries(Array.from(document.querySelectorAll('#dashboard-legend li')).map(
    li => [li.dataset.major, Number(li.querySelector('.count').textContent)])),
  numbers: Object.fromEntries(Array.from(document.querySelectorAll('[data-number]')).map(
    n => [n.dataset.number, n.querySelector('.value').textContent])),
  title: document.getElementById('site-name').textContent,
  errors: Array.from(document.querySelectorAll('#script-errors li')).map(li => li.textContent),
  ticks: Number(document.body.dataset.ticks || 0)}))()"""


def expected_pools(status) -> list:
    """The original's capacity label of each pool: "name", "pct%", "(ready/size)"."""
    shown = []
    for name, pool in sorted(status["pools"].items()):
        ready, size = pool["ready"], pool["max"]
        shown.append({"pool": name, "name": name, "pct": f"{ready * 100 // size}%", "count": f"({ready}/{size})"})
    return shown


def platform_running(status) -> dict:
    totals = {}
    for name, pool in status["pools"].items():
        totals[name.split("-")[0]] = totals.get(name.split("-")[0], 0) + pool["running"]
    return totals


def dom_matches(dom, status) -> bool:
    pools = [{key: entry[key] for key in ("pool", "name", "pct", "count")} for entry in dom["pools"]]
    return (pools == expected_pools(status) and dom["running"] == platform_running(status)
            and dom["numbers"]["ready"] == str(status["queue"]["ready"])
            and dom["numbers"]["running"] == str(status["queue"]["running"]))


def keep(screenshot):
    artifacts = os.environ.get("VMPOOLER_ARTIFACTS")
    if artifacts:
        os.makedirs(artifacts, exist_ok=True)
        shutil.copy(screenshot, os.path.join(artifacts, screenshot.name))


@pytest.fixture
def chromium(tmp_path):
    if not chromium_binary() and not os.environ.get("VMPOOLER_REQUIRE_CHROMIUM"):
        pytest.skip("chromium is not installed (scripts/test.sh installs it)")
    browser = Chromium(tmp_path)
    yield browser
    browser.close()


@pytest.fixture
def service(tmp_path):
    running = InProcessService(service_config(tmp_path, POOLS, settings={"site_name": "QA <b>pools</b>",
                                                                         "domain": "qa.test"},
                                              dns_configs=DNS_CONFIGS))
    yield running
    running.stop()


def test_dashboard_shows_every_pool_live_and_follows_a_checkout(service, chromium, tmp_path):
    client = service.client
    wait_until(lambda: pools_full(client, POOLS), 20, "the pools to fill")
    service.dummy.knobs.update(createvm_fail_percent=100)  # what is checked out now stays out
    root = client.get("/")
    assert (root.status, root.headers["location"]) == (302, "/dashboard/")
    base = f"http://127.0.0.1:{service.port}"

    async def drive():
        page = await Page.open(chromium.page_url())
        try:
            await page.call("Emulation.setDeviceMetricsOverride", width=1400, height=900, deviceScaleFactor=1,
                            mobile=False)
            await page.navigate(base + "/")  # the redirect, followed by the browser
            assert await page.evaluate("location.pathname") == "/dashboard/"
            await page.navigate(base + "/dashboard/?refresh=1")
            await page.wait_for("Number(document.body.dataset.ticks) >= 1", what="the first refresh")
            status = client.get("/api/v1/status").json()
            dom = await page.evaluate(READ_DOM)
            assert dom["title"] == "QA pools"
            assert dom_matches(dom, status), (dom, status)
            assert [p["count"] for p in dom["pools"]] == ["(2/2)", "(5/5)", "(3/3)", "(4/4)"]
            assert [p["domain"] for p in dom["pools"]] == [".qa.test", ".qa.test", ".qa.test", ".win.qa.test"]
            assert all(p["drawn"] > 20 for p in dom["pools"]), "every pool's capacity is drawn"
            health = client.get("/healthcheck?details").json()["queue_health"]["status"]  # shown nowhere in 3.x
            assert await page.evaluate("document.getElementById('queue-health').dataset.status") == health
            assert await page.evaluate("document.getElementById('queue-health').textContent") == f"queues {health}"

            taken = client.post("/api/v1/vm/debian-7-i386+debian-7-i386+win-2012r2-x86_64")
            assert taken.status == 200, taken.text
            after = client.get("/api/v1/status").json()
            assert after["pools"]["debian-7-i386"]["ready"] == 3
            dom = await page.wait_for(f"(() => {{ const d = {READ_DOM}; return d.running.debian === 2 && d; }})()",
                                      what="the checkout to show")
            assert dom_matches(dom, after), (dom, after)
            assert {"pool": "debian-7-i386", "name": "debian-7-i386", "pct": "60%", "count": "(3/5)"} in [
                {k: p[k] for k in ("pool", "name", "pct", "count")} for p in dom["pools"]]
            await page.evaluate("0")  # collect the events sent meanwhile
            assert dom["errors"] == []
            assert page.uncaught_exceptions() == []
            assert page.console_errors() == []
            keep(await page.screenshot(tmp_path / "dashboard.png"))
        finally:
            page.close()

    asyncio.run(asyncio.wait_for(drive(), 120))


def test_a_script_error_would_be_caught(service, chromium, tmp_path):
    """The error checks above can fail: a throwing script is seen in the DOM and over CDP."""
    async def drive():
        page = await Page.open(chromium.page_url())
        try:
            await page.navigate(f"http://127.0.0.1:{service.port}/dashboard/?refresh=1")
            await page.wait_for("Number(document.body.dataset.ticks) >= 1")
            await page.evaluate("setTimeout(() => { throw new Error('boom'); }); 0")
            errors = await page.wait_for("(() => { const l = document.querySelectorAll('#script-errors li');"
                                         " return l.length && Array.from(l).map(e => e.textContent); })()")
            assert any("boom" in error for error in errors)
            assert page.uncaught_exceptions()
        finally:
            page.close()

    asyncio.run(asyncio.wait_for(drive(), 60))
