"""YAML loading that remembers where every value came from.

:func:`load_yaml` composes the document into nodes (so line and column marks are
kept), rejects duplicate keys, and returns plain Python data together with a
:class:`SourceMap` that maps a path inside the document (``("steps", 1, "exec")``)
to its 1-based line and column.

A scenario file is input from strangers, so loading is bounded on purpose (each
limit is far above what a real scenario needs, and each answer is a located
:class:`Problem`): the file's size (:data:`MAX_FILE_BYTES`), its characters
(printable text: YAML's own rule), its nesting (:data:`MAX_DEPTH`, checked while
composing, so a deep document never reaches Python's recursion limit), and the
number of values it expands to (:data:`MAX_VALUES`, counted as aliases and merge
keys are expanded, so ``a: &a [*a]`` and a "billion laughs" stop early).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import Problem, ScenarioError

MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_VALUES = 100_000

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


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _TooLarge(Exception):
    """The document expands to more than MAX_VALUES values."""

    def __init__(self, node: yaml.Node) -> None:
        self.node = node


class _TooDeep(yaml.composer.ComposerError):
    """The document nests deeper than MAX_DEPTH."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose (recursive) composer refuses nesting deeper than MAX_DEPTH."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _TooDeep(None, None, f"nested deeper than {MAX_DEPTH} levels: a "
                               "scenario needs far fewer", mark)
            node: yaml.Node | None = super().compose_node(parent, index)
            return node
        finally:
            self._depth -= 1


class _Walker:
    """Turns the node graph into plain data, counting every value it produces.

    Aliases make the graph a DAG (or, with ``&a [*a]``, a cycle); expanding it
    is where a small file becomes a huge document, so the count and the cycle
    check live here.  Merge keys (``<<``) are expanded here too, under the same
    count, instead of by PyYAML's unbounded ``flatten_mapping``.
    """

    def __init__(self, loader: yaml.SafeLoader, smap: SourceMap) -> None:
        self.loader = loader
        self.smap = smap
        self.problems: list[Problem] = []
        self.values = 0
        self.active: set[int] = set()

    def _problem(self, node: yaml.Node, path: DocPath, message: str) -> Problem:
        line, col = _mark(node)
        return Problem(self.smap.file, line, col, format_path(path), message)

    def walk(self, node: yaml.Node, path: DocPath, *, record: bool = True) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            raise _TooLarge(node)
        if id(node) in self.active:
            raise ScenarioError([self._problem(
                node, path, "a recursive alias: this node contains an alias to itself")])
        if record:
            self.smap.values[path] = _mark(node)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path, record)
            return [self.walk(item, (*path, i), record=record)
                    for i, item in enumerate(node.value)]
        finally:
            self.active.discard(id(node))

    def scalar(self, node: yaml.ScalarNode, path: DocPath) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except ValueError as exc:  # e.g. an integer of more than 4300 digits
            what = str(exc).split(";")[0]
            self.problems.append(self._problem(
                node, path, f"cannot read {node.value[:20]!r}...: {what}"))
            return None

    def merged(self, vnode: yaml.Node, path: DocPath) -> dict[Any, Any]:
        """The mappings a ``<<`` key names (earlier ones win, as YAML says)."""
        sources = vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]
        out: dict[Any, Any] = {}
        for src in sources:
            if not isinstance(src, yaml.MappingNode):
                self.problems.append(self._problem(
                    src, path, "a merge key ('<<') takes a mapping or a list of mappings"))
                continue
            for k, v in self.walk(src, path, record=False).items():
                out.setdefault(k, v)
        return out

    def mapping(self, node: yaml.MappingNode, path: DocPath, record: bool) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        for knode, vnode in node.value:
            if knode.tag == _MERGE_TAG:
                for k, v in self.merged(vnode, path).items():
                    merged.setdefault(k, v)
                continue
            if not isinstance(knode, yaml.ScalarNode):
                self.problems.append(self._problem(
                    knode, path, "a key must be a plain value, not a list or a mapping"))
                continue
            key = self.scalar(knode, path)
            if not isinstance(key, str | int | float | bool) or key is None:
                key = str(key)
            if key in out:
                first = self.smap.keys.get((*path, key), (0, 0))
                self.problems.append(self._problem(
                    knode, (*path, key),
                    f"duplicate key {key!r} (first defined at line {first[0]})"))
                continue
            if record:
                self.smap.keys[(*path, key)] = _mark(knode)
            if key in VERBATIM_KEYS and isinstance(vnode, yaml.ScalarNode) \
                    and vnode.tag in _NUMBER_TAGS:
                if record:
                    self.smap.values[(*path, key)] = _mark(vnode)
                out[key] = vnode.value
                continue
            out[key] = self.walk(vnode, (*path, key), record=record)
        for k, v in merged.items():
            out.setdefault(k, v)
        return out


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def read_source(path: Path) -> str:
    """A scenario file's text: at most MAX_FILE_BYTES of UTF-8, or a located error."""
    file = str(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ScenarioError([Problem(file, 0, 0, "", f"cannot read: {exc}")]) from exc
    if len(raw) > MAX_FILE_BYTES:
        raise ScenarioError([Problem(file, 0, 0, "", f"larger than {MAX_FILE_BYTES} bytes: "
                                     "a scenario file is text of a few kilobytes")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _line_col(raw[:exc.start].decode("utf-8"), exc.start)
        raise ScenarioError([Problem(file, line, col, "", f"not UTF-8: byte "
                                     f"{raw[exc.start]:#04x} ({exc.reason})")]) from exc


def load_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document; raise :class:`ScenarioError` on syntax errors or duplicates."""
    if len(text) > MAX_FILE_BYTES:
        raise ScenarioError([Problem(file, 0, 0, "", f"larger than {MAX_FILE_BYTES} characters: "
                                     "a scenario file is text of a few kilobytes")])
    smap = SourceMap(file)
    loader: _BoundedLoader | None = None
    try:
        # The reader checks every character as it is constructed.
        loader = _BoundedLoader(text)
        node = loader.get_single_node()
        if node is None:
            raise ScenarioError([Problem(file, 1, 1, "", "the file is empty")])
        walker = _Walker(loader, smap)
        data = walker.walk(node, ())
    except _TooLarge as exc:
        line, col = _mark(exc.node)
        raise ScenarioError([Problem(
            file, line, col, "", f"the document expands to more than {MAX_VALUES} values "
            "(aliases repeat what they name): a scenario needs far fewer")]) from None
    except _TooDeep as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        raise ScenarioError([Problem(file, line, col, "", str(exc.problem))]) from None
    except yaml.reader.ReaderError as exc:
        line, col = _line_col(text, exc.position)
        char = chr(exc.character) if isinstance(exc.character, int) else str(exc.character)
        raise ScenarioError([Problem(file, line, col, "", f"character {char!r} is not allowed "
                                     "in YAML (only printable text is)")]) from exc
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
        if loader is not None:
            loader.dispose()
    if walker.problems:
        raise ScenarioError(walker.problems)
    return data, smap
