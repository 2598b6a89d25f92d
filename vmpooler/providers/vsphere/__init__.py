"""The vSphere provider (pyVmomi). See provider.py; the other modules are its parts."""
from vmpooler.providers.vsphere.provider import VSphereProvider

__all__ = ["VSphereProvider"]
