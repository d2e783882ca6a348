"""Logging plumbing: one log file per day, ``logs/app-YYYY-MM-DD.log``."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading


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
        self._stream = None
        self._switch_lock = threading.Lock()

    def path_for(self, day: dt.date) -> str:
        return os.path.join(self.directory, f"{self.prefix}-{day.isoformat()}.log")

    def _stream_for_today(self):
        today = dt.date.today()
        if today != self._day:
            with self._switch_lock:
                if today != self._day:
                    os.makedirs(self.directory, exist_ok=True)
                    old, self._stream = self._stream, open(
                        self.path_for(today), "a", encoding="utf-8", buffering=1
                    )
                    self._day = today
                    if old is not None:
                        old.close()
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
