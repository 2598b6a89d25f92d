"""DNS plugins: each a package found through the ``vmpooler.dns`` entry-point group (registry.py),
holding ``config.py`` (its ``SCHEMA``: the keys of its ``:dns_configs:`` entry) and ``plugin.py``
(its ``PLUGIN`` class, a ``base.DnsPlugin``). Built in: ``dynamic-dns`` and ``rfc2136``."""
