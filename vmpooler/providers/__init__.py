"""Providers: the backends VMs are cloned on. ``PROVIDER_CLASSES`` maps a ``provider_class`` name
to its class; the manager builds one instance per ``:providers:`` entry."""
from vmpooler.providers.base import Provider
from vmpooler.providers.dummy import DummyProvider
from vmpooler.providers.vsphere import VSphereProvider

PROVIDER_CLASSES = {
    "dummy": DummyProvider,
    "vsphere": VSphereProvider,
}


def build_providers(config) -> dict:
    """One provider instance per configured provider name."""
    return {name: PROVIDER_CLASSES[options["provider_class"]](name, options, config.settings)
            for name, options in config.providers.items()}


__all__ = ["Provider", "PROVIDER_CLASSES", "build_providers"]
