"""structlog configuration: one human view on stderr, the structured log on disk.

stderr shows one view at a time:

- ``auto`` (the default): the progress view (progress.py) prints the steps, and
  stderr gets only warnings and errors from the log;
- ``console``: every log event as a readable line (no progress view);
- ``json``: every log event as a JSON line (no progress view), for machines.

Whatever stderr shows, every event at info level and above (debug with
``--verbose``) of a scenario is also written as JSON lines to that scenario's
run directory (``orchestrator.log``): :data:`RUN_LOG` names the file for the
task tree that runs the scenario.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import structlog
from structlog.processors import NAME_TO_LEVEL

LogFormat = Literal["auto", "console", "json"]

# The open orchestrator.log of the scenario whose task logs the event.
RUN_LOG: contextvars.ContextVar[TextIO | None] = contextvars.ContextVar("p2plab_run_log",
                                                                         default=None)


def _stderr_logger(*args: Any) -> structlog.PrintLogger:
    """A logger on the current sys.stderr (looked up per use, so redirection works)."""
    return structlog.PrintLogger(sys.stderr)


def _tee_to_run_log(_logger: Any, method: str,
                    event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    f = RUN_LOG.get()
    if f is not None and not f.closed:
        line = {"timestamp": datetime.datetime.now(datetime.UTC).isoformat(),
                "level": method, **event}
        f.write(json.dumps(line, default=str) + "\n")
        f.flush()
    return event


def _stderr_threshold(level: int) -> structlog.types.Processor:
    def keep(_logger: Any, method: str,
             event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if NAME_TO_LEVEL.get(method, logging.INFO) < level:
            raise structlog.DropEvent
        return event
    return keep


def setup_logging(fmt: LogFormat = "auto", verbose: bool = False, quiet: bool = False) -> None:
    """Configure structlog (and stdlib logging, for qemu.qmp).

    ``quiet`` keeps only warnings and errors on stderr (for the shell, and for
    the progress view); run logs on disk still get everything.
    """
    floor = logging.DEBUG if verbose else logging.INFO
    stderr_level = logging.WARNING if quiet else floor
    renderer: structlog.types.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.format_exc_info,
            _tee_to_run_log,
            _stderr_threshold(stderr_level),
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso" if fmt == "json" else "%H:%M:%S"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(floor),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    # qemu.qmp logs through stdlib logging; keep it quiet unless asked.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("qemu.qmp").setLevel(logging.DEBUG if verbose else logging.CRITICAL)
