"""Scenario matrices: expansion, exclude and include as in GitHub Actions, paths,
cell names and results by axis.  (Located errors: tests/scenarios/malformed/matrix-*.)"""

from __future__ import annotations

import pytest

from orchestrator.errors import ScenarioError
from orchestrator.matrix import parse_path
from orchestrator.results import ScenarioResult, axis_table, by_axis
from orchestrator.scenario import parse_scenario, parse_scenarios

BASE = """
name: m
machines:
  - name: vm0
    devices: [{driver: p2p-gpu, id: gpu0, props: {bar-size: 256M}}]
  - name: vm1
steps: [{machine: vm0, exec: "true"}]
"""


def _cells(matrix: str) -> list[tuple[str, dict[str, object]]]:
    return [(c.name, c.axes) for c in parse_scenarios("matrix:\n" + matrix + BASE, "m.yaml")]


def test_product_in_axis_order() -> None:
    got = _cells("""  axes:
    k: {set: "machines[*].kernel", values: ["7.2", "6.12"]}
    v: {set: "machines[*].viommu.model", values: [intel-iommu, virtio-iommu]}
""")
    assert [n for n, _ in got] == ["m[k=7.2,v=intel-iommu]", "m[k=7.2,v=virtio-iommu]",
                                   "m[k=6.12,v=intel-iommu]", "m[k=6.12,v=virtio-iommu]"]
    assert got[3][1] == {"k": "6.12", "v": "virtio-iommu"}


def test_values_land_where_the_paths_say() -> None:
    cells = parse_scenarios("""matrix:
  axes:
    cpu: {set: "machines[vm1].cpu", values: [EPYC]}
    bar: {set: "machines[vm0].devices[gpu0].props.bar-size", values: [512M]}
    iommu: {set: "machines[*].viommu.model", values: [virtio-iommu]}
    mem: {set: "machines[0].memory", values: [2G]}
""" + BASE, "m.yaml")
    (cell,) = cells
    vm0, vm1 = cell.scenario.machines
    assert (vm0.cpu, vm1.cpu) == (None, "EPYC")
    assert vm0.devices[0].props["bar-size"] == "512M"
    assert vm0.viommu is not None and vm1.viommu is not None
    assert (vm0.viommu.model, vm1.viommu.model) == ("virtio-iommu", "virtio-iommu")
    assert (vm0.memory, vm1.memory) == ("2G", "1G")


def test_exclude_then_include_as_github_actions() -> None:
    got = _cells("""  axes:
    k: {set: "machines[*].kernel", values: ["7.2", "6.12"]}
    v: {set: "machines[*].viommu.model", values: [intel-iommu, virtio-iommu]}
  exclude:
    - {k: "6.12", v: virtio-iommu}   # one cell
    - {v: virtio-iommu, k: "7.2"}
  include:
    - {k: 7.2-debug, v: intel-iommu} # a new cell
    - {k: "6.12", v: virtio-iommu}   # an excluded one comes back: excludes go first
    - {k: "6.10"}                    # only some axes: the others as the file has them
""")
    assert [n for n, _ in got] == ["m[k=7.2,v=intel-iommu]", "m[k=6.12,v=intel-iommu]",
                                   "m[k=7.2-debug,v=intel-iommu]", "m[k=6.12,v=virtio-iommu]",
                                   "m[k=6.10]"]
    assert got[-1][1] == {"k": "6.10"}


def test_a_partial_exclude_removes_every_match() -> None:
    got = _cells("""  axes:
    k: {set: "machines[*].kernel", values: ["7.2", "6.12"]}
    v: {set: "machines[*].viommu.model", values: [intel-iommu, virtio-iommu]}
  exclude: [{v: virtio-iommu}]
""")
    assert [a["v"] for _, a in got] == ["intel-iommu", "intel-iommu"]


def test_an_include_that_repeats_a_cell_is_an_error() -> None:
    with pytest.raises(ScenarioError, match=r"cell \[k=7.2\] is already in the matrix"):
        _cells("""  axes:
    k: {set: "machines[*].kernel", values: ["7.2"]}
  include: [{k: "7.2"}]
""")


@pytest.mark.parametrize(("path", "parsed"), [
    ("machines[*].kernel", ["machines", "*", "kernel"]),
    ("machines[vm0].devices[gpu0].props.bar-size",
     ["machines", "=vm0", "devices", "=gpu0", "props", "bar-size"]),
    ("machines[1].cpu", ["machines", 1, "cpu"]),
])
def test_paths(path: str, parsed: list[object]) -> None:
    assert parse_path(path) == parsed


@pytest.mark.parametrize("bad", ["machines[", "machines[a b].x", "machines..x", "[*]", ""])
def test_bad_paths(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_path(bad)


def test_a_plain_scenario_is_one_cell_without_axes() -> None:
    (only,) = parse_scenarios(BASE, "m.yaml")
    assert only.name == "m" and only.axes == {}
    with pytest.raises(ScenarioError, match="parse_scenarios"):
        parse_scenario("matrix:\n  axes:\n    k: {set: 'machines[*].kernel', values: ['7.2']}\n"
                       + BASE, "m.yaml")


def test_results_by_axis() -> None:
    rs = [ScenarioResult("m[k=7.2,v=a]", "f", "passed", axes={"k": "7.2", "v": "a"}),
          ScenarioResult("m[k=7.2,v=b]", "f", "failed", axes={"k": "7.2", "v": "b"}),
          ScenarioResult("m[k=6.12,v=a]", "f", "passed", axes={"k": "6.12", "v": "a"})]
    assert by_axis(rs) == {"k": {"7.2": {"passed": 1, "total": 2},
                                 "6.12": {"passed": 1, "total": 1}},
                           "v": {"a": {"passed": 2, "total": 2},
                                 "b": {"passed": 0, "total": 1}}}
    table = axis_table(rs)
    assert "k     7.2    1       1" in table
    assert "failed cells:\n  m[k=7.2,v=b]" in table


def test_a_huge_product_is_refused_before_it_is_built() -> None:
    values = ", ".join(map(str, range(64)))
    axes = "".join(f"    a{i}: {{set: 'machines[*].cpu', values: [{values}]}}\n"
                   for i in range(8))
    with pytest.raises(ScenarioError, match=r"the axes make 281474976710656 combinations: "
                                            r"at most 4096 before excludes"):
        _cells("  axes:\n" + axes)
