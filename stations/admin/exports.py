"""CSV export of the transactions list, as filtered on the page."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from csms.formatting import kwh
from stations.admin.display import started_by, transaction_state
from stations.models import Transaction
from stations.selectors import session_energy_wh

CSV_COLUMNS = ("transaction", "station", "connector", "idTag", "started_by", "started_at", "stopped_at",
               "duration_s", "energy_kwh", "cost", "currency", "status", "stop_reason")


class _Echo:
    """A file that hands back what is written: csv.writer then yields lines to stream."""

    def write(self, value: str) -> str:
        return value


def _row(tx: Transaction) -> list[object]:
    return [
        tx.pk, tx.station_id, tx.connector.number, tx.id_tag, started_by(tx),
        timezone.localtime(tx.started_at).isoformat(),
        timezone.localtime(tx.stopped_at).isoformat() if tx.stopped_at else "",
        tx.duration_seconds if tx.duration_seconds is not None else "",
        kwh(session_energy_wh(tx), 3), "" if tx.cost is None else f"{tx.cost:.2f}", tx.currency,
        transaction_state(tx), tx.stop_reason,
    ]


def transactions_csv(queryset: QuerySet[Transaction]) -> StreamingHttpResponse:
    """Streamed, so a year of sessions never sits in memory at once."""
    rows: Iterable[Transaction] = queryset.select_related("connector").iterator(chunk_size=500)
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow(CSV_COLUMNS)
        for tx in rows:
            yield writer.writerow(_row(tx))

    stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="transactions-{stamp}.csv"'
    return response
