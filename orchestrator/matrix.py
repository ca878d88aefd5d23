"""Scenario matrices: named axes, each setting one field of the scenario.

A scenario may carry::

    matrix:
      axes:
        kernel: {set: "machines[*].kernel", values: ["7.2", "6.12"]}
        viommu: {set: "machines[*].viommu.model", values: [intel-iommu, virtio-iommu]}
      exclude: [{kernel: "6.12", viommu: virtio-iommu}]
      include: [{kernel: 7.2-debug, viommu: intel-iommu}]

The cells are the product of the axes' values, less every combination an
``exclude`` entry matches (all its keys equal), plus each ``include`` entry
that is not already a cell (as in GitHub Actions, excludes apply first; an
include that names only some axes leaves the other fields as the file has
them).  Every cell is a complete scenario named ``name[axis=value,...]``,
validated on its own; its problems are located in the file and name the cell.

A path is dotted keys with selectors on lists: ``[*]`` every element,
``[N]`` the N-th, ``[NAME]`` the element whose ``name`` (or ``id``) is NAME:
``machines[vm0].devices[gpu0].props.bar-size``.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import Problem, ScenarioError
from .yamlsource import DocPath, SourceMap, format_path

MAX_CELLS = 256
MAX_PRODUCT = 4096

_SEGMENT = re.compile(r"([A-Za-z_][\w-]*)((?:\[[^\]]*\])*)")
_SELECTOR = re.compile(r"\[([^\]]*)\]")
_SELECTOR_NAME = re.compile(r"[A-Za-z_][\w-]*")

Selector = str | int  # a key, an index, "*", or "=NAME"


def parse_path(text: str) -> list[Selector]:
    """``machines[vm0].kernel`` -> ``["machines", "=vm0", "kernel"]``; ValueError if bad."""
    out: list[Selector] = []
    for part in text.split("."):
        m = _SEGMENT.fullmatch(part)
        if m is None:
            raise ValueError(f"{part!r} is not KEY or KEY[SELECTOR]")
        out.append(m.group(1))
        for sel in _SELECTOR.findall(m.group(2)):
            if sel == "*":
                out.append("*")
            elif sel.isdigit():
                out.append(int(sel))
            elif _SELECTOR_NAME.fullmatch(sel):
                out.append("=" + sel)
            else:
                raise ValueError(f"[{sel}] is not [*], [N] or [NAME]")
    return out


def _set(node: Any, path: Sequence[Selector], value: Any, where: DocPath,
         done: list[DocPath]) -> None:
    """Set ``value`` at every place ``path`` selects in ``node``; each place into ``done``."""
    head, rest = path[0], path[1:]
    if head == "*" or isinstance(head, int) or head.startswith("="):
        if not isinstance(node, list):
            raise ValueError(f"{format_path(where)} is not a list")
        if head == "*":
            items = list(range(len(node)))
        elif isinstance(head, int):
            if head >= len(node):
                raise ValueError(f"{format_path(where)} has no element [{head}] "
                                 f"(it has {len(node)})")
            items = [head]
        else:
            items = [i for i, e in enumerate(node) if isinstance(e, dict)
                     and head[1:] in (e.get("name"), e.get("id"))]
            if not items:
                raise ValueError(f"{format_path(where)} has no element named {head[1:]!r}")
        for i in items:
            if rest:
                _set(node[i], rest, value, (*where, i), done)
            else:
                node[i] = copy.deepcopy(value)
                done.append((*where, i))
        return
    if not isinstance(node, dict):
        raise ValueError(f"{format_path(where) or 'the scenario'} is not a mapping")
    child: DocPath = (*where, head)
    if not rest:
        node[head] = copy.deepcopy(value)
        done.append(child)
        return
    if node.get(head) is None:
        # A missing mapping on the way is created (viommu: {model: ...}); a list is not.
        if rest[0] == "*" or isinstance(rest[0], int) or rest[0].startswith("="):
            raise ValueError(f"{format_path(child)} does not exist")
        node[head] = {}
    _set(node[head], rest, value, child, done)


@dataclass(frozen=True)
class Cell:
    """One combination: axis -> value, in the axes' order."""

    values: tuple[tuple[str, Any], ...]

    @property
    def label(self) -> str:
        return "[" + ",".join(f"{k}={_text(v)}" for k, v in self.values) + "]"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.values)


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def cells(matrix: dict[str, Any], smap: SourceMap) -> list[Cell]:
    """The cells of a validated ``matrix`` mapping (see the module docstring)."""
    axes: dict[str, dict[str, Any]] = matrix["axes"]
    names = list(axes)
    combos = math.prod(len(axes[n]["values"]) for n in names)
    if combos > MAX_PRODUCT:
        # Counted, not built: 8 axes of 64 values would be 2.8e14 combinations.
        raise ScenarioError([smap.problem(("matrix", "axes"), (
            f"the axes make {combos} combinations: at most {MAX_PRODUCT} before "
            f"excludes ({MAX_CELLS} cells after them)"))])
    product = [Cell(tuple(zip(names, combo, strict=True)))
               for combo in itertools.product(*(axes[n]["values"] for n in names))]
    problems: list[Problem] = []
    for key in ("exclude", "include"):
        for i, entry in enumerate(matrix.get(key, [])):
            for axis, value in entry.items():
                where: DocPath = ("matrix", key, i, axis)
                if axis not in axes:
                    problems.append(smap.problem(where, f"{axis!r} is not an axis "
                                                        f"(axes: {', '.join(names)})", key=True))
                elif key == "exclude" and value not in axes[axis]["values"]:
                    problems.append(smap.problem(
                        where, f"{value!r} is not a value of axis {axis!r}: the entry "
                               "excludes nothing"))
    if problems:
        raise ScenarioError(problems)
    kept = [c for c in product if not any(
        all(c.as_dict().get(k) == v for k, v in ex.items()) for ex in matrix.get("exclude", []))]
    for i, inc in enumerate(matrix.get("include", [])):
        cell = Cell(tuple((n, inc[n]) for n in names if n in inc))
        if cell not in kept:
            kept.append(cell)
        elif len(inc) == len(names):
            raise ScenarioError([smap.problem(("matrix", "include", i),
                                              f"cell {cell.label} is already in the matrix")])
    if not kept:
        raise ScenarioError([smap.problem(("matrix",), "the matrix has no cells left")])
    if len(kept) > MAX_CELLS:
        raise ScenarioError([smap.problem(("matrix",), f"{len(kept)} cells: at most "
                                                       f"{MAX_CELLS}")])
    return kept


def apply(data: dict[str, Any], matrix: dict[str, Any], cell: Cell, name: str,
          smap: SourceMap) -> tuple[dict[str, Any], dict[str, DocPath]]:
    """The scenario document of one cell (``data`` without ``matrix``, with the cell's
    values set), and for each place set (a formatted path), where its value is
    written in the matrix: a problem there is located at the value."""
    out = copy.deepcopy({k: v for k, v in data.items() if k != "matrix"})
    marks: dict[str, DocPath] = {}
    for axis, value in cell.values:
        spec = matrix["axes"][axis]
        done: list[DocPath] = []
        try:
            _set(out, parse_path(spec["set"]), value, (), done)
        except ValueError as exc:
            raise ScenarioError([smap.problem(("matrix", "axes", axis, "set"),
                                              f"cell {name}{cell.label}: cannot set "
                                              f"{spec['set']!r}: {exc}")]) from None
        values = spec["values"]
        mark: DocPath = ("matrix", "axes", axis, "values", values.index(value)) \
            if value in values else ("matrix", "axes", axis)
        for place in done:
            marks[format_path(place)] = mark
    return out, marks
