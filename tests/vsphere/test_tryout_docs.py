"""docs/operations.md "Trying the vSphere provider without a vCenter" is true: its configuration
is valid and names the simulator's inventory, and its VMware Tools script makes the simulator's
clones ready."""
import os
import re

import yaml

from tests.test_cli import ROOT
from tests.vsphere.helpers import CLUSTER, DATACENTER, DATASTORE, TEMPLATE, make_pool
from vmpooler import config as config_module
from vmpooler.providers.registry import REGISTRY


def tryout_section() -> str:
    text = open(os.path.join(ROOT, "docs", "operations.md"), encoding="utf-8").read()
    return text.split("### Trying the vSphere provider without a vCenter", 1)[1].split("\n## ", 1)[0]


def block(language: str) -> str:
    return re.search(rf"```{language}\n(.*?)```", tryout_section(), re.S).group(1)


def test_the_tryout_configuration_is_valid_and_names_the_simulator_s_inventory():
    built = config_module.build(yaml.safe_load(block("yaml")), {}, REGISTRY)
    assert built.warnings == []
    (pool,) = built.pools
    options, provider = pool.provider_options, built.providers["vsphere"].options
    assert (pool.template, options.datastore, provider.datacenter) == (TEMPLATE, DATASTORE, DATACENTER)
    assert built.providers["vsphere"].raw["insecure"] is True and options.ready_check_port == 0
    sections = {str(key).strip(":"): value for key, value in yaml.safe_load(block("yaml")).items()}
    assert sections["config"]["clone_target"] == CLUSTER


def test_the_tryout_tools_script_makes_a_simulator_clone_ready(vcsim, provider):
    pool = make_pool(ready_check_port=0)
    provider.create_vm(pool, "vm-tryout")
    assert not provider.is_ready(pool, "vm-tryout")  # the simulator reports no guest address
    script = block("python").replace("port=8989", f"port={vcsim.port}")
    script = script.replace("while True:", "for _round in range(2):").replace("time.sleep(1)", "time.sleep(0.1)")
    exec(compile(script, "play-tools.py", "exec"), {})  # as `python3 play-tools.py` would, for two rounds
    assert provider.is_ready(pool, "vm-tryout") is True
    assert provider.get_vm(pool, "vm-tryout").ip == "127.0.0.1"
