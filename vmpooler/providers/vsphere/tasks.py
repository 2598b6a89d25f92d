"""Waiting for a vSphere task by polling its state through the property collector.

``pyVim.task.WaitForTask`` reads ``task.info`` whole, and the simulator's RevertToSnapshot_Task
reports a snapshot as ``info.entity``, which pyVmomi refuses to deserialize; reading only
``info.state``, ``info.error`` and ``info.result`` avoids that and is all we need.
"""
from __future__ import annotations

import time

from pyVmomi import vim

from vmpooler.providers.base import TransientError
from vmpooler.providers.vsphere import inventory

_TASK_PROPERTIES = ("info.state", "info.error", "info.result")
_FIRST_POLL = 0.05  # seconds; most simulator tasks are done by then
_LONGEST_POLL = 1.0


def wait_for_task(content, task, timeout: float, what: str, clock=time.monotonic, sleep=time.sleep):
    """The task's result once it succeeds. Raises its fault if it fails (for the caller to
    translate) and TransientError if it is still running after ``timeout`` seconds."""
    deadline = clock() + timeout
    pause = _FIRST_POLL
    while True:
        info = inventory.properties(content, task, vim.Task, _TASK_PROPERTIES)
        if info is None:
            raise TransientError(f"{what}: the task disappeared before it finished")
        state = info.get("info.state")
        if state == vim.TaskInfo.State.success:
            return info.get("info.result")
        if state == vim.TaskInfo.State.error:
            raise info.get("info.error") or TransientError(f"{what}: the task failed without a reason")
        remaining = deadline - clock()
        if remaining <= 0:
            raise TransientError(f"{what}: the task was still {state or 'unknown'} after {timeout:g}s")
        sleep(min(pause, remaining))
        pause = min(pause * 2, _LONGEST_POLL)
