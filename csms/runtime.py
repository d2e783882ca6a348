"""Process-level tuning applied when the ASGI application loads, from settings.

Measured in the prototype: with many connections, Python's full garbage
collections took 0.56-1.3 s and made the latency tails. Both knobs are
settings so that each deployment measures rather than guesses.
"""

from __future__ import annotations

import gc
import logging
import os
import socket

from django.conf import settings

log = logging.getLogger("csms")

# How this process is named wherever support or another process sees it
# (mobile sessions, server processes): host:pid.
PROCESS_NAME = f"{socket.gethostname()}:{os.getpid()}"[:100]


def tune_garbage_collector() -> None:
    if settings.GC_THRESHOLD:
        gc.set_threshold(*settings.GC_THRESHOLD)
    if settings.GC_FREEZE:
        # Everything loaded so far (Django, the app, the libraries) is moved
        # out of the collector's sight: later collections scan far less.
        gc.collect()
        gc.freeze()
    log.info("garbage collector: thresholds %s, %d objects frozen", gc.get_threshold(), gc.get_freeze_count())
