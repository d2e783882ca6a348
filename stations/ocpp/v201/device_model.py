"""B Provisioning, the device model: NotifyReport (the parts of a station's answer to GetBaseReport and
GetReport), stored as its DeviceVariable rows (stations/services/device_model.py)."""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v201 import call_result
from ocpp.v201.enums import Action

from stations.ocpp.dispatch import run
from stations.services.device_model import record_report

# Reports whose parts this connection is counting (requestId -> attributes stored, entries skipped): a few.
_OPEN_REPORTS = 8


class DeviceModelHandlers:
    station_id: str
    _reports: dict[int, tuple[int, int]] | None = None

    @on(Action.notify_report)
    async def on_notify_report(
        self, request_id: int, generated_at: str, seq_no: int, tbc: bool = False,
        report_data: list[dict[str, Any]] | None = None, **extra: Any,
    ) -> call_result.NotifyReport:
        # Each part is stored as it comes (one bounded upsert per 500 attributes); the last one (tbc false)
        # is announced with the report's totals as this connection counted its parts.
        reports = self._reports
        if reports is None:
            reports = self._reports = {}
        stored_before, skipped_before = reports.pop(request_id, (0, 0))
        stored, skipped = await run(record_report, self.station_id, request_id, generated_at, seq_no, tbc,
                                    report_data, stored_before, skipped_before)
        if tbc:
            while len(reports) >= _OPEN_REPORTS:
                reports.pop(next(iter(reports)))
            reports[request_id] = (stored_before + stored, skipped_before + skipped)
        return call_result.NotifyReport()
