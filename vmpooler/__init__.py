"""vmpooler-py: pools of ready virtual machines behind the vmpooler API v1, in one process."""

#: the one place the version is written (setup.py reads it; CHANGELOG.md says what each one changed)
__version__ = "0.2.0"
