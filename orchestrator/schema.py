"""The scenario file format, as pydantic models (exported as JSON Schema).

A scenario has ``machines`` (each a q35 VM: CPU, memory, accel, vIOMMU, kernel,
PCIe topology, devices), optional ``links`` between NICs of different machines,
an optional ``management_lan`` between the machines, and ``steps`` run in
order. A step is a mapping with exactly one of the keys ``exec``, ``join``,
``qmp``, ``fault``, ``wait``, ``assert`` plus the common keys ``name``, ``machine``
and ``timeout``. See docs/scenarios.md.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$", max_length=64)]

# Every size and count a scenario gives is bounded, so that a file from a
# stranger cannot make validation (or QEMU) chase absurd values.  Each limit is
# far above what this lab's machines use; QEMU and the device models still
# check what they accept within it.
MAX_MACHINES = 16  # the management LAN's limit too: 169.254.100.1-16
MAX_STEPS = 1000
MAX_DEVICES = 64  # per machine, as with topology entries and disks
MAX_LIST = 256  # argv items, qemu_args, patterns, reports
MAX_TEXT = 65536  # a command line, a description
MAX_SECONDS = 86400.0  # a step's or a scenario's timeout: one day
MIN_MEMORY = 64 << 20
MAX_MEMORY = 1 << 40  # a machine's RAM, a disk, a device size property: 1 TiB
MAX_PROP_INT = (1 << 64) - 1  # QEMU's widest integer property

Text = Annotated[str, Field(max_length=MAX_TEXT)]
Command = Text | Annotated[list[Annotated[str, Field(max_length=MAX_TEXT)]],
                           Field(max_length=MAX_LIST)]
PropValue = (
    Annotated[str, Field(max_length=4096)]
    | Annotated[int, Field(ge=-(1 << 63), le=MAX_PROP_INT)]
    | Annotated[float, Field(allow_inf_nan=False)]
    | bool
)
Seconds = Annotated[float, Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False,
                                 description="seconds")]
KernelSpec = Annotated[str, Field(
    min_length=1, max_length=4096, pattern=r"^[^\x00-\x1f]+$",
    description="a built kernel's name (7.2, 6.12, 7.2-debug) or a path",
)]
SIZE_PATTERN = r"[0-9]{1,16}[KMGT]?"  # at most 16 digits: a size never needs more
Size = Annotated[str, Field(pattern=f"^{SIZE_PATTERN}$", description="e.g. 1G, 512M")]


def size_bytes(size: str) -> int:
    """Bytes in a ``Size`` (a bare number is bytes, as QEMU reads a -blockdev size)."""
    shift = {"K": 10, "M": 20, "G": 30, "T": 40}.get(size[-1], 0)
    return int(size[:-1] if shift else size) << shift


def _bounded_size(v: str, lo: int, hi: int, what: str) -> str:
    n = size_bytes(v)
    if not lo <= n <= hi:
        raise ValueError(f"{what} {v} is out of range: {_human(lo)} to {_human(hi)}")
    return v


def _human(n: int) -> str:
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


# Size properties of our device models, bounded here as in their specs
# (docs/devices/): VRAM is 1 MiB to 64 GiB, and no BAR or granule exceeds it.
DEVICE_SIZE_PROPS: dict[str, dict[str, tuple[int, int]]] = {
    "p2p-gpu": {p: (1 << 12, 64 << 30)
                for p in ("vram-size", "bar-size", "rebar-min", "aperture-granule")},
}


class Strict(BaseModel):
    """Base: unknown keys are errors; models are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---------------------------------------------------------------- machines


class VIOMMU(Strict):
    """The virtual IOMMU: ``intel-iommu`` or ``virtio-iommu`` and its -device options."""

    model: Literal["intel-iommu", "virtio-iommu"] = "intel-iommu"
    options: dict[str, PropValue] = Field(default_factory=dict)


class Device(Strict):
    """One ``-device``: driver, id, parent bus and properties, as QEMU spells them."""

    driver: Annotated[str, Field(max_length=128)]
    id: Identifier
    bus: str | None = None
    props: dict[str, PropValue] = Field(default_factory=dict, max_length=MAX_LIST)
    counters: list[str] = Field(
        default_factory=list, max_length=MAX_LIST,
        description="QOM properties read over QMP at the end of the run (and for asserts)",
    )

    @field_validator("props", mode="before")
    @classmethod
    def _prop_ints(cls, v: Any) -> Any:
        # Checked before the union is tried: an out-of-range int would pass as a float.
        if isinstance(v, dict):
            for prop, val in v.items():
                if isinstance(val, int) and not isinstance(val, bool) \
                        and not -(1 << 63) <= val <= MAX_PROP_INT:
                    raise ValueError(f"{prop}: {str(val)[:24]} does not fit in 64 bits")
        return v

    @model_validator(mode="after")
    def _sizes(self) -> Device:
        for prop, (lo, hi) in DEVICE_SIZE_PROPS.get(self.driver, {}).items():
            v = self.props.get(prop)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | str) or (
                    isinstance(v, str) and not re.fullmatch(SIZE_PATTERN, v)):
                raise ValueError(f"{prop} {v!r} is not a size: write e.g. 1G or 256M")
            _bounded_size(str(v), lo, hi, prop)
        return self


class RootPort(Strict):
    """A ``pcie-root-port`` on the root complex (or on ``bus``)."""

    kind: Literal["root-port"]
    id: Identifier
    bus: str | None = None
    chassis: int | None = None
    slot: int | None = None
    props: dict[str, PropValue] = Field(default_factory=dict)


class DownstreamPort(Strict):
    """A ``xio3130-downstream`` port of a switch."""

    id: Identifier
    chassis: int | None = None
    slot: int | None = None
    props: dict[str, PropValue] = Field(default_factory=dict)


class Switch(Strict):
    """A PCIe switch: an ``x3130-upstream`` port (``id``) on ``bus`` and its downstream ports."""

    kind: Literal["switch"]
    id: Identifier
    bus: str
    downstream: list[DownstreamPort] = Field(min_length=1)
    props: dict[str, PropValue] = Field(default_factory=dict)


TopologyEntry = Annotated[RootPort | Switch, Field(discriminator="kind")]


class Disk(Strict):
    """A scratch disk: a sparse file in the VM's run directory, a block node named ``id``.

    A device takes it as ``props: {drive: ID}`` (for example ``nvme``). It starts
    empty (all zeros) and stays with the run's artifacts.
    """

    id: Identifier
    size: Size = Field(description="as QEMU takes sizes, e.g. 64M (at most 1T)")

    @field_validator("size", mode="before")
    @classmethod
    def _size(cls, v: Any) -> Any:
        if not isinstance(v, str) or not re.fullmatch(SIZE_PATTERN, v):
            raise ValueError(f"{v!r} is not a size: write e.g. 64M or 1G (at most 1T)")
        return _bounded_size(v, 1 << 9, MAX_MEMORY, "size")


class Machine(Strict):
    """One VM of the topology."""

    name: Identifier
    cpu: str | None = Field(default=None, description="CPU model; default max (TCG) or host (KVM)")
    memory: Size | Annotated[int, Field(ge=MIN_MEMORY >> 20, le=MAX_MEMORY >> 20)] = Field(
        default="1G", description="as QEMU -m takes it (64M to 1T); an integer is MiB")
    cpus: int = Field(default=1, ge=1, le=64)
    accel: Literal["auto", "kvm", "tcg"] = "auto"
    viommu: VIOMMU | None = Field(default_factory=VIOMMU)
    firmware: Literal["auto", "qboot", "seabios"] = Field(
        default="auto",
        description="auto: qboot (bios-microvm.bin) for an ELF vmlinux, entered through its PVH "
                    "note, which starts the kernel about 0.25 s sooner under TCG and leaves PCI "
                    "resources for Linux to assign; SeaBIOS for a bzImage (qboot's bzImage path "
                    "is slower, and a KASAN kernel faults in it). qboot or seabios forces one",
    )
    kernel: KernelSpec | None = Field(
        default=None,
        description="a built kernel (7.2, 6.12, 7.2-debug: build/guest/NAME/) or a path to a "
                    "kernel image or such a directory; default: the default kernel",
    )
    initrd: str | None = Field(default=None, max_length=4096,
                               description="default: the kernel's own initramfs")
    append: Text = Field(default="", description="extra kernel command-line arguments")
    cmdline: Text | None = Field(default=None,
                                 description="replaces the whole kernel command line")
    topology: list[TopologyEntry] = Field(default_factory=list, max_length=MAX_DEVICES)
    devices: list[Device] = Field(default_factory=list, max_length=MAX_DEVICES)
    disks: list[Disk] = Field(default_factory=list, max_length=MAX_DEVICES)
    qemu_args: list[Text] = Field(default_factory=list, max_length=MAX_LIST,
                                  description="extra QEMU arguments")
    boot_timeout: Seconds = Field(default=300, description="seconds until the guest agent is up")

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, v: Any) -> Any:
        if isinstance(v, bool) or not (
            isinstance(v, int) or (isinstance(v, str) and re.fullmatch(r"[0-9]+[KMGT]?", v))
        ):
            raise ValueError(f"{v!r} is not a size: write e.g. 1G or 512M, or MiB as an integer")
        if isinstance(v, str):
            if len(v) > 17:
                raise ValueError(f"memory {v[:20]}... is out of range: 64M to 1T")
            _bounded_size(v if v[-1] in "KMGT" else v + "M", MIN_MEMORY, MAX_MEMORY, "memory")
        return v

    @field_validator("viommu", mode="before",
                     json_schema_input_type=Literal["none", "intel-iommu", "virtio-iommu"]
                     | VIOMMU | None)
    @classmethod
    def _viommu_shorthand(cls, v: Any) -> Any:
        if v is None or v == "none":
            return None
        if isinstance(v, str):
            return {"model": v}
        return v


class Link(Strict):
    """A point-to-point link between two NICs of different machines, each ``machine.device``.

    Each end becomes a ``-netdev dgram`` over unix sockets in the run directory,
    and the device gets ``netdev=`` that backend (the odp-nic wire, for one).
    """

    a: Annotated[str, Field(pattern=r"^[A-Za-z][\w-]*\.[A-Za-z][\w-]*$")]
    b: Annotated[str, Field(pattern=r"^[A-Za-z][\w-]*\.[A-Za-z][\w-]*$")]


MAX_LAN_MACHINES = MAX_MACHINES
LAN_DEFAULT_MTU = 1500


def _lan_schema(schema: dict[str, Any]) -> None:
    """``management_lan`` also takes ``true``/``false`` (the shorthand): say so to editors."""
    schema["anyOf"] = [{"type": "boolean"}, *schema.get("anyOf", [])]


class ManagementLAN(Strict):
    """A management network between machines, for what tools exchange over TCP.

    A full mesh of point-to-point virtio-net links over unix datagram sockets in
    the run directory (nothing touches the host's network): each machine gets one
    NIC per peer, the address ``169.254.100.N`` (the N-th machine of the LAN) on
    each, a host route to each peer, and an ``/etc/hosts`` naming every machine.
    See docs/scenarios.md.
    """

    machines: list[Identifier] | None = Field(
        default=None,
        description="the machines on the LAN, in address order; default: every machine",
    )
    mtu: int = Field(
        default=LAN_DEFAULT_MTU, ge=68, le=65535,
        description="the interfaces' MTU (virtio-net host_mtu), e.g. 9000 for RoCE over it",
    )


# ---------------------------------------------------------------- steps


def _check_regex(v: str) -> str:
    try:
        re.compile(v)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from exc
    return v


Regex = Annotated[str, Field(description="a Python regular expression")]


def _require_exactly_one(model: BaseModel, *names: str) -> None:
    """Raise unless exactly one of the fields ``names`` is set (not None)."""
    if sum(getattr(model, n) is not None for n in names) != 1:
        quoted = [f"'{n}'" for n in names]
        raise ValueError(f"give exactly one of {', '.join(quoted[:-1])} or {quoted[-1]}")


class StepBase(Strict):
    """Keys every step may have."""

    name: Annotated[str, Field(max_length=200)] | None = None
    machine: Identifier | None = Field(
        default=None, description="the VM the step acts on; may be omitted with one machine"
    )
    timeout: Seconds | None = None


def step_machine(step: StepBase, machines: Collection[str]) -> str | None:
    """The machine a step acts on: its own, or the only one; None if ambiguous."""
    if step.machine:
        return step.machine
    return next(iter(machines)) if len(machines) == 1 else None


class Expect(Strict):
    """What an ``exec`` step expects: exit status and regexes on its output."""

    status: int | None = Field(default=0, description="expected exit status; null accepts any")
    stdout: list[Regex] = Field(default_factory=list, description="must all match stdout")
    stderr: list[Regex] = Field(default_factory=list, description="must all match stderr")
    not_stdout: list[Regex] = Field(default_factory=list, description="must not match stdout")
    not_stderr: list[Regex] = Field(default_factory=list, description="must not match stderr")

    @field_validator("stdout", "stderr", "not_stdout", "not_stderr", mode="before",
                     json_schema_input_type=Regex | list[Regex])
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("stdout", "stderr", "not_stdout", "not_stderr")
    @classmethod
    def _compile(cls, v: list[str]) -> list[str]:
        return [_check_regex(p) for p in v]


class Metric(Strict):
    """A number captured from a command's output by a regex's first group."""

    pattern: Regex
    source: Literal["stdout", "stderr", "output"] = Field(default="output", alias="from")
    type: Literal["int", "float", "str"] = "int"
    last: bool = Field(default=False, description="take the last match instead of the first")

    @field_validator("pattern")
    @classmethod
    def _compile(cls, v: str) -> str:
        _check_regex(v)
        if re.compile(v).groups < 1:
            raise ValueError("the pattern needs a capture group: the metric is group 1")
        return v


def _metric_shorthand(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: ({"pattern": m} if isinstance(m, str) else m) for k, m in v.items()}
    return v


class OutputChecks(StepBase):
    """What an ``exec`` or a ``join`` step checks of a command that exited."""

    expect: Expect = Field(default_factory=Expect)
    metrics: dict[Identifier, Metric] = Field(default_factory=dict)

    @field_validator("metrics", mode="before",
                     json_schema_input_type=dict[Identifier, Regex | Metric])
    @classmethod
    def _metrics(cls, v: Any) -> Any:
        return _metric_shorthand(v)


def _nonempty_command(v: str | list[str] | None) -> str | list[str] | None:
    if v is not None and not v:
        raise ValueError("the command is empty")
    return v


class ExecStep(OutputChecks):
    """Run a command in the guest through the agent (to its end, or in the background)."""

    exec_: Command = Field(
        alias="exec", description="a command line (split like a shell) or an argv list"
    )
    background: Identifier | None = Field(
        default=None,
        description="run the command in the background under this name (unique in the "
                    "scenario): the step passes once it runs, and a later 'join: NAME' step "
                    "on the same machine waits for it and checks it (expect and metrics go "
                    "there)",
    )
    ready: Command | None = Field(
        default=None,
        description="with background: a guest command polled until it exits 0 (e.g. until "
                    "a server listens); the step fails if the background command exits first",
    )

    @field_validator("exec_", "ready")
    @classmethod
    def _nonempty(cls, v: str | list[str] | None) -> str | list[str] | None:
        return _nonempty_command(v)


class JoinStep(OutputChecks):
    """Wait for a background command to exit, then check it as an exec step checks its own."""

    join: Identifier = Field(
        description="the name of a background command started by an earlier exec step on "
                    "the same machine; 'timeout' is how long to wait for it to exit (then it "
                    "is killed)"
    )


class QMPCommand(Strict):
    """A raw QMP command."""

    execute: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class QMPStep(StepBase):
    """Send a raw QMP command; optionally expect it to fail."""

    qmp: QMPCommand
    expect_error: bool | str = Field(
        default=False, description="true, or a regex the error message must match"
    )

    @field_validator("qmp", mode="before", json_schema_input_type=str | QMPCommand)
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return {"execute": v} if isinstance(v, str) else v


class QomSetFault(Strict):
    """Write a QOM property (``device`` id or a full QOM ``path``)."""

    kind: Literal["qom-set"]
    device: Identifier | None = None
    path: str | None = None
    property: str
    value: PropValue

    @model_validator(mode="after")
    def _target(self) -> QomSetFault:
        _require_exactly_one(self, "device", "path")
        return self


class DeviceDelFault(Strict):
    """Unplug a device; by default wait for its DEVICE_DELETED event."""

    kind: Literal["device-del"]
    id: Identifier
    wait: bool = True


class DeviceAddFault(Strict):
    """Hot-plug a device."""

    kind: Literal["device-add"]
    device: Device


class StopFault(Strict):
    """Pause the VM's vCPUs."""

    kind: Literal["stop"]


class ContFault(Strict):
    """Resume the VM's vCPUs."""

    kind: Literal["cont"]


class KillFault(Strict):
    """Kill the VM's QEMU process with a signal (default KILL)."""

    kind: Literal["kill"]
    signal: Literal["KILL", "TERM", "INT", "ABRT"] = "KILL"


Fault = Annotated[
    QomSetFault | DeviceDelFault | DeviceAddFault | StopFault | ContFault | KillFault,
    Field(discriminator="kind"),
]


class FaultStep(StepBase):
    """Inject a fault."""

    fault: Fault

    @field_validator("fault", mode="before", json_schema_input_type=Literal[
        "stop", "cont", "kill"] | Fault)
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return {"kind": v} if isinstance(v, str) else v


class WaitSpec(Strict):
    """Wait for exactly one of: a QMP event, a console regex, a guest command succeeding."""

    event: str | None = None
    data: dict[str, Any] = Field(default_factory=dict, description="event data must contain")
    console: Regex | None = None
    guest: Command | None = Field(default=None, description="polled until it exits 0")
    interval: float = Field(default=0.5, gt=0, le=60, allow_inf_nan=False)

    @model_validator(mode="after")
    def _exactly_one(self) -> WaitSpec:
        _require_exactly_one(self, "event", "console", "guest")
        if self.console is not None:
            _check_regex(self.console)
        return self


class WaitStep(StepBase):
    """Wait for something to happen."""

    wait: WaitSpec


_OPS = {"==": "eq", "!=": "ne", ">": "gt", ">=": "ge", "<": "lt", "<=": "le"}
_CHECK_RE = re.compile(r"^\s*([A-Za-z][\w.-]*)\s*(==|!=|>=|<=|>|<)\s*(\S.*?)\s*$")


QOMRef = Annotated[str, Field(pattern=r"^[A-Za-z][\w-]*\.[\w-]+$")]


class ValueRef(Strict):
    """The other side of a comparison taken from the run: a captured metric or a QOM property."""

    metric: str | None = None
    qom: QOMRef | None = None

    @model_validator(mode="after")
    def _one_subject(self) -> ValueRef:
        _require_exactly_one(self, "metric", "qom")
        return self


def _check_schema(schema: dict[str, Any]) -> None:
    """A check may also be written as a string ``NAME OP VALUE``: say so to editors."""
    obj = dict(schema)
    schema.clear()
    schema["anyOf"] = [
        {"type": "string", "pattern": _CHECK_RE.pattern,
         "description": "NAME OP VALUE, OP one of == != > >= < <="},
        obj,
    ]


class Check(Strict):
    """One assertion: a ``metric`` (or ``qom`` as ``device.property``) against a value.

    The value is a literal, or ``{metric: NAME}`` / ``{qom: DEV.PROP}`` to compare
    two things measured in the run (a device counter against the driver's own).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              json_schema_extra=_check_schema)

    metric: str | None = None
    qom: QOMRef | None = None
    op: Literal["eq", "ne", "gt", "ge", "lt", "le"]
    value: float | int | str | ValueRef

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        if isinstance(v, str):
            m = _CHECK_RE.match(v)
            if not m:
                raise ValueError("write an assertion as 'NAME OP VALUE', OP one of == != > >= < <=")
            value: Any = m.group(3)
            for conv in (int, float):
                try:
                    value = conv(value)
                    break
                except ValueError:
                    continue
            return {"metric": m.group(1), "op": _OPS[m.group(2)], "value": value}
        return v

    @model_validator(mode="after")
    def _one_subject(self) -> Check:
        _require_exactly_one(self, "metric", "qom")
        return self


class AssertStep(StepBase):
    """Check captured metrics and device counters (read with qom-get)."""

    assert_: list[Check] = Field(alias="assert", min_length=1)

    @field_validator("assert_", mode="before", json_schema_input_type=Check | list[Check])
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str | dict) else v


STEP_KINDS = {
    "exec": "exec-step",
    "join": "join-step",
    "qmp": "qmp-step",
    "fault": "fault-step",
    "wait": "wait-step",
    "assert": "assert-step",
}


# The step model of each kind (none subclasses another, so type() identifies a step).
STEP_CLASSES: dict[type[StepBase], str] = {
    ExecStep: "exec",
    JoinStep: "join",
    QMPStep: "qmp",
    FaultStep: "fault",
    WaitStep: "wait",
    AssertStep: "assert",
}


def _step_kind(v: Any) -> str | None:
    if isinstance(v, dict):
        present = [k for k in STEP_KINDS if k in v]
        return STEP_KINDS[present[0]] if len(present) == 1 else None
    kind = STEP_CLASSES.get(type(v))
    return STEP_KINDS[kind] if kind else None


Step = Annotated[
    Annotated[ExecStep, Tag("exec-step")]
    | Annotated[JoinStep, Tag("join-step")]
    | Annotated[QMPStep, Tag("qmp-step")]
    | Annotated[FaultStep, Tag("fault-step")]
    | Annotated[WaitStep, Tag("wait-step")]
    | Annotated[AssertStep, Tag("assert-step")],
    Discriminator(
        _step_kind,
        custom_error_type="step_kind",
        custom_error_message="a step needs exactly one of the keys "
                             "exec, join, qmp, fault, wait, assert",
    ),
]

# Names that pydantic puts into error locations for tagged unions but that are not
# keys of the document; the error locator skips them.
UNION_TAGS = frozenset(
    [
        *STEP_KINDS.values(),
        "qom-set",
        "device-del",
        "device-add",
        "stop",
        "cont",
        "kill",
        "root-port",
        "switch",
        "str",
        "list[str]",
        "constrained-str",
        "list[constrained-str]",
        "constrained-int",
        "constrained-float",
        "int",
        "float",
        "bool",
        "function-after",
        "function-before",
        "function-wrap",
    ]
)


class KnownReport(Strict):
    """A kernel report that does not fail the run: a known issue, with the reason."""

    match: Regex = Field(description="searched in the report's line and the three before it "
                                     "(a WARN's message comes just before its WARNING: line)")
    reason: str = Field(min_length=1, description="why it is known, and where it is tracked")

    @field_validator("match")
    @classmethod
    def _match(cls, v: str) -> str:
        return _check_regex(v)


# ---------------------------------------------------------------- matrices

MAX_AXES = 8
MAX_AXIS_VALUES = 64


class MatrixAxis(Strict):
    """One axis: the field it sets (a path) and the values it takes."""

    set_: str = Field(alias="set", max_length=512, description=(
        "the field this axis sets in every cell: dotted keys, with [*], [N] or [NAME] on "
        "lists, e.g. machines[*].kernel, machines[vm0].devices[gpu0].props.bar-size"))
    values: list[Any] = Field(min_length=1, max_length=MAX_AXIS_VALUES)

    @field_validator("set_")
    @classmethod
    def _path(cls, v: str) -> str:
        from .matrix import parse_path  # the path grammar lives with the expansion

        try:
            parse_path(v)
        except ValueError as exc:
            raise ValueError(f"not a path: {exc}") from exc
        return v

    @field_validator("values")
    @classmethod
    def _distinct(cls, v: list[Any]) -> list[Any]:
        seen: list[Any] = []
        for x in v:
            if x in seen:
                raise ValueError(f"{x!r} is listed twice")
            seen.append(x)
        return v


class Matrix(Strict):
    """Named axes whose product (less ``exclude``, plus ``include``) makes the cells."""

    axes: dict[Identifier, MatrixAxis] = Field(min_length=1, max_length=MAX_AXES)
    exclude: list[dict[Identifier, Any]] = Field(
        default_factory=list, max_length=MAX_LIST,
        description="drop every cell whose values match all of an entry's")
    include: list[dict[Identifier, Any]] = Field(
        default_factory=list, max_length=MAX_LIST,
        description="add a cell (after the excludes) unless it is already there")


class Scenario(Strict):
    """A scenario: machines, links between them, and the steps to run."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    name: Identifier | None = Field(
        default=None, description="default: the file name without .yaml"
    )
    description: Text = ""
    timeout: Seconds = Field(default=1800, description="seconds for the whole scenario")
    machines: list[Machine] = Field(min_length=1, max_length=MAX_MACHINES)
    links: list[Link] = Field(default_factory=list, max_length=MAX_DEVICES)
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)
    known_kernel_reports: list[KnownReport] = Field(
        default_factory=list, max_length=MAX_LIST,
        description="kernel reports (WARN, lockdep, KASAN ...) that do not fail the run; "
                    "each is still recorded in results with its reason",
    )
    matrix: Matrix | None = Field(
        default=None,
        description="run this scenario once per cell of a matrix of named axes, each "
                    "setting one field; cells are named NAME[axis=value,...]",
    )
    management_lan: ManagementLAN | None = Field(
        default=None,
        description="true (every machine) or {machines, mtu}: a management network between "
                    "the machines, with their names in each guest's /etc/hosts",
        json_schema_extra=_lan_schema,
    )

    @field_validator("management_lan", mode="before")
    @classmethod
    def _lan_shorthand(cls, v: Any) -> Any:
        if v is None or v is False:
            return None
        if v is True:
            return {}
        if not isinstance(v, dict):
            raise ValueError("write true, false, or a mapping {machines: [...], mtu: N}")
        return v
