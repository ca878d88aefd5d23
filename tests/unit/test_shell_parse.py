"""The shell's command parsing (the interactive part is tested in tests/integration)."""

from __future__ import annotations

import pytest

from orchestrator.shell import parse_qmp, parse_value


def test_parse_value() -> None:
    assert parse_value("3") == 3
    assert parse_value("true") is True
    assert parse_value("gpu0") == "gpu0"
    assert parse_value('{"a": 1}') == {"a": 1}


@pytest.mark.parametrize(("line", "cmd", "args"), [
    ("query-status", "query-status", {}),
    ("qom-list path=/machine/peripheral", "qom-list", {"path": "/machine/peripheral"}),
    ('qom-set {"path": "/x", "property": "p", "value": 1}', "qom-set",
     {"path": "/x", "property": "p", "value": 1}),
    ('{"execute": "query-name"}', "query-name", {}),
    ('{"execute": "device_del", "arguments": {"id": "gpu0"}}', "device_del", {"id": "gpu0"}),
    ("device_add driver=p2p-gpu id=g1 bus=rp1", "device_add",
     {"driver": "p2p-gpu", "id": "g1", "bus": "rp1"}),
])
def test_parse_qmp(line: str, cmd: str, args: dict[str, object]) -> None:
    assert parse_qmp(line) == (cmd, args)


@pytest.mark.parametrize("line", ["qom-get path", '{"no": "execute"}', "x [1]"])
def test_parse_qmp_errors(line: str) -> None:
    with pytest.raises(ValueError):
        parse_qmp(line)
