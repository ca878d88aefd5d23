"""Integer constants of a device's one hardware header, for the tests.

The headers under qemu-devices/include/p2plab/ are the contract between each
device model, its guest driver and these tests: the tests read the values from
there (``#define``s and enum members), so they cannot drift from the device.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

INCLUDE = Path(__file__).resolve().parents[2] / "qemu-devices/include/p2plab"

_DEFINE = re.compile(r"^#define\s+(\w+)\s+(.+?)\s*(?:/\*.*)?$")
_ENUM_MEMBER = re.compile(r"^(\w+)\s*(?:=\s*([^,/]+?))?\s*,?\s*(?:/\*.*)?$")
_SUFFIX = re.compile(r"\b(0x[0-9a-fA-F]+|\d+)(?:ull|ul|u|ll|l)\b")


def _eval(expr: str, known: dict[str, int]) -> int | None:
    """Evaluate an integer constant expression: literals, known names, | << + - & ( )."""
    try:
        tree = ast.parse(_SUFFIX.sub(r"\1", expr), mode="eval")
    except SyntaxError:
        return None

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name) and node.id in known:
            return known[node.id]
        if isinstance(node, ast.BinOp):
            a, b = ev(node.left), ev(node.right)
            ops = {ast.BitOr: a | b, ast.LShift: a << b if b < 64 else 0,
                   ast.Add: a + b, ast.Sub: a - b, ast.BitAnd: a & b}
            for kind, val in ops.items():
                if isinstance(node.op, kind):
                    return val
        raise ValueError(expr)

    try:
        return ev(tree)
    except ValueError:
        return None


def load_header(path: Path, prefix: str) -> dict[str, int]:
    """Every integer-valued ``prefix``* macro and enum member of a header."""
    known: dict[str, int] = {}
    in_enum = False
    next_value = 0
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("enum ") and line.endswith("{"):
            in_enum, next_value = True, 0
            continue
        if in_enum:
            if line.startswith("}"):
                in_enum = False
                continue
            m = _ENUM_MEMBER.match(line)
            if m and m.group(1).startswith(prefix):
                val = _eval(m.group(2), known) if m.group(2) else next_value
                if val is not None:
                    known[m.group(1)] = val
                    next_value = val + 1
            continue
        m = _DEFINE.match(line)
        if m and m.group(1).startswith(prefix):
            val = _eval(m.group(2), known)
            if val is not None:
                known[m.group(1)] = val
    return known
