"""p2plab orchestrator: run PCIe P2P lab scenarios in QEMU.

Modules, each with one job:

- ``schema``: the scenario format (pydantic models, exported as JSON Schema)
- ``yamlsource``: YAML loading with line/column marks and duplicate-key detection
- ``scenario``: loading and validating a scenario file (located errors)
- ``cmdline``: the QEMU command line of a VM (pure)
- ``accel``: the KVM-or-TCG decision and its cached probe
- ``vm``: one QEMU process with its QMP client, console watcher and agent
- ``agent``: the host side of the guest agent's JSON-lines channel
- ``console``: tailing a VM's console log, crash detection
- ``steps``: running scenario steps; ``faults``: fault injection;
  ``devices``: p2plab device counters over QOM
- ``runner``: running one scenario end to end, with teardown
- ``results``: results data, JSON and JUnit XML; ``progress``: progress view
- ``shell``: the interactive QMP shell; ``cli``: the ``orchestrator`` command
- ``errors``: the exception hierarchy; ``paths``: where things live;
  ``logsetup``: structlog configuration
"""

from .errors import (
    AgentError,
    AgentTimeout,
    GuestCrashed,
    P2PLabError,
    Problem,
    QMPCommandError,
    ScenarioError,
    SetupError,
    StepFailed,
    StepTimeout,
    VMError,
    VMExited,
    VMLaunchError,
    VMsFailed,
)
from .results import RunResult, ScenarioResult, StepResult
from .runner import RunOptions, run_scenario
from .scenario import (
    LoadedScenario,
    load_scenario,
    load_scenarios,
    parse_scenario,
    parse_scenarios,
)
from .schema import Scenario

__all__ = [
    "AgentError",
    "AgentTimeout",
    "GuestCrashed",
    "LoadedScenario",
    "P2PLabError",
    "Problem",
    "QMPCommandError",
    "RunOptions",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "ScenarioResult",
    "SetupError",
    "StepFailed",
    "StepResult",
    "StepTimeout",
    "VMError",
    "VMExited",
    "VMLaunchError",
    "VMsFailed",
    "load_scenario",
    "load_scenarios",
    "parse_scenario",
    "parse_scenarios",
    "run_scenario",
]
