"""Transactions: the list (with its CSV export) and a session's page with its chart and samples."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.template.loader import render_to_string
from django.urls import URLPattern, path
from django.utils import timezone

from csms.admin_filters import ReadOnlyAdmin, StationIdFilter
from csms.formatting import duration, kwh, money
from stations import charts, rules, selectors, services, values
from stations.admin.display import local_time, number, short_time, started_by, transaction_state
from stations.admin.exports import transactions_csv
from stations.models import MeterSample, Transaction

MAX_SAMPLES_SHOWN = 500


class TransactionStateFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("completed", "Completed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Transaction]) -> QuerySet[Transaction]:
        if self.value() == "active":
            return queryset.filter(stopped_at__isnull=True)
        if self.value() == "completed":
            return queryset.filter(stopped_at__isnull=False)
        return queryset


@admin.register(Transaction)
class TransactionAdmin(ReadOnlyAdmin):
    # Nine short columns fit 1366 px beside the filters: the stop time is on the transaction's
    # page (duration and status say whether and how long), station and connector share one.
    list_display = ("id", "where", "id_tag", "starter", "started", "duration", "energy", "cost_display", "state")
    list_display_links = ("id",)
    list_filter = (TransactionStateFilter, StationIdFilter, "started_at", "stopped_at")
    date_hierarchy = "started_at"
    search_fields = ("id_tag",)
    search_help_text = "idTag, or a transaction id"
    list_select_related = ("connector",)
    fieldsets = (
        (None, {"fields": ("id", "station", "connector_number", "id_tag", "state", "starter")}),
        ("Times", {"fields": ("started_at", "stopped_at", "duration", "stop_reason")}),
        ("Meter and cost", {"fields": ("meter_start_kwh", "meter_stop_kwh", "energy", "cost_detail", "tariff")}),
        ("Power and energy", {"fields": ("chart",)}),
        ("Meter samples", {"fields": ("samples",)}),
    )
    readonly_fields = ("id", "station", "connector_number", "id_tag", "state", "starter", "started_at",
                       "stopped_at", "duration", "stop_reason", "meter_start_kwh", "meter_stop_kwh", "energy",
                       "cost_detail", "tariff", "chart", "samples")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Transaction]:
        return selectors.with_latest_register(super().get_queryset(request))

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Transaction],
                           search_term: str) -> tuple[QuerySet[Transaction], bool]:
        queryset, duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip().lstrip("#")
        if term.isdigit():
            queryset |= self.get_queryset(request).filter(pk=int(term))
        return queryset, duplicates

    @admin.display(description="connector", ordering="connector__number")
    def connector_number(self, tx: Transaction) -> int:
        return tx.connector.number

    @admin.display(description="station / connector", ordering="station_id")
    def where(self, tx: Transaction) -> str:
        return f"{tx.station_id} / {tx.connector.number}"

    @admin.display(description="started", ordering="started_at")
    def started(self, tx: Transaction) -> str:
        return short_time(tx.started_at)

    @admin.display(description="started by")
    def starter(self, tx: Transaction) -> str:
        return started_by(tx)

    @admin.display(description="duration")
    def duration(self, tx: Transaction) -> str:
        if tx.stopped_at is None:
            return f"{duration((timezone.now() - tx.started_at).total_seconds())} so far"
        return duration(tx.duration_seconds)

    @admin.display(description="energy, kWh", ordering="energy_wh")
    def energy(self, tx: Transaction) -> str:
        value = kwh(selectors.session_energy_wh(tx))
        return f"{value} so far" if value and tx.stopped_at is None else value

    @admin.display(description="cost", ordering="cost")
    def cost_display(self, tx: Transaction) -> str:
        return money(tx.cost, tx.currency)

    @admin.display(description="status")
    def state(self, tx: Transaction) -> str:
        return transaction_state(tx)

    # One unit on the page: registers in kWh like the energy and the samples' register column.
    @admin.display(description="meter start, kWh")
    def meter_start_kwh(self, tx: Transaction) -> str:
        return kwh(tx.meter_start, 3)

    @admin.display(description="meter stop, kWh")
    def meter_stop_kwh(self, tx: Transaction) -> str:
        return kwh(tx.meter_stop, 3) or "— (still charging)"

    @admin.display(description="cost")
    def cost_detail(self, tx: Transaction) -> str:
        """The cost, or why there is none yet (an empty row reads as a fault)."""
        if tx.cost is not None:
            return money(tx.cost, tx.currency)
        if tx.stopped_at is None:
            tariff = services.tariff_for(tx.station)
            return (f"priced when it stops ({tariff.name})" if tariff else
                    "will not be priced: no tariff is configured (Tariffs)")
        return "not priced: no tariff was configured when it stopped"

    def _samples(self, tx: Transaction) -> list[MeterSample]:
        # readable(): rows stored before the value limits may hold times Python cannot read.
        query = MeterSample.objects.filter(values.readable("timestamp"), transaction=tx)
        return list(query.order_by("timestamp")[:MAX_SAMPLES_SHOWN])

    @admin.display(description="chart")
    def chart(self, tx: Transaction) -> str:
        points = [
            charts.Point(s.timestamp, None if s.power_w is None else s.power_w / 1000,
                         None if s.energy_wh is None else rules.session_energy_wh(s.energy_wh, tx.meter_start) / 1000)
            for s in self._samples(tx)
        ]
        if points:  # the session starts at 0 kWh delivered, at its start, not at the first sample
            points.insert(0, charts.Point(tx.started_at, None, 0.0))
        end = tx.stopped_at or timezone.now()
        chart = charts.power_energy_chart(points, start=tx.started_at, end=end)
        return render_to_string("admin/stations/transaction/chart.html", {"chart": chart})

    @admin.display(description="samples")
    def samples(self, tx: Transaction) -> str:
        samples = self._samples(tx)
        rows = [{"time": local_time(s.timestamp), "context": s.context, "register": number(s.energy_wh, 3, 1000),
                 "power": number(s.power_w, 2, 1000), "current": number(s.current_a, 1),
                 "voltage": number(s.voltage_v, 0), "soc": number(s.soc, 0)} for s in samples]
        truncated = MAX_SAMPLES_SHOWN if len(rows) >= MAX_SAMPLES_SHOWN else None
        return render_to_string("admin/stations/transaction/samples.html", {"rows": rows, "truncated": truncated})

    def get_urls(self) -> list[URLPattern]:
        return [
            path("export.csv", self.admin_site.admin_view(self.export_csv), name="stations_transaction_export"),
            *super().get_urls(),
        ]

    def export_csv(self, request: HttpRequest) -> StreamingHttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return transactions_csv(self.get_changelist_instance(request).get_queryset(request))

