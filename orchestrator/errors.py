"""The orchestrator's exception hierarchy.

Every error the orchestrator raises on purpose derives from :class:`P2PLabError`
and keeps its root cause (``raise ... from exc``)::

    P2PLabError
    ├── ScenarioError            a scenario file is invalid (exit status 2)
    │                            carries one or more located Problems
    ├── SetupError               the host cannot run a VM (no QEMU, no kernel, bad paths)
    ├── VMError                  something went wrong with one VM
    │   ├── VMLaunchError        QEMU did not start or its sockets never appeared
    │   ├── VMExited             QEMU exited while we still needed it
    │   ├── GuestCrashed         the console showed a panic or an oops
    │   ├── GuestSetupError      the guest could not be set up as the scenario asks
    │   │                        (the management LAN)
    │   ├── AgentError           the guest agent channel failed or answered "error"
    │   │   └── AgentTimeout     no answer from the agent in time (boot or request)
    │   └── QMPCommandError      a QMP command failed (wraps qemu.qmp's ExecuteError)
    ├── VMsFailed                several VMs failed at once (start-up); each VMError kept
    └── StepFailed               a step ran but its expectations were not met
        └── StepTimeout          a step (or the scenario) ran out of time
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class P2PLabError(Exception):
    """Base of every error the orchestrator raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario file, located as precisely as possible."""

    file: str
    line: int  # 1-based; 0 when unknown
    column: int  # 1-based; 0 when unknown
    path: str  # the path inside the document, e.g. "machines[0].devices[1].bus"
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        inside = f" {self.path}:" if self.path else ""
        return f"{where}:{inside} {self.message}"


class ScenarioError(P2PLabError):
    """A scenario file is invalid: YAML syntax, schema, or cross-references."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class SetupError(P2PLabError):
    """The host cannot run the scenario: a missing binary, kernel or initramfs."""


class VMError(P2PLabError):
    """Something went wrong with one VM; ``vm`` names it."""

    def __init__(self, vm: str, message: str, console_tail: str = "") -> None:
        self.vm = vm
        self.console_tail = console_tail
        super().__init__(f"{vm}: {message}")


class VMLaunchError(VMError):
    """QEMU did not start, or its QMP/agent sockets never became connectable."""


class VMExited(VMError):
    """QEMU exited while the orchestrator still needed it."""


class GuestCrashed(VMError):
    """The guest console showed a kernel panic, an oops or a BUG."""


class GuestSetupError(VMError):
    """The guest could not be set up as the scenario asks (the management LAN)."""


class AgentError(VMError):
    """The guest agent channel failed, or the agent answered with an error."""


class AgentTimeout(AgentError):
    """The guest agent did not answer in time (at boot, or to a request)."""


class QMPCommandError(VMError):
    """A QMP command returned an error."""


class VMsFailed(P2PLabError):
    """Several VMs failed together (while starting): every one is reported."""

    def __init__(self, errors: Sequence[P2PLabError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


class StepFailed(P2PLabError):
    """A step ran but its expectations (status, patterns, assertions) were not met."""


class StepTimeout(StepFailed):
    """A step, or the whole scenario, ran out of time."""
