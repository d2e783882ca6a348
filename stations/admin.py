"""Back-office for the charging network: stations, transactions, idTags, tariffs.

Admin classes present data and call services: every write goes through
``stations.services`` or the remote-command service (``stations.commands``),
the same functions the OCPP and mobile consumers use.
"""

from __future__ import annotations

import csv
from typing import Any

from asgiref.sync import async_to_sync
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from csms import admin_events
from csms.admin_filters import ReadOnlyAdmin, StationIdFilter
from csms.admin_site import show_once
from csms.formatting import duration, kwh, money
from csms.models import Event
from stations import charts, commands, rules, selectors, services, values
from stations.admin_operations import OPERATIONS, PANEL, ChangeConfigurationForm, RegistrationForm, actor_of
from stations.models import IdTag, MeterSample, ServerProcess, Station, Tariff, Transaction

RECENT = 15
MAX_SAMPLES_SHOWN = 500


def _local(value) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _short(value) -> str:
    """A list's time: to the minute, the year only when it is not this one."""
    if not value:
        return ""
    local = timezone.localtime(value)
    return local.strftime("%m-%d %H:%M" if local.year == timezone.localtime().year else "%Y-%m-%d %H:%M")


def _link(obj: Any, text: str | None = None) -> str:
    if obj is None:
        return "—"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, text or str(obj))


def started_by(tx: Transaction) -> str:
    if tx.started_by_key_id:
        return f"API key: {tx.started_by_key.name}" if tx.started_by_key else f"API key #{tx.started_by_key_id}"
    if tx.started_by_user_id:
        return f"staff: {tx.started_by_user.get_username()}" if tx.started_by_user else "staff"
    return "charger (local)"


# --- Stations ---------------------------------------------------------------------------

class StationStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [(status, status) for status in selectors.STATION_STATUSES]

    def queryset(self, request, queryset):
        return selectors.filter_station_status(queryset, self.value()) if self.value() else queryset


@admin.register(Station)
class StationAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "status", "is_online", "last_activity", "vendor", "model", "firmware_version",
                    "registration_status")
    list_filter = (StationStatusFilter, "is_online", "registration_status", "vendor")
    search_fields = ("id", "name", "vendor", "model", "serial_number")
    # Status, connectors, the live transactions, the panel and the events come first, from
    # change_form.html (the overview); the form below holds what is edited and the hardware.
    fieldsets = (
        ("Edit", {"fields": ("id", "name", "tariff")}),
        # Not folded: a folded fieldset renders as a tall band with nothing under it.
        ("Hardware", {"fields": ("vendor", "model", "serial_number", "firmware_version", "meter_type",
                                 "meter_serial_number", "iccid", "imsi")}),
    )
    readonly_fields = ("vendor", "model", "serial_number", "firmware_version", "meter_type", "meter_serial_number",
                       "iccid", "imsi")

    def get_queryset(self, request) -> QuerySet[Station]:
        return super().get_queryset(request).prefetch_related("connectors")

    def get_readonly_fields(self, request, obj=None):
        return ("id", *self.readonly_fields) if obj else self.readonly_fields

    @admin.display(description="status")
    def status(self, station: Station) -> str:
        return rules.station_status(station.is_online, [c.status for c in station.connectors.all() if c.number > 0])

    @admin.display(description="basic-auth password", boolean=True)
    def has_password(self, station: Station) -> bool:
        return bool(station.password_hash)

    def overview(self, station: Station) -> dict[str, Any]:
        """What a support agent looks at first: status, connectors with their live transaction, events."""
        connectors = list(station.connectors.filter(number__gt=0).select_related(
            "current_transaction__started_by_key", "current_transaction__started_by_user").order_by("number"))
        rows = []
        for connector in connectors:
            tx = connector.current_transaction
            live = None
            if tx is not None:
                sample = (MeterSample.objects.filter(values.readable("timestamp"), transaction=tx)
                          .order_by("-timestamp").values("energy_wh", "power_w").first()) or {}
                energy = sample.get("energy_wh")
                live = {
                    "tx": tx, "by": started_by(tx), "since": duration((timezone.now() - tx.started_at).total_seconds()),
                    "energy": kwh(None if energy is None else max(energy - tx.meter_start, 0)),
                    "power": _num(sample.get("power_w"), 1, 1000),
                }
            rows.append({"connector": connector, "live": live,
                         "busy": connector.status in rules.BUSY_STATUSES or tx is not None})
        events = (Event.objects.filter(station_id=station.pk).exclude(kind="meter.update").order_by("-seq")[:RECENT])
        transactions = (Transaction.objects.filter(station=station)
                        .select_related("connector", "started_by_key", "started_by_user").order_by("-pk")[:RECENT])
        return {
            "station_status": self.status(station),
            "connector_rows": rows,
            "recent_events": admin_events.lines(events),
            "recent_transactions": [{"tx": tx, "by": started_by(tx), "started": _local(tx.started_at),
                                     "stopped": _local(tx.stopped_at), "energy": kwh(tx.energy_wh),
                                     "cost": money(tx.cost, tx.currency)} for tx in transactions],
            "events_url": reverse("admin:csms_event_changelist") + f"?station={station.pk}",
            "transactions_url": reverse("admin:stations_transaction_changelist") + f"?station={station.pk}",
        }

    # --- Acting on the charger ----------------------------------------------------------

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/operate/<str:operation>/", wrap(self.operate_view), name="stations_station_operate"),
            path("<path:object_id>/configuration/", wrap(self.configuration_view),
                 name="stations_station_configuration"),
            path("<path:object_id>/password/", wrap(self.password_view), name="stations_station_password"),
            *super().get_urls(),
        ]

    def can_operate(self, request) -> bool:
        return request.user.has_perm("stations.operate_station")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        station = Station.objects.filter(pk=object_id).first()
        if station is not None:
            extra_context.update(self.overview(station))
        if station is not None and self.can_operate(request):
            extra_context["operations"] = [(OPERATIONS[name], OPERATIONS[name].form(station)) for name in PANEL]
            extra_context["registration_form"] = RegistrationForm(station)
            extra_context["configuration_unavailable"] = ChangeConfigurationForm(station).unavailable
        extra_context["can_set_password"] = request.user.has_perm("stations.change_station")
        return super().change_view(request, object_id, form_url, extra_context)

    def _station(self, request, object_id: str) -> Station:
        if not self.can_operate(request):
            raise PermissionDenied
        return get_object_or_404(Station, pk=object_id)

    def _run(self, request, station: Station, operation_name: str) -> bool:
        operation = OPERATIONS.get(operation_name)
        if operation is None:
            raise Http404("No such operation")
        form = operation.form(station, request.POST)
        if not form.is_valid():
            errors = "; ".join(f"{name}: {' '.join(errs)}" for name, errs in form.errors.items())
            messages.error(request, f"{operation.title}: {errors}")
            return False
        try:
            text = async_to_sync(operation.run)(station, form.cleaned_data, request.user)
        except services.DomainError as error:
            messages.error(request, f"{operation.title} on {station.pk} failed: {error} ({error.code})")
            return False
        messages.success(request, f"Station {station.pk}: {text}")
        return True

    def operate_view(self, request: HttpRequest, object_id: str, operation: str) -> HttpResponse:
        if request.method != "POST":
            return require_POST(lambda r: None)(request)
        station = self._station(request, object_id)
        self._run(request, station, operation)
        back = request.POST.get("next") or reverse("admin:stations_station_change", args=[station.pk])
        return HttpResponseRedirect(back if back.startswith("/") and not back.startswith("//") else "/")

    def configuration_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The charger's configuration as a table, with a change form per writable key.

        A GET sends nothing to the charger (a prefetching browser, a crawler
        or a reload must not command it): the page offers a button. Reading
        (GetConfiguration) and changing (ChangeConfiguration, then reading
        again) are POSTs, like every other command in the admin.
        """
        station = self._station(request, object_id)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": station,
            "title": f"Configuration of {station.pk}",
            "change_form": ChangeConfigurationForm(station),
            "read": False,
        }
        if request.method == "POST":
            if "key" in request.POST:
                self._run(request, station, "change_configuration")
            try:
                answer = async_to_sync(commands.operate)(station.pk, "GetConfiguration", {},
                                                         actor=actor_of(request.user))
            except services.DomainError as error:
                messages.error(request, f"GetConfiguration on {station.pk} failed: {error} ({error.code})")
                return HttpResponseRedirect(reverse("admin:stations_station_configuration", args=[station.pk]))
            rows = sorted(answer.get("configurationKey") or [], key=lambda row: row.get("key", ""))
            context.update(
                read=True,
                rows=[{**row, "form": ChangeConfigurationForm(station, initial={"key": row["key"],
                                                                                "value": row.get("value", "")})}
                      for row in rows],
                unknown=answer.get("unknownKey") or [],
            )
        return TemplateResponse(request, "admin/stations/station/configuration.html", context)

    def password_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Set (or generate) the station's basic-auth password and show it once."""
        if not request.user.has_perm("stations.change_station"):
            raise PermissionDenied
        station = get_object_or_404(Station, pk=object_id)
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:stations_station_change", args=[station.pk]))
        try:
            password = services.set_station_password(station.pk, request.POST.get("password") or None)
        except services.DomainError as error:
            messages.error(request, str(error))
            return HttpResponseRedirect(reverse("admin:stations_station_change", args=[station.pk]))
        services.record_command("station.password.set", station.pk, {"stationId": station.pk},
                                actor=actor_of(request.user))
        return show_once(
            request, title=f"Basic-auth password of {station.pk}", secret=password, secret_label="Password",
            explanation=(f"Configure the charger with identity {station.pk} and this password (OCPP "
                         "AuthorizationKey / HTTP Basic). It is shown only now: it is stored hashed."),
            back_url=reverse("admin:stations_station_change", args=[station.pk]),
        )


# --- Transactions -----------------------------------------------------------------------

class TransactionStateFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("completed", "Completed")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(stopped_at__isnull=True)
        if self.value() == "completed":
            return queryset.filter(stopped_at__isnull=False)
        return queryset


CSV_COLUMNS = ("transaction", "station", "connector", "idTag", "started_by", "started_at", "stopped_at",
               "duration_s", "energy_kwh", "cost", "currency", "status", "stop_reason")


@admin.register(Transaction)
class TransactionAdmin(ReadOnlyAdmin):
    # Nine short columns fit 1366 px beside the filters: the stop time is on the transaction's
    # page (duration and status say whether and how long), station and connector share one.
    list_display = ("id", "where", "id_tag", "started_by", "started", "duration", "energy", "cost_display", "state")
    list_display_links = ("id",)
    list_filter = (TransactionStateFilter, StationIdFilter, "started_at", "stopped_at")
    date_hierarchy = "started_at"
    search_fields = ("id_tag",)
    search_help_text = "idTag, or a transaction id"
    list_select_related = ("connector", "started_by_key", "started_by_user")
    fieldsets = (
        (None, {"fields": ("id", "station", "connector_number", "id_tag", "state", "started_by")}),
        ("Times", {"fields": ("started_at", "stopped_at", "duration", "stop_reason")}),
        ("Meter and cost", {"fields": ("meter_start_kwh", "meter_stop_kwh", "energy", "cost_detail", "tariff")}),
        ("Power and energy", {"fields": ("chart",)}),
        ("Meter samples", {"fields": ("samples",)}),
    )
    readonly_fields = ("id", "station", "connector_number", "id_tag", "state", "started_by", "started_at",
                       "stopped_at", "duration", "stop_reason", "meter_start_kwh", "meter_stop_kwh", "energy",
                       "cost_detail", "tariff", "chart", "samples")

    def get_queryset(self, request) -> QuerySet[Transaction]:
        return super().get_queryset(request).annotate(register=selectors.latest_register())

    def get_search_results(self, request, queryset, search_term):
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
        return _short(tx.started_at)

    @admin.display(description="started by")
    def started_by(self, tx: Transaction) -> str:
        return started_by(tx)

    @admin.display(description="duration")
    def duration(self, tx: Transaction) -> str:
        if tx.stopped_at is None:
            return f"{duration((timezone.now() - tx.started_at).total_seconds())} so far"
        return duration(tx.duration_seconds)

    def energy_wh_now(self, tx: Transaction) -> float | None:
        if tx.energy_wh is not None:
            return tx.energy_wh
        register = getattr(tx, "register", None)
        return None if register is None else max(register - tx.meter_start, 0)

    @admin.display(description="energy, kWh", ordering="energy_wh")
    def energy(self, tx: Transaction) -> str:
        value = kwh(self.energy_wh_now(tx))
        return f"{value} so far" if value and tx.stopped_at is None else value

    @admin.display(description="cost", ordering="cost")
    def cost_display(self, tx: Transaction) -> str:
        return money(tx.cost, tx.currency)

    @admin.display(description="status")
    def state(self, tx: Transaction) -> str:
        return "Active" if tx.stopped_at is None else "Completed"

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
                         None if s.energy_wh is None else max(s.energy_wh - tx.meter_start, 0) / 1000)
            for s in self._samples(tx)
        ]
        if points:  # the session starts at 0 kWh delivered, at its start, not at the first sample
            points.insert(0, charts.Point(tx.started_at, None, 0.0))
        end = tx.stopped_at or timezone.now()
        return format_html('<div class="chart">{}</div>',
                           _safe(charts.power_energy_svg(points, start=tx.started_at, end=end)))

    @admin.display(description="samples")
    def samples(self, tx: Transaction) -> str:
        rows = self._samples(tx)
        if not rows:
            return "No meter samples."
        body = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((_local(s.timestamp), s.context, _num(s.energy_wh, 3, 1000), _num(s.power_w, 2, 1000),
              _num(s.current_a, 1), _num(s.voltage_v, 0), _num(s.soc, 0)) for s in rows),
        )
        more = "" if len(rows) < MAX_SAMPLES_SHOWN else f" (first {MAX_SAMPLES_SHOWN} shown)"
        return format_html(
            '<table class="samples"><tr><th>Time</th><th>Context</th><th>Register, kWh</th><th>Power, kW</th>'
            "<th>Current, A</th><th>Voltage, V</th><th>SoC, %</th></tr>{}</table><p>{} samples{}</p>",
            body, len(rows), more,
        )

    # --- CSV export of the filtered list ---------------------------------------------------

    def get_urls(self):
        return [
            path("export.csv", self.admin_site.admin_view(self.export_csv), name="stations_transaction_export"),
            *super().get_urls(),
        ]

    def export_csv(self, request: HttpRequest) -> StreamingHttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        rows = changelist.get_queryset(request).select_related(
            "connector", "started_by_key", "started_by_user"
        ).iterator(chunk_size=500)

        class Echo:
            def write(self, value: str) -> str:
                return value

        writer = csv.writer(Echo())

        def lines():
            yield writer.writerow(CSV_COLUMNS)
            for tx in rows:
                yield writer.writerow([
                    tx.pk, tx.station_id, tx.connector.number, tx.id_tag, started_by(tx),
                    timezone.localtime(tx.started_at).isoformat(),
                    timezone.localtime(tx.stopped_at).isoformat() if tx.stopped_at else "",
                    tx.duration_seconds if tx.duration_seconds is not None else "",
                    kwh(self.energy_wh_now(tx), 3), "" if tx.cost is None else f"{tx.cost:.2f}", tx.currency,
                    self.state(tx), tx.stop_reason,
                ])

        stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="transactions-{stamp}.csv"'
        return response


def _num(value: float | None, places: int, divide: float = 1) -> str:
    return "" if value is None else f"{value / divide:.{places}f}"


def _safe(markup: str):
    return mark_safe(markup)  # noqa: S308 - built by charts.py from numbers and escaped labels


# --- Reference data -------------------------------------------------------------------

@admin.register(IdTag)
class IdTagAdmin(admin.ModelAdmin):
    list_display = ("id_tag", "status", "expiry_date", "parent", "note", "bound_keys", "created_at")
    list_filter = ("status",)
    search_fields = ("id_tag", "note")
    autocomplete_fields = ("parent",)

    @admin.display(description="API keys")
    def bound_keys(self, tag: IdTag) -> str:
        return ", ".join(key.name for key in tag.api_keys.all())

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("api_keys")


class TariffForm(forms.ModelForm):
    class Meta:
        model = Tariff
        fields = "__all__"

    def _get_validation_exclusions(self):
        # Making this the default is allowed: services.save_tariff moves the
        # default from the previous one (the constraint would refuse it here).
        return {*super()._get_validation_exclusions(), "is_default"}


@admin.register(Tariff)
class TariffAdmin(admin.ModelAdmin):
    form = TariffForm
    list_display = ("name", "price_per_kwh", "price_per_minute", "session_fee", "currency", "is_default")
    list_filter = ("currency", "is_default")
    actions = ("make_default",)

    def save_model(self, request, obj, form, change) -> None:
        services.save_tariff(obj)

    @admin.action(description="Make the selected tariff the default", permissions=["change"])
    def make_default(self, request, queryset) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one tariff to make it the default.", messages.WARNING)
            return
        tariff = queryset.get()
        tariff.is_default = True
        services.save_tariff(tariff)
        self.message_user(request, f"{tariff.name} is now the default tariff.")


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
