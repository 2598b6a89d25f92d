"""A run-time clone target (POST /config/clonetarget) reaches the vSphere clone: the override is
applied to the pool's typed vSphere options, which the provider reads."""
import pytest

from tests.vsphere.helpers import CLUSTER, make_pool, vm_at
from vmpooler.db import overrides
from vmpooler.providers.base import PermanentError


def test_a_clone_target_override_places_the_clone_in_that_cluster(provider, vc):
    configured = make_pool(clone_target=None)
    pool = overrides.apply(configured, {"clone_target": CLUSTER})
    assert pool.provider_options.clone_target == CLUSTER and pool.raw["clone_target"] == CLUSTER
    assert configured.provider_options.clone_target is None  # the configuration itself is untouched
    assert overrides.effective_value(configured, {}, "clone_target") is None
    provider.create_vm(pool, "vm-moved")
    assert vm_at(vc, pool, "vm-moved").resourcePool.owner.name == CLUSTER


def test_an_unknown_clone_target_override_is_a_permanent_clone_error(provider):
    pool = overrides.apply(make_pool(), {"clone_target": "no-such-cluster"})
    with pytest.raises(PermanentError, match="clone_target no-such-cluster not found"):
        provider.create_vm(pool, "vm-nowhere")
