"""YAML loading that remembers where every value came from.

:func:`load_yaml` composes the document into nodes (so line and column marks are
kept), rejects duplicate keys, and returns plain Python data together with a
:class:`SourceMap` that maps a path inside the document (``("steps", 1, "exec")``)
to its 1-based line and column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import Problem, ScenarioError

PathElem = str | int
DocPath = tuple[PathElem, ...]


def format_path(path: Sequence[PathElem]) -> str:
    """``("machines", 0, "devices")`` -> ``machines[0].devices``."""
    out = ""
    for elem in path:
        if isinstance(elem, int):
            out += f"[{elem}]"
        else:
            out += f".{elem}" if out else str(elem)
    return out


@dataclass
class SourceMap:
    """Line/column (1-based) of each value, and of each mapping key, in one file."""

    file: str
    values: dict[DocPath, tuple[int, int]] = field(default_factory=dict)
    keys: dict[DocPath, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: Sequence[PathElem], *, key: bool = False) -> tuple[int, int]:
        """The mark of ``path``, or of its nearest ancestor that exists in the file."""
        p: DocPath = tuple(path)
        if key and p in self.keys:
            return self.keys[p]
        while p:
            if p in self.values:
                return self.values[p]
            p = p[:-1]
        return self.values.get((), (1, 1))

    def problem(self, path: Sequence[PathElem], message: str, *, key: bool = False) -> Problem:
        """A :class:`Problem` located at ``path``."""
        line, col = self.locate(path, key=key)
        return Problem(self.file, line, col, format_path(path), message)


# Keys whose plain scalars are taken as written: ``kernel: 6.10`` names a
# kernel series, and YAML's float 6.1 would lose the zero.
VERBATIM_KEYS = frozenset({"kernel"})
_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:float", "tag:yaml.org,2002:int"})


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Walker:
    def __init__(self, loader: yaml.SafeLoader, smap: SourceMap) -> None:
        self.loader = loader
        self.smap = smap
        self.problems: list[Problem] = []

    def walk(self, node: yaml.Node, path: DocPath) -> Any:
        self.smap.values[path] = _mark(node)
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)  # resolves "<<" merge keys
            out: dict[Any, Any] = {}
            for knode, vnode in node.value:
                key = self.loader.construct_object(knode, deep=True)
                if not isinstance(key, str | int | float | bool) or key is None:
                    key = str(key)
                if key in out:
                    line, col = _mark(knode)
                    first = self.smap.keys.get((*path, key), (0, 0))
                    self.problems.append(
                        Problem(
                            self.smap.file,
                            line,
                            col,
                            format_path((*path, key)),
                            f"duplicate key {key!r} (first defined at line {first[0]})",
                        )
                    )
                    continue
                self.smap.keys[(*path, key)] = _mark(knode)
                if key in VERBATIM_KEYS and isinstance(vnode, yaml.ScalarNode) \
                        and vnode.tag in _NUMBER_TAGS:
                    self.smap.values[(*path, key)] = _mark(vnode)
                    out[key] = vnode.value
                    continue
                out[key] = self.walk(vnode, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.walk(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)


def load_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document; raise :class:`ScenarioError` on syntax errors or duplicates."""
    smap = SourceMap(file)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ScenarioError([Problem(file, 1, 1, "", "the file is empty")])
        walker = _Walker(loader, smap)
        data = walker.walk(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        what = " ".join(s for s in (exc.context, exc.problem) if s)
        ctx = exc.context_mark
        if ctx is not None and mark is not None and (ctx.line, ctx.column) != (
            mark.line,
            mark.column,
        ):
            what += f" (the construct began at line {ctx.line + 1}, column {ctx.column + 1})"
        raise ScenarioError([Problem(file, line, col, "", f"YAML syntax error: {what}")]) from exc
    except yaml.YAMLError as exc:
        raise ScenarioError([Problem(file, 0, 0, "", f"YAML error: {exc}")]) from exc
    finally:
        loader.dispose()
    if walker.problems:
        raise ScenarioError(walker.problems)
    return data, smap
