"""structlog, configured once per process: JSON lines off a terminal, readable console on one."""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ["configure_logging"]

_configured = False


def configure_logging(level: str = "info", *, json_lines: bool | None = None) -> None:
    """Configure structlog and the stdlib root logger (idempotent).

    ``json_lines`` defaults to True when stderr is not a terminal, so services under systemd,
    in containers or in CI write one JSON object per line.
    """
    global _configured  # noqa: PLW0603 -- logging is process-wide by nature
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=not _configured,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)
    _configured = True
