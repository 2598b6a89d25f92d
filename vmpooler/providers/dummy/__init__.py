"""The dummy provider: ``config.py`` holds its keys, ``provider.py`` the simulated VMs."""
