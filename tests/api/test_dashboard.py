"""The dashboard's routes over HTTP: the redirect, the page and its assets (versions, caching,
HEAD, 404), the two JSON routes in the original's shapes, and that a pip install ships the assets.
The page itself runs in Chromium in tests/browser."""
import datetime
import os
import re
import subprocess
import sys

import pytest

from tests.api.conftest import ALIAS_POOLS, assert_error, vm_row
from tests.conftest import new_ondemand_vms, new_vm
from tests.test_cli import ROOT
from vmpooler.api import dashboard
from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow

PLATFORM_POOLS = ALIAS_POOLS + [{"name": "solaris", "template": "solaris-11", "size": 1}]


def test_root_redirects_to_the_dashboard(api):
    for method in ("GET", "HEAD"):
        response = api.request(method, "/")
        assert (response.status, response.headers["location"]) == (302, "/dashboard/")


@pytest.mark.parametrize("path", ["/dashboard/", "/dashboard"])
def test_the_page_names_the_site_and_links_versioned_assets(start_api, path):
    api = start_api(settings={"site_name": "Lab <b>pool</b> & co"})
    response = api.get(path)
    assert response.status == 200
    assert response.headers["content-type"] == "text/html; charset=UTF-8"
    assert response.headers["cache-control"] == "no-cache"
    assert '<h1 id="site-name">Lab pool &amp; co</h1>' in response.text
    for name in ("dashboard.js", "dashboard.css", "logo.svg"):
        assert f"/dashboard/{name}?v={dashboard.assets()[name].version}" in response.text
    assert "{{" not in response.text


def test_site_name_cannot_inject_markup(start_api):
    api = start_api(settings={"site_name": "<script>alert(1)</script>\"><img src=x onerror=alert(2)>"})
    text = api.get("/dashboard/").text
    assert "<script>alert" not in text and "<img src=x" not in text and "alert(1)" in text


def test_every_linked_asset_is_served_and_nothing_comes_from_elsewhere(api):
    page = api.get("/dashboard/").text
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(links) >= 3
    for link in links:
        assert link.startswith("/dashboard/"), link
        assert api.get(link).status == 200, link
    for name, asset in dashboard.assets().items():
        text = asset.body.decode("utf-8")
        # the only absolute URL is SVG's namespace, a name that is never fetched
        assert set(re.findall(r"https?://[^\s\"')]+", text)) <= {"http://www.w3.org/2000/svg"}, name


def test_assets_revalidate_unless_asked_for_by_version(api):
    script = dashboard.assets()["dashboard.js"]
    plain = api.get("/dashboard/dashboard.js")
    assert plain.status == 200 and plain.text.encode() == script.body
    assert plain.headers["content-type"] == "text/javascript; charset=UTF-8"
    assert plain.headers["cache-control"] == "no-cache" and plain.headers["etag"]
    again = api.get("/dashboard/dashboard.js", headers={"If-None-Match": plain.headers["etag"]})
    assert again.status == 304 and again.text == ""
    versioned = api.get(f"/dashboard/dashboard.js?v={script.version}")
    assert versioned.headers["cache-control"] == dashboard.IMMUTABLE
    assert api.get("/dashboard/dashboard.js?v=old").headers["cache-control"] == "no-cache"
    assert api.get("/dashboard/dashboard.css").headers["content-type"] == "text/css; charset=UTF-8"
    assert api.get("/dashboard/logo.svg").headers["content-type"] == "image/svg+xml"


def test_head_answers_headers_only(api):
    response = api.request("HEAD", "/dashboard/dashboard.js")
    assert response.status == 200 and response.text == ""
    assert int(response.headers["content-length"]) == len(dashboard.assets()["dashboard.js"].body)
    assert api.request("HEAD", "/dashboard/").status == 200


@pytest.mark.parametrize("path", ["/dashboard/nope.js", "/dashboard/index.html", "/dashboard/..%2Fsetup.py",
                                  "/dashboard/../setup.py", "/dashboard/stats", "/dashboard/dashboard.js/"])
def test_unknown_assets_are_a_json_404(api, path):
    assert_error(api.get(path), 404, with_message=False)


def test_pool_stats_have_the_original_shape(start_api):
    api = start_api(pools=ALIAS_POOLS)
    for _ in range(3):
        api.add("debian-7-i386")
    api.add("centos-6-x86_64", state="running")
    for path in ("/dashboard/stats/vmpooler/pool", "/dashboard/stats/vmpooler/pool/"):
        response = api.get(path)
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"debian-7-i386": {"size": 5, "ready": 3}, "debian-7-x86_64": {"size": 3, "ready": 0},
                                   "centos-6-x86_64": {"size": 2, "ready": 0}}


def test_pool_stats_show_the_run_time_size_as_poolstat_does(start_api):
    api = start_api(pools=ALIAS_POOLS, settings={"experimental_features": True})
    assert api.post("/api/v1/config/poolsize", {"debian-7-i386": "2"}).status == 201
    poolstat = api.get("/api/v1/poolstat?pool=debian-7-i386").json()["pools"]["debian-7-i386"]
    for query in ("", "?history"):
        stats = api.get("/dashboard/stats/vmpooler/pool" + query).json()
        assert stats["debian-7-i386"]["size"] == poolstat["max"] == 2, query


def test_pool_history_is_the_past_hour_in_the_original_shape(start_api):
    api = start_api(pools=ALIAS_POOLS)
    api.add("debian-7-i386")
    api.add("debian-7-i386")
    body = api.get("/dashboard/stats/vmpooler/pool?history=1").json()
    for name, size in (("debian-7-i386", 5), ("debian-7-x86_64", 3), ("centos-6-x86_64", 2)):
        entry = body[name]
        assert list(entry) == ["size", "ready", "history"] and entry["size"] == size
        points = entry["history"]
        assert len(points) == 60 * dashboard.POINT_REPEAT and points[-1] == entry["ready"]
        assert all(len(set(points[i:i + 8])) == 1 for i in range(0, len(points), 8)), "each minute 8 times"
    assert body["debian-7-i386"]["ready"] == 2 and body["debian-7-i386"]["history"][0] == 0


def test_pool_history_counts_ready_as_status_does_without_waiting_on_demand_vms(start_api):
    """An on-demand VM waiting in ready for its sibling is no ready VM of its pool in /status, nor
    at any point of the history (which was one higher before it became ready)."""
    api = start_api(pools=ALIAS_POOLS)
    pool = api.config.pools_by_name["debian-7-i386"]
    now = utcnow()
    stock_at, waiting_at = now - datetime.timedelta(minutes=50), now - datetime.timedelta(minutes=20)
    new_vm(api.db, pool, "stock", stock_at)
    assert vm_store.cloned(api.db, vm_store.latest(api.db, "stock"), stock_at, ready=True)
    new_ondemand_vms(api.db, "r1", pool, 2, waiting_at)  # r1-0 ready, r1-1 still cloning
    assert vm_store.cloned(api.db, vm_row(api, "r1-0"), waiting_at, ready=True)
    assert api.get("/api/v1/status").json()["pools"][pool.name]["ready"] == 1
    entry = api.get("/dashboard/stats/vmpooler/pool?history=1").json()[pool.name]
    per_minute = entry["history"][::dashboard.POINT_REPEAT]
    assert entry["ready"] == 1 and per_minute[-1] == 1
    assert per_minute[:9] == [0] * 9 and per_minute[10:] == [1] * 50  # the stock VM alone, since 50 minutes


def test_running_is_summed_by_platform(start_api):
    api = start_api(pools=PLATFORM_POOLS)
    api.add("debian-7-i386", state="running")
    api.add("debian-7-x86_64", state="running")
    api.add("debian-7-x86_64", state="running")
    api.add("solaris", state="running")
    api.add("centos-6-x86_64")
    body = api.get("/dashboard/stats/vmpooler/running").json()
    assert body == {"debian": {"running": 3}, "centos": {"running": 0}, "solaris": {"running": 1}}
    with_history = api.get("/dashboard/stats/vmpooler/running/?history=1").json()
    assert with_history["debian"]["running"] == 3
    for entry in with_history.values():
        assert len(entry["history"]) == 60 and entry["history"][-1] == entry["running"]
    assert with_history["debian"]["history"][0] == 0


def test_the_dashboard_reads_the_database_it_is_given(start_api):
    """Counts follow checkouts at once (nothing cached between requests)."""
    api = start_api(pools=ALIAS_POOLS)
    name = api.add("debian-7-x86_64")
    assert api.get("/dashboard/stats/vmpooler/pool").json()["debian-7-x86_64"]["ready"] == 1
    assert api.post("/api/v1/vm/debian-7-x86_64").json()["debian-7-x86_64"]["hostname"] == name
    assert api.get("/dashboard/stats/vmpooler/pool").json()["debian-7-x86_64"]["ready"] == 0
    assert api.get("/dashboard/stats/vmpooler/running").json()["debian"]["running"] == 1


def test_a_pip_install_ships_the_assets(tmp_path):
    """setup.py's package_data copies every asset into the built package."""
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)], cwd=ROOT,
                   check=True, capture_output=True)
    built = os.listdir(tmp_path / "vmpooler" / "api" / "static" / "dashboard")
    assert sorted(built) == sorted(os.listdir(dashboard.ASSET_DIR))
