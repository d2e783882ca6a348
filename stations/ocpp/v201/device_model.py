"""(filled in by its block)"""

from __future__ import annotations


class DeviceModelHandlers:
    pass
