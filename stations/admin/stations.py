"""Stations: the overview a support agent opens, acting on the charger, its configuration and password."""

from __future__ import annotations

import functools
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from csms import admin_events
from csms.admin_site import show_once
from csms.formatting import duration, kwh, money
from csms.models import Event
from stations import commands, rules, selectors, services
from stations.admin import device_model
from stations.admin.display import local_time, number, started_by
from stations.admin.operations import ChangeConfigurationForm, RegistrationForm, actor_of, operations, panel
from stations.models import Station, Transaction

RECENT = 15


class StationStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(status, status) for status in selectors.STATION_STATUSES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Station]) -> QuerySet[Station]:
        value = self.value()
        return selectors.filter_station_status(queryset, value) if value else queryset


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

    def get_queryset(self, request: HttpRequest) -> QuerySet[Station]:
        return super().get_queryset(request).prefetch_related("connectors")

    def get_readonly_fields(self, request: HttpRequest, obj: Station | None = None) -> tuple[str, ...]:
        return ("id", *self.readonly_fields) if obj else self.readonly_fields

    @admin.display(description="status")
    def status(self, station: Station) -> str:
        return rules.station_status(station.is_online, [c.status for c in station.connectors.all() if c.number > 0])

    @admin.display(description="basic-auth password", boolean=True)
    def has_password(self, station: Station) -> bool:
        return bool(station.password_hash)

    def overview(self, station: Station) -> dict[str, Any]:
        """What a support agent looks at first: status, connectors with their live transaction, events."""
        connectors = list(station.connectors.filter(number__gt=0).select_related("current_transaction").annotate(
            register=selectors.latest_register("current_transaction"),
            power=selectors.latest_reading("power_w", "current_transaction"),
        ).order_by("number"))
        rows = []
        for connector in connectors:
            tx = connector.current_transaction
            live = None
            if tx is not None:
                live = {
                    "tx": tx, "by": started_by(tx), "since": duration((timezone.now() - tx.started_at).total_seconds()),
                    "energy": kwh(rules.session_energy_wh(getattr(connector, "register"), tx.meter_start)),
                    "power": number(getattr(connector, "power"), 1, 1000),
                }
            rows.append({"connector": connector, "live": live,
                         "busy": connector.status in rules.BUSY_STATUSES or tx is not None})
        events = (Event.objects.filter(station_id=station.pk).exclude(kind="meter.update").order_by("-seq")[:RECENT])
        transactions = (Transaction.objects.filter(station=station)
                        .select_related("connector").order_by("-pk")[:RECENT])
        return {
            "station_status": self.status(station),
            "connector_rows": rows,
            "recent_events": admin_events.lines(events),
            "recent_transactions": [{"tx": tx, "by": started_by(tx), "started": local_time(tx.started_at),
                                     "stopped": local_time(tx.stopped_at), "energy": kwh(tx.energy_wh),
                                     "cost": money(tx.cost, tx.currency)} for tx in transactions],
            "events_url": reverse("admin:csms_event_changelist") + f"?station={station.pk}",
            "transactions_url": reverse("admin:stations_transaction_changelist") + f"?station={station.pk}",
        }

    # --- Acting on the charger ----------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/operate/<str:operation>/", wrap(self.operate_view), name="stations_station_operate"),
            path("<path:object_id>/configuration/", wrap(self.configuration_view),
                 name="stations_station_configuration"),
            path("<path:object_id>/password/", wrap(self.password_view), name="stations_station_password"),
            # 2.0.1 stations (stations/admin/device_model.py): the device model and the password's rotation.
            path("<path:object_id>/device-model/", wrap(functools.partial(device_model.device_model_view, self)),
                 name="stations_station_device_model"),
            path("<path:object_id>/rotate-password/",
                 wrap(functools.partial(device_model.rotate_password_view, self)),
                 name="stations_station_rotate_password"),
            *super().get_urls(),
        ]

    def can_operate(self, request: HttpRequest) -> bool:
        return request.user.has_perm("stations.operate_station")

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra_context = extra_context or {}
        station = Station.objects.filter(pk=object_id).first()
        if station is not None:
            extra_context.update(self.overview(station))
        if station is not None and self.can_operate(request):
            extra_context["operations"] = [(op, op.form(station)) for op in panel(station)]
            extra_context["registration_form"] = RegistrationForm(station)
            extra_context["configuration_unavailable"] = ChangeConfigurationForm(station).unavailable
        extra_context["device_model"] = station is not None and device_model.is_201(station)
        extra_context["can_set_password"] = request.user.has_perm("stations.change_station")
        return super().change_view(request, object_id, form_url, extra_context)

    def _station(self, request: HttpRequest, object_id: str) -> Station:
        if not self.can_operate(request):
            raise PermissionDenied
        return get_object_or_404(Station, pk=object_id)

    def _run(self, request: HttpRequest, station: Station, operation_name: str) -> bool:
        operation = operations().get(operation_name)
        if operation is None:
            raise Http404("No such operation")
        form = operation.form(station, request.POST)
        if not form.is_valid():
            errors = "; ".join(f"{name}: {' '.join(map(str, errs))}" for name, errs in form.errors.items())
            messages.error(request, f"{operation.title}: {errors}")
            return False
        try:
            text = async_to_sync(operation)(station, form, request.user)
        except services.DomainError as error:
            messages.error(request, f"{operation.title} on {station.pk} failed: {error} ({error.code})")
            return False
        messages.success(request, f"Station {station.pk}: {text}")
        return True

    def operate_view(self, request: HttpRequest, object_id: str, operation: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
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
        if device_model.is_201(station):  # 2.0.1 has no key list: its configuration is its device model
            return HttpResponseRedirect(reverse("admin:stations_station_device_model", args=[station.pk]))
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
                rows, unknown = async_to_sync(commands.read_configuration)(station.pk, actor=actor_of(request.user))
            except services.DomainError as error:
                action = commands.action_of("get_configuration", station.ocpp_version)
                messages.error(request, f"{action} on {station.pk} failed: {error} ({error.code})")
                return HttpResponseRedirect(reverse("admin:stations_station_configuration", args=[station.pk]))
            context.update(
                read=True,
                rows=[{**row, "form": ChangeConfigurationForm(station, initial={"key": row["key"],
                                                                                "value": row["value"]})}
                      for row in rows],
                unknown=unknown,
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
