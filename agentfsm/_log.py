"""Our loggers: the standard ``logging`` module, or structlog where the application set it up.

A library prints nothing the application did not ask for. Every module logs through
``get_logger(__name__)``, a logger under ``agentfsm`` in the standard hierarchy, which has a
``logging.NullHandler`` (as the logging HOWTO recommends for libraries): records go nowhere
until the application configures logging (``logging.basicConfig()``, a handler on
``"agentfsm"`` …). An application that configured structlog (``structlog.configure``) gets
the same events through structlog instead, as key-value events.

Calls take an event name and key-value fields, structlog's way::

    log.warning("model_request_retry", chat_id=chat_id, attempt=2)

Through ``logging`` the fields go into the message (``model_request_retry chat_id=c1
attempt=2``) and, each under its own name, into the record's ``extra``; the record also
carries ``event`` (the event name) and ``fields`` (all of them, as a dict) for formatters
that render structured output.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

__all__ = ["Logger", "get_logger"]

logging.getLogger("agentfsm").addHandler(logging.NullHandler())

# Attributes a LogRecord has already: ``extra`` may not overwrite them.
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class Logger:
    """A module's logger: structlog's when the application configured structlog, else the
    standard library's ``logging.getLogger(name)``."""

    __slots__ = ("_logger", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger = logging.getLogger(name)

    def debug(self, event: str, **fields: Any) -> None:
        """Log ``event`` at DEBUG."""
        self._log(logging.DEBUG, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        """Log ``event`` at INFO."""
        self._log(logging.INFO, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Log ``event`` at WARNING."""
        self._log(logging.WARNING, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        """Log ``event`` at ERROR."""
        self._log(logging.ERROR, "error", event, fields)

    def _log(self, level: int, method: str, event: str, fields: dict[str, Any]) -> None:
        structlog = sys.modules.get("structlog")  # configured means imported: no import here
        if structlog is not None and structlog.is_configured():
            # A fresh proxy each time: it reads the configuration in force now (tests swap
            # it with ``structlog.testing.capture_logs``); this runs only for records made.
            getattr(structlog.get_logger(self.name), method)(event, **fields)
            return
        logger = self._logger
        if not logger.isEnabledFor(level):
            return
        extra = {(k if k not in _RESERVED else f"{k}_"): v for k, v in fields.items()}
        extra["event"] = event
        extra["fields"] = fields
        text = " ".join([event, *(f"{k}={_render(v)}" for k, v in fields.items())])
        logger.log(level, "%s", text, extra=extra, stacklevel=3)


def get_logger(name: str) -> Logger:
    """The logger of module ``name`` (pass ``__name__``)."""
    return Logger(name)


def _render(value: Any) -> str:
    """``value`` as a logfmt-style field: bare when it is one plain word, quoted otherwise."""
    text = value if isinstance(value, str) else repr(value)
    if isinstance(value, str) and (not text or any(c.isspace() or c in "\"'=" for c in text)):
        return repr(text)
    return text
