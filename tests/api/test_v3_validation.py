"""/api/v3's input validation: 3.8.1's checks with the original's messages (400 JSON), where 3.x
answers a 500 a 400 instead; v1 and v2 keep their own checks (and answer valid input unchanged)."""
import json

import pytest

from tests.api.conftest import assert_error, vm_row
from vmpooler.api import validation

V3 = "/api/v3"


def error(response, status=400):
    return assert_error(response, status)["error"]


@pytest.mark.parametrize("body, message", [
    ("{not json", "Invalid JSON: "),
    ("null", "Request body must be a JSON object"),
    ("[1]", "Request body must be a JSON object"),
    ({"debian-7-i386": "x"}, "VM count must be a valid integer"),
    ({"debian-7-i386": 1.5}, "VM count must be a valid integer"),
    ({"debian-7-i386": -1}, "VM count must be a valid integer"),
    ({"debian-7-i386": 0}, "VM count must be at least 1"),
    ({"debian-7-i386": 101}, "VM count must be at most 100"),
    ({"debian 7": 1}, "Invalid pool name format"),
    ({"a" * 101: 1}, "Pool name too long"),
    ({"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}, "Request body too complex"),
    (json.dumps({"debian-7-i386": 1, "x": "y" * 10300}), "Request body too large"),
])
def test_post_vm_body(api, body, message):
    api.add()
    assert error(api.post(f"{V3}/vm", body)).startswith(message)
    assert api.get(f"{V3}/vm").status == 200 and vm_row(api, api.add()).state == "ready"


@pytest.mark.parametrize("body", ["", "{}"])
def test_post_vm_asking_for_nothing_is_404(api, body):
    assert_error(api.post(f"{V3}/vm", body), 404)


def test_post_vm_valid_and_string_counts(api):
    a = api.add()
    body = api.post(f"{V3}/vm", {"debian-7-i386": "1"}).json()
    assert body == {"ok": True, "debian-7-i386": {"hostname": f"{a}.company.com"}}
    assert_error(api.post(f"{V3}/vm", {"nosuch": 1}), 404)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_hostnames(api, method):
    body = {"lifetime": 2} if method == "PUT" else None
    assert error(api.request(method, f"{V3}/vm/bad_name", body=body)) == "Invalid hostname format"
    assert error(api.request(method, f"{V3}/vm/-bad", body=body)) == "Invalid hostname format"
    assert error(api.request(method, f"{V3}/vm/" + ".".join(["a" * 60] * 5),
                             body=body)) == "Hostname too long"
    assert_error(api.request(method, f"{V3}/vm/novm.company.com", body=body), 404)


def test_get_cuts_at_the_first_dot(api):
    name = api.checkout()
    assert api.get(f"{V3}/vm/{name}.anything.example").json()[name]["fqdn"] == f"{name}.company.com"


@pytest.mark.parametrize("size, message", [("0", "Disk size must be at least 1"),
                                           ("2049", "Disk size must be at most 2048"),
                                           ("x", "Disk size must be a valid integer")])
def test_disk_size(api, size, message):
    name = api.checkout()
    assert error(api.post(f"{V3}/vm/{name}/disk/{size}")) == message


@pytest.mark.parametrize("body, failure", [
    ({"lifetime": 0}, "Lifetime must be a positive integer (got 0)"),
    ({"lifetime": "abc"}, "Lifetime must be a positive integer (got abc)"),
    ({"tags": {"bad key!": "x"}}, "Invalid tag key format"),
    ({"tags": {"k" * 51: "x"}}, "Tag key too long"),
    ({"tags": {"user": "x" * 256}}, "Tag value too long"),
    ({"tags": {"user": "a<b>"}}, "Tag value contains invalid characters"),
    ({"tags": {"user": {"nested": 1}}}, "Tag value must be a string"),  # 3.x: a 500
    ({"tags": ["a"]}, "You provided tags ('[\"a\"]') as something other than a hash."),  # 3.x: a 500
])
def test_put(api, body, failure):
    name = api.checkout()
    answer = assert_error(api.put(f"{V3}/vm/{name}", body), 400)
    assert answer["failure"] == [failure]
    info = api.get(f"{V3}/vm/{name}").json()[name]
    assert info["lifetime"] == 24 and "tags" not in info  # nothing changed


def test_put_valid_and_empty(api):
    name = api.checkout()
    assert api.put(f"{V3}/vm/{name}", {"lifetime": 3, "tags": {"user": "j.doe@example.com", "path": "a/b c:d"}}
                   ).json() == {"ok": True}
    assert api.put(f"{V3}/vm/{name}", "").json() == {"ok": True}  # an empty body changes nothing, as 3.x
    info = api.get(f"{V3}/vm/{name}").json()[name]
    assert info["lifetime"] == 3 and info["tags"] == {"user": "j.doe@example.com", "path": "a/b c:d"}


@pytest.mark.parametrize("base", ["/api/v1", "/api/v2"])
def test_v1_and_v2_keep_their_own_checks(api, base):
    """Input v3 refuses that v1 accepts (a count of 0, an underscore in a tag key) stays accepted,
    and v1's refusals keep v1's messages."""
    api.add()
    assert api.post(f"{base}/vm", {"debian-7-i386": 0}).json() == {"ok": True, **(
        {"domain": "company.com"} if base == "/api/v1" else {})}
    name = api.checkout()
    assert api.put(f"{base}/vm/{name}", {"tags": {"my tag": "<x>"}}).json() == {"ok": True}
    answer = assert_error(api.put(f"{base}/vm/{name}", {"lifetime": 0}), 400)
    assert answer["failure"] == ["You provided a lifetime ('0') but you must provide a positive whole number of hours."]
    assert "the disk size must be" in error(api.post(f"{base}/vm/{name}/disk/0"))
    assert "not valid JSON" in error(api.post(f"{base}/vm", "{not json"))


def test_validation_units():
    assert validation.vm_count("7") == 7 and validation.vm_count(100) == 100
    for bad in (True, None, 1.0, "1 ", [1]):
        with pytest.raises(Exception, match="VM count must be a valid integer"):
            validation.vm_count(bad)
    assert validation.tag_problem("a.b-c_d", "x y-z.@:/_") is None and validation.tag_problem("k", None) is None
    assert validation.tag_problem("k", "é") == "Tag value contains invalid characters"  # Ruby's \w is ASCII
    assert validation.tag_problem("", "x") == "Tag key is required"


def test_disk_checks_in_3x_order(auth_api):
    """As 3.x: the token (401), then the hostname and the size (400), then the VM (404)."""
    assert_error(auth_api.post(f"{V3}/vm/bad_name/disk/0"), 401)
    token = auth_api.token()
    assert error(auth_api.post(f"{V3}/vm/bad_name/disk/0", token=token)) == "Invalid hostname format"
    assert error(auth_api.post(f"{V3}/vm/novm/disk/0", token=token)) == "Disk size must be at least 1"
    assert_error(auth_api.post(f"{V3}/vm/novm/disk/8", token=token), 404)


def test_depth_counts_as_the_original():
    assert not validation._deeper_than({"a": {"b": {"c": {"d": {}}}}}, 5)  # 5 levels
    assert validation._deeper_than({"a": {"b": {"c": {"d": {"e": {}}}}}}, 5)
    assert not validation._deeper_than({"a": [1, [2, [3]]], "b": 1}, 5) and validation._deeper_than([[[[[[]]]]]], 5)
    deep = {}
    for _ in range(5000):  # far past Python's recursion limit: still an answer
        deep = {"a": deep}
    assert validation._deeper_than(deep, 5)


def test_only_ascii_counts_and_names():
    """Ruby's \\d and [a-z] with /i are ASCII; Python's are not unless told."""
    with pytest.raises(Exception, match="VM count must be a valid integer"):
        validation.vm_count("١٢")  # Arabic-Indic digits
    with pytest.raises(Exception, match="Invalid hostname format"):
        validation.hostname("\u212aelvin")  # KELVIN SIGN, equal to k when case is ignored in Unicode
