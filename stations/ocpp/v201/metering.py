"""(filled in by its block)"""

from __future__ import annotations


class MeteringHandlers:
    pass
