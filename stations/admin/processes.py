"""Server processes: which are alive and how many chargers each holds."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.utils import timezone

from csms.admin_filters import ReadOnlyAdmin
from stations.models import ServerProcess


@admin.register(ServerProcess)
class ServerProcessAdmin(ReadOnlyAdmin):
    """Which server processes are alive and how many chargers each holds (presence.py writes
    the rows; a process silent for OCPP_PROCESS_TIMEOUT disappears once its stations are released)."""

    list_display = ("server", "chargers", "seen_at", "alive", "started_at", "channel_prefix")
    ordering = ("server",)

    @admin.display(boolean=True, description="alive")
    def alive(self, process: ServerProcess) -> bool:
        silent = (timezone.now() - process.seen_at).total_seconds()
        return process.dead_at is None and silent < settings.OCPP_PROCESS_TIMEOUT
