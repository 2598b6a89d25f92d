"""The vSphere provider (pyVmomi): ``config.py`` holds its keys (and imports no pyVmomi, so a file
can be checked without it), ``provider.py`` the provider; the other modules are its parts."""
