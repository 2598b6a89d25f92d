import os
import re

from setuptools import find_packages, setup


def version() -> str:
    """vmpooler/__init__.py's __version__, read without importing the package (its one source)."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "vmpooler", "__init__.py"),
              encoding="utf-8") as source:
        return re.search(r'^__version__ = "([^"]+)"', source.read(), re.M).group(1)


setup(
    name="vmpooler-py",
    version=version(),
    description="Pools of ready virtual machines behind the vmpooler API v1, in one Python process",
    packages=find_packages(include=["vmpooler", "vmpooler.*"]) + ["vmpooler._migrations",
                                                                  "vmpooler._migrations.versions"],
    # the Alembic history lives at the top of the repository and is installed inside the package
    package_dir={"vmpooler._migrations": "migrations"},
    # the dashboard's page, script and style are served from the package: no CDN, no build step
    package_data={"vmpooler.api": ["openapi.json", "static/dashboard/*"], "vmpooler._migrations": ["script.py.mako"]},
    python_requires=">=3.9",
    install_requires=[
        "tornado>=6.1",
        "sqlalchemy>=2.0",
        "alembic>=1.9",
        "pyvmomi>=8.0",
        "pyyaml>=5.4",
        "bcrypt>=4.0",
        "coolname>=2.2",
        "prometheus-client>=0.17",
        "ldap3>=2.9",
        "dnspython>=2.3",  # the rfc2136 DNS plugin (imported only when a :dns_configs: entry uses it)
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-tornado>=0.8", "hypothesis>=6", "openapi-spec-validator>=0.7",
                 "psycopg[binary]>=3.1", "redis>=4.5", "mypy>=1.8", "libvirt-python>=9.0"],
        # for a PostgreSQL database (:database: url: postgresql://...)
        "postgresql": ["psycopg[binary]>=3.1"],
        # for `vmpooler db import-redis`: reading the original's Redis
        "redis": ["redis>=4.5"],
        # for KVM hosts through libvirt (provider_class: libvirt); builds against libvirt-dev
        "libvirt": ["libvirt-python>=9.0"],
    },
    entry_points={
        "console_scripts": ["vmpooler = vmpooler.cli:main"],
        # providers register here, ours as a separately installed plugin would (docs/providers.md)
        "vmpooler.providers": [
            "dummy = vmpooler.providers.dummy",
            "vsphere = vmpooler.providers.vsphere",
            "libvirt = vmpooler.providers.libvirt",
        ],
        # DNS plugins: a package holding config.py (SCHEMA) and plugin.py (PLUGIN); others ship the same way
        "vmpooler.dns": ["dynamic-dns = vmpooler.dns.dynamic", "rfc2136 = vmpooler.dns.rfc2136"],
    },
)
