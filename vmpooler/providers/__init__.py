"""Providers: the backends VMs are cloned on. ``registry.py`` knows them by ``provider_class``
name and imports each only when it is used; ``base.py`` holds the interface."""
