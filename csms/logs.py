"""Logging plumbing: one log file per day, ``logs/app-YYYY-MM-DD.log``."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from typing import TextIO

# What a record gathers that our line never prints (Python's logging HOWTO,
# "Optimization"): the caller's file and line (a walk up the stack), the
# thread and the multiprocessing process names. The pid stays (%(process)d).
logging._srcfile = None
logging.logThreads = False
logging.logMultiprocessing = False


class DailyFileHandler(logging.Handler):
    """Append records to ``<directory>/app-<today>.log``, switching at midnight.

    Unlike TimedRotatingFileHandler, the current file already carries its date,
    so several server processes can append to the same file without any of
    them renaming it under the others (lines are written with O_APPEND).
    """

    def __init__(self, directory: str, prefix: str = "app") -> None:
        super().__init__()
        self.directory = directory
        self.prefix = prefix
        self._day: dt.date | None = None
        self._next_day_at = 0.0  # time.time() of the next local midnight
        self._stream: TextIO | None = None
        self._switch_lock = threading.Lock()

    def path_for(self, day: dt.date) -> str:
        return os.path.join(self.directory, f"{self.prefix}-{day.isoformat()}.log")

    def _stream_for_today(self) -> TextIO:
        # One clock read per record; the date is worked out only past midnight.
        if time.time() >= self._next_day_at or self._stream is None:
            with self._switch_lock:
                today = dt.date.today()
                if today != self._day or self._stream is None:
                    os.makedirs(self.directory, exist_ok=True)
                    old, self._stream = self._stream, open(
                        self.path_for(today), "a", encoding="utf-8", buffering=1
                    )
                    self._day = today
                    if old is not None:
                        old.close()
                tomorrow = dt.datetime.combine(today + dt.timedelta(days=1), dt.time())
                self._next_day_at = tomorrow.timestamp()
        return self._stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            self._stream_for_today().write(line + "\n")
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        with self._switch_lock:
            if self._stream is not None:
                self._stream.close()
                self._stream = None
                self._day = None
        super().close()


class BoundedRecords(logging.Filter):
    """No log record is longer than ``limit`` characters, traceback included.

    Log lines quote what clients send (an OCPP frame, a library's message
    with the payload in it); a client must not be able to write megabytes of
    log per message (measured: 100 schema-invalid 250 KB frames wrote 125 MB
    in 3.4 s). What is cut is said, with the original length.
    """

    def __init__(self, limit: int = 4000) -> None:
        super().__init__()
        self.limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        if record.__dict__.get("_bounded"):  # already checked for another handler
            return True
        record._bounded = True
        message = record.getMessage()
        if len(message) > self.limit:
            record.msg, record.args = f"{message[:self.limit]}… ({len(message)} chars)", None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and len(record.exc_text) > 2 * self.limit:
            text = record.exc_text
            record.exc_text = f"{text[:self.limit]}\n… ({len(text)} chars) …\n{text[-self.limit:]}"
        return True


class LineFormatter(logging.Formatter):
    """A record formatted once for every handler that shares this formatter (stderr and the daily file).

    Every OCPP message is logged at INFO: formatting its line twice (the time
    with strftime, the message with %) was a measurable share of a message's cost.
    """

    def format(self, record: logging.LogRecord) -> str:
        cached = record.__dict__.get("_line")
        if cached is not None and cached[0] is self:
            return cached[1]
        line = super().format(record)
        record._line = (self, line)
        return line
