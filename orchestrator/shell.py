"""Interactive QMP shell across the VMs of a scenario (placeholder until implemented)."""

from __future__ import annotations

from .runner import RunOptions
from .scenario import LoadedScenario


async def run_shell(loaded: LoadedScenario, opts: RunOptions) -> int:
    """Boot the scenario's machines and open a prompt."""
    raise NotImplementedError("orchestrator shell is not implemented yet")
