"""vmpooler-py: pools of ready virtual machines behind the vmpooler API v1, in one process."""

__version__ = "0.1.0"
