"""structlog configuration: readable lines on a terminal, JSON with --log-format json."""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog

LogFormat = Literal["auto", "console", "json"]


def _stderr_logger(*args: Any) -> structlog.PrintLogger:
    """A logger on the current sys.stderr (looked up per use, so redirection works)."""
    return structlog.PrintLogger(sys.stderr)


def setup_logging(fmt: LogFormat = "auto", verbose: bool = False, quiet: bool = False) -> None:
    """Configure structlog (and stdlib logging, for qemu.qmp) to write to stderr.

    ``quiet`` keeps only warnings and errors (for the shell, and the live progress view).
    """
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    if fmt == "auto":
        fmt = "console"
    renderer: structlog.types.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso" if fmt == "json" else "%H:%M:%S"),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    # qemu.qmp logs through stdlib logging; keep it quiet unless asked.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("qemu.qmp").setLevel(logging.DEBUG if verbose else logging.CRITICAL)
