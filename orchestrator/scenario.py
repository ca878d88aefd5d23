"""Loading a scenario file: YAML with marks, the schema, then cross-references.

:func:`load_scenario` returns a :class:`LoadedScenario` or raises
:class:`~orchestrator.errors.ScenarioError` whose problems each carry
``file:line:column``, the path inside the document and what is wrong.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from . import matrix
from .errors import Problem, ScenarioError
from .schema import (
    MAX_LAN_MACHINES,
    STEP_KINDS,
    UNION_TAGS,
    AssertStep,
    DeviceAddFault,
    ExecStep,
    FaultStep,
    JoinStep,
    Machine,
    Matrix,
    Scenario,
    Switch,
    ValueRef,
    WaitStep,
    step_machine,
)
from .yamlsource import DocPath, SourceMap, load_yaml, read_source

BUILTIN_BUSES = frozenset({"pcie.0"})


@dataclass(frozen=True)
class LoadedScenario:
    """A validated scenario, its name, and where it came from.

    A matrix cell's name is ``NAME[axis=value,...]`` and ``axes`` holds its values.
    """

    scenario: Scenario
    name: str
    path: Path
    axes: dict[str, Any] = field(default_factory=dict)


def _doc_path(data: Any, loc: Sequence[str | int]) -> tuple[DocPath, str | None]:
    """Map a pydantic error location onto the document.

    Returns the path of the deepest node that exists, and the missing key if the
    location ends in a key the document lacks.
    """
    path: list[str | int] = []
    cur = data
    for elem in loc:
        if isinstance(cur, dict) and elem in cur:  # noqa: SIM114
            path.append(elem)
            cur = cur[elem]
        elif isinstance(cur, list) and isinstance(elem, int) and 0 <= elem < len(cur):
            path.append(elem)
            cur = cur[elem]
        elif isinstance(elem, str) and elem in UNION_TAGS:
            continue
        elif isinstance(cur, dict) and isinstance(elem, str):
            return tuple(path), elem
        else:
            break
    return tuple(path), None


def _node_at(data: Any, path: DocPath) -> Any:
    for elem in path:
        data = data[elem]
    return data


def _schema_problems(exc: ValidationError, data: Any, smap: SourceMap) -> list[Problem]:
    merged: dict[tuple[DocPath, str | None], list[str]] = {}
    order: list[tuple[DocPath, str | None]] = []
    for err in exc.errors(include_url=False):
        path, missing = _doc_path(data, err["loc"])
        kind = err["type"]
        if kind == "missing" and missing is not None:
            msg = f"missing required key {missing!r}"
        elif kind == "extra_forbidden":
            msg = f"unknown key {path[-1]!r}" if path else "unknown key"
        elif kind == "union_tag_invalid":
            ctx = err.get("ctx", {})
            disc = str(ctx.get("discriminator", "kind")).strip("'")
            node = _node_at(data, path)
            if isinstance(node, dict) and disc in node:
                path = (*path, disc)
            msg = f"unknown {disc} {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"
        elif kind == "step_kind":
            node = _node_at(data, path)
            found = [k for k in STEP_KINDS if isinstance(node, dict) and k in node]
            msg = err["msg"] + (f" (found {', '.join(found)})" if found else " (found none)")
        else:
            msg = err["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            if missing is not None:
                msg = f"{missing}: {msg}"
        key = (path, missing if kind == "missing" else None)
        if key not in merged:
            merged[key] = []
            order.append(key)
        if msg not in merged[key]:
            merged[key].append(msg)
    problems = []
    for key in order:
        path, _ = key
        is_key = any(m.startswith("unknown key") for m in merged[key])
        problems.append(smap.problem(path, "; or ".join(merged[key]), key=is_key))
    return problems


def _check_machine(i: int, m: Machine, smap: SourceMap) -> list[Problem]:
    """Unique ids within one machine; every bus a topology entry or device names exists."""
    problems: list[Problem] = []
    ids: set[str] = set()
    buses: set[str] = set(BUILTIN_BUSES)

    def claim(ident: str, path: DocPath) -> None:
        if ident in ids:
            problems.append(smap.problem(path, f"duplicate id {ident!r} in machine {m.name!r}"))
        ids.add(ident)

    def bus_ok(bus: str | None, path: DocPath) -> None:
        if bus is not None and bus not in buses and "." not in bus:
            known = ", ".join(sorted(buses))
            problems.append(smap.problem(path, f"unknown bus {bus!r} (known: {known})"))

    for j, t in enumerate(m.topology):
        base: DocPath = ("machines", i, "topology", j)
        claim(t.id, (*base, "id"))
        bus_ok(t.bus, (*base, "bus"))
        if isinstance(t, Switch):
            for k, port in enumerate(t.downstream):
                claim(port.id, (*base, "downstream", k, "id"))
                buses.add(port.id)
        else:
            buses.add(t.id)
    for j, d in enumerate(m.devices):
        base = ("machines", i, "devices", j)
        claim(d.id, (*base, "id"))
        bus_ok(d.bus, (*base, "bus"))
        buses.add(d.id)  # a device listed earlier (a root port, a bridge) may be a bus
    return problems


def _check_lan(sc: Scenario, smap: SourceMap) -> list[Problem]:
    """The management LAN's machines exist, appear once, and are at least two (at most
    MAX_LAN_MACHINES: each one's NICs, one per peer, take slots on the root bus)."""
    lan = sc.management_lan
    if lan is None:
        return []
    problems: list[Problem] = []
    base: DocPath = ("management_lan",)
    names = {m.name for m in sc.machines}
    members = [m.name for m in sc.machines]
    if lan.machines is not None:
        base = ("management_lan", "machines")
        members = []
        for k, name in enumerate(lan.machines):
            if name not in names:
                problems.append(smap.problem((*base, k), f"unknown machine {name!r}"))
            elif name in members:
                problems.append(smap.problem((*base, k), f"machine {name!r} is listed twice"))
            else:
                members.append(name)
    if len(members) < 2 and not problems:
        problems.append(smap.problem(
            base, f"a management LAN joins at least two machines (here: {len(members)})"))
    elif len(members) > MAX_LAN_MACHINES:
        problems.append(smap.problem(
            base, f"a management LAN joins at most {MAX_LAN_MACHINES} machines "
                  f"(here: {len(members)}): each gets a NIC per peer on its root bus"))
    return problems


def _command_problem(cmd: str | list[str] | None, path: DocPath,
                     smap: SourceMap) -> list[Problem]:
    """A command string is split into words like a shell splits them, and run without a
    shell: a shell operator in it (``a | b``, ``a; b``, ``> file``) is a mistake."""
    if not isinstance(cmd, str):
        return []  # an argv list is taken as written
    lexer = shlex.shlex(cmd, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        ops = [t for t in lexer if t and all(c in "();<>|&" for c in t)]
    except ValueError as exc:
        return [smap.problem(path, f"cannot split the command into words: {exc}")]
    if not ops:
        return []
    return [smap.problem(path, f"{ops[0]!r} is not run by a shell: a command string is only "
                               f"split into words; write [sh, -c, '...'] for a shell")]


def _check_commands(sc: Scenario, smap: SourceMap) -> list[Problem]:
    """The guest command strings of exec, ready and wait.guest."""
    problems: list[Problem] = []
    for i, step in enumerate(sc.steps):
        if isinstance(step, ExecStep):
            problems += _command_problem(step.exec_, ("steps", i, "exec"), smap)
            problems += _command_problem(step.ready, ("steps", i, "ready"), smap)
        elif isinstance(step, WaitStep):
            problems += _command_problem(step.wait.guest, ("steps", i, "wait", "guest"), smap)
    return problems


def _check_background(sc: Scenario, smap: SourceMap) -> list[Problem]:
    """Background commands: names unique, checked at their join (not where they start),
    each joined exactly once, by a later step on the same machine."""
    problems: list[Problem] = []
    names = [m.name for m in sc.machines]
    started: dict[str, tuple[int, str | None]] = {}  # name -> (step index, machine)
    joined: dict[str, int] = {}
    for i, step in enumerate(sc.steps):
        base: DocPath = ("steps", i)
        if isinstance(step, ExecStep) and step.background is None:
            if step.ready is not None:
                problems.append(smap.problem(
                    (*base, "ready"), "'ready' is for a background command: add 'background'",
                    key=True))
        elif isinstance(step, ExecStep) and step.background is not None:
            name = step.background
            for key in ("expect", "metrics"):
                if key in step.model_fields_set:
                    problems.append(smap.problem(
                        (*base, key), f"a background command is checked where it is joined: "
                                      f"move '{key}' to the 'join: {name}' step", key=True))
            if name in started:
                problems.append(smap.problem(
                    (*base, "background"),
                    f"background command {name!r} is already started by steps[{started[name][0]}]"))
            else:
                started[name] = (i, step_machine(step, names))
        elif isinstance(step, JoinStep):
            name = step.join
            later = [j for j, s in enumerate(sc.steps) if j > i and isinstance(s, ExecStep)
                     and s.background == name]
            machine = step_machine(step, names)
            if name in joined:
                problems.append(smap.problem(
                    (*base, "join"),
                    f"background command {name!r} is already joined by steps[{joined[name]}]"))
            elif name not in started:
                why = f"it starts later, at steps[{later[0]}]" if later else \
                    "no exec step has 'background: " + name + "'"
                problems.append(smap.problem(
                    (*base, "join"),
                    f"background command {name!r} is not started by an earlier step ({why})"))
            else:
                joined[name] = i
                at, runs_on = started[name]
                if runs_on is not None and machine is not None and runs_on != machine:
                    problems.append(smap.problem(
                        (*base, "join"), f"background command {name!r} runs on machine "
                                         f"{runs_on!r} (steps[{at}]), not on {machine!r}"))
    for name, (i, machine) in started.items():
        if name not in joined:
            on = f" on machine {machine!r}" if machine else ""
            problems.append(smap.problem(
                ("steps", i, "background"),
                f"background command {name!r} is never joined: add a later "
                f"'join: {name}' step{on}"))
    return problems


def _cross_check(sc: Scenario, smap: SourceMap) -> list[Problem]:
    """Names that must be unique, and references that must resolve."""
    problems: list[Problem] = []
    machines: dict[str, Machine] = {}
    for i, m in enumerate(sc.machines):
        if m.name in machines:
            problems.append(
                smap.problem(("machines", i, "name"), f"duplicate machine name {m.name!r}")
            )
        machines[m.name] = m
        problems += _check_machine(i, m, smap)

    def device_of(ref: str, path: DocPath) -> None:
        mname, dev = ref.split(".", 1)
        if mname not in machines:
            problems.append(smap.problem(path, f"unknown machine {mname!r}"))
        elif dev not in {d.id for d in machines[mname].devices}:
            problems.append(smap.problem(path, f"machine {mname!r} has no device {dev!r}"))

    for i, link in enumerate(sc.links):
        device_of(link.a, ("links", i, "a"))
        device_of(link.b, ("links", i, "b"))
        if link.a.split(".")[0] == link.b.split(".")[0]:
            problems.append(smap.problem(("links", i), "a link joins NICs of different machines"))

    problems += _check_lan(sc, smap)
    problems += _check_commands(sc, smap)
    problems += _check_background(sc, smap)

    metrics: set[str] = set()
    added: dict[str, set[str]] = {}  # devices hot-plugged by earlier steps, per machine
    for i, step in enumerate(sc.steps):
        base = ("steps", i)
        if step.machine is None and len(machines) > 1:
            problems.append(
                smap.problem(base, "with several machines, a step must name its 'machine'")
            )
        elif step.machine is not None and step.machine not in machines:
            problems.append(smap.problem((*base, "machine"), f"unknown machine {step.machine!r}"))
        if isinstance(step, ExecStep | JoinStep):
            for name in step.metrics:
                metrics.add(name)
        if isinstance(step, FaultStep) and isinstance(step.fault, DeviceAddFault):
            added.setdefault(step.machine or "", set()).add(step.fault.device.id)
        if isinstance(step, AssertStep):
            mname = step_machine(step, machines) or ""
            known = {d.id for d in machines[mname].devices} if mname in machines else set()
            known |= added.get(step.machine or "", set())
            for j, check in enumerate(step.assert_):
                sides: list[tuple[tuple[str | int, ...], str | None, str | None]] = [
                    ((*base, "assert", j), check.metric, check.qom)]
                if isinstance(check.value, ValueRef):
                    sides.append(((*base, "assert", j, "value"),
                                  check.value.metric, check.value.qom))
                for where, metric, qom in sides:
                    if qom is not None and mname in machines:
                        dev = qom.split(".", 1)[0]
                        if dev not in known:
                            problems.append(smap.problem(
                                (*where, "qom"), f"machine {mname!r} has no device {dev!r}"))
                    if metric is not None and metric not in metrics:
                        problems.append(smap.problem(
                            where, f"metric {metric!r} is not captured by an earlier step"))
    return problems


class _MatrixDoc(BaseModel):
    matrix: Matrix


def _validated(data: dict[str, Any], smap: SourceMap) -> Scenario:
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_schema_problems(exc, data, smap)) from exc
    problems = _cross_check(sc, smap)
    if problems:
        raise ScenarioError(problems)
    return sc


def parse_scenarios(text: str, file: str) -> list[LoadedScenario]:
    """Validate scenario text: one scenario, or every cell of its matrix."""
    data, smap = load_yaml(text, file)
    if not isinstance(data, dict):
        raise ScenarioError([smap.problem((), "a scenario is a mapping (name, machines, steps)")])
    name = data.get("name") if isinstance(data.get("name"), str) else None
    base = name or Path(file).stem
    if "matrix" not in data:
        sc = _validated(data, smap)
        return [LoadedScenario(sc, sc.name or base, Path(file))]
    try:
        mdoc = _MatrixDoc.model_validate({"matrix": data["matrix"]})
    except ValidationError as exc:
        raise ScenarioError(_schema_problems(exc, {"matrix": data["matrix"]}, smap)) from exc
    mdata = mdoc.matrix.model_dump(by_alias=True)
    out: list[LoadedScenario] = []
    problems: list[Problem] = []
    for cell in matrix.cells(mdata, smap):
        doc, marks = matrix.apply(data, mdata, cell, base, smap)
        try:
            sc = _validated(doc, smap)
        except ScenarioError as exc:
            problems += [_in_cell(p, base + cell.label, marks, smap) for p in exc.problems]
            continue
        out.append(LoadedScenario(sc, base + cell.label, Path(file), cell.as_dict()))
    if problems:
        raise ScenarioError(problems)
    return out


def _in_cell(p: Problem, cell: str, marks: dict[str, DocPath], smap: SourceMap) -> Problem:
    """A cell's problem: named by its cell, and located at the matrix value that
    set the field when it lies in one."""
    for place, mark in marks.items():
        if p.path == place or p.path.startswith((place + ".", place + "[")):
            line, col = smap.locate(mark)
            return Problem(p.file, line, col, p.path,
                           f"cell {cell}: {p.message} (the value comes from the matrix)")
    return Problem(p.file, p.line, p.column, p.path, f"cell {cell}: {p.message}")


def parse_scenario(text: str, file: str) -> LoadedScenario:
    """Validate scenario text that has no matrix; ``file`` names it in messages."""
    loaded = parse_scenarios(text, file)
    if len(loaded) != 1 or loaded[0].axes:
        raise ScenarioError([Problem(file, 1, 1, "matrix", "a matrix scenario makes several "
                                     "scenarios: load it with parse_scenarios")])
    return loaded[0]


def load_scenarios(path: Path) -> list[LoadedScenario]:
    """Read and validate one scenario file: its scenario, or its matrix's cells."""
    return parse_scenarios(read_source(path), str(path))


def load_scenario(path: Path) -> LoadedScenario:
    """Read and validate one scenario file that has no matrix."""
    return parse_scenario(read_source(path), str(path))
