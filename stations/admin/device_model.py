"""A 2.0.1 station's device model page (what the 1.6 configuration page is for 1.6 stations) and the
rotation of its basic-auth password. Views of StationAdmin (stations/admin/stations.py)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse

from csms.admin_site import show_once
from csms.models import Event
from stations import services
from stations.admin.operations import actor_of
from stations.commands import device_model as dm
from stations.models import DeviceVariable, OcppVersion, Station
from stations.services.device_model import ATTRIBUTE_TYPES, VariableRef

OPERATE = "stations.operate_station"
# Rotating a password sets it, as setting one by hand does (docs/admin.md: support may not).
SET_PASSWORD = "stations.change_station"
PER_PAGE = 200
SEARCHED = ("component", "component_instance", "variable", "variable_instance", "value")


class VariableForm(forms.Form):
    """One variable attribute (the hidden fields of a row's set form) and, to set it, its value."""

    component = forms.CharField(max_length=50)
    component_instance = forms.CharField(max_length=50, required=False)
    evse = forms.IntegerField(min_value=0, max_value=2**31 - 1, required=False)
    connector = forms.IntegerField(min_value=0, max_value=2**31 - 1, required=False)
    variable = forms.CharField(max_length=50)
    variable_instance = forms.CharField(max_length=50, required=False)
    attribute_type = forms.ChoiceField(choices=[(kind, kind) for kind in sorted(ATTRIBUTE_TYPES)], initial="Actual",
                                       required=False)
    value = forms.CharField(max_length=2500, required=False, strip=False)

    def ref(self) -> VariableRef:
        data = self.cleaned_data
        return VariableRef(data["component"], data["variable"], data["component_instance"], data["variable_instance"],
                           data["evse"] or 0, data["connector"] or 0, data["attribute_type"] or "Actual")


def is_201(station: Station) -> bool:
    return station.ocpp_version == OcppVersion.V201


def _label(ref: VariableRef) -> str:
    where = f"{ref.component}" + (f"[{ref.component_instance}]" if ref.component_instance else "")
    if ref.evse:
        where += f" (EVSE {ref.evse}" + (f", connector {ref.connector}" if ref.connector else "") + ")"
    variable = ref.variable + (f"[{ref.variable_instance}]" if ref.variable_instance else "")
    return f"{where}.{variable}" + ("" if ref.attribute_type == "Actual" else f" {ref.attribute_type}")


def device_model_view(model_admin: Any, request: HttpRequest, object_id: str) -> HttpResponse:
    """The stored device model as a searchable table, a set form per writable attribute (SetVariables),
    a read button per attribute (GetVariables) and "Get base report" (GetBaseReport; the station answers
    with NotifyReport parts, stored as they come). A GET sends nothing to the charger."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    station = get_object_or_404(Station, pk=object_id)
    here = reverse("admin:stations_station_device_model", args=[station.pk])
    if not is_201(station):  # 1.6: its configuration page, unchanged
        return HttpResponseRedirect(reverse("admin:stations_station_configuration", args=[station.pk]))
    query = (request.POST.get("q") if request.method == "POST" else request.GET.get("q")) or ""
    if request.method == "POST":
        if not request.user.has_perm(OPERATE):
            raise PermissionDenied
        _act(request, station)
        params = {name: value for name, value in (("q", query), ("page", request.POST.get("page") or "")) if value}
        return HttpResponseRedirect(here + (f"?{urlencode(params)}" if params else ""))
    rows = DeviceVariable.objects.filter(station=station)
    if query:
        condition = Q()
        for field in SEARCHED:
            condition |= Q(**{f"{field}__icontains": query})
        rows = rows.filter(condition)
    page = Paginator(rows, PER_PAGE).get_page(request.GET.get("page"))
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "original": station,
        "title": f"Device model of {station.pk}",
        "page": page,
        "query": query,
        "total": DeviceVariable.objects.filter(station=station).count(),
        "can_operate": request.user.has_perm(OPERATE),
        "report_bases": dm.REPORT_BASES,
        "last_report": Event.objects.filter(station_id=station.pk, kind="station.device_model.reported")
        .order_by("-seq").first(),
    }
    return TemplateResponse(request, "admin/stations/station/device_model.html", context)


def _act(request: HttpRequest, station: Station) -> None:
    action = request.POST.get("action")
    actor = actor_of(request.user)
    try:
        if action == "report":
            base = request.POST.get("report_base") or "FullInventory"
            if base not in dm.REPORT_BASES:
                messages.error(request, f"Unknown report base {base}")
                return
            status, request_id = async_to_sync(dm.request_report)(station.pk, base, actor=actor)
            text = f"GetBaseReport {base}: the charger answered {status}"
            if status == "Accepted":
                text += f"; its NotifyReport parts (requestId {request_id}) are stored as they come: reload to see them"
            messages.success(request, f"Station {station.pk}: {text}")
            return
        form = VariableForm(request.POST)
        if action not in ("set", "read") or not form.is_valid():
            errors = "; ".join(f"{name}: {' '.join(map(str, errs))}" for name, errs in form.errors.items())
            messages.error(request, f"Station {station.pk}: nothing sent ({errors or 'unknown action'})")
            return
        ref = form.ref()
        if action == "read":
            result = async_to_sync(dm.read_variable)(station.pk, ref, actor=actor)
            text = f"GetVariables {_label(ref)}: the charger answered {result.status}"
            if result.value is not None:
                text += f", value {result.value!r}"
        else:
            result = async_to_sync(dm.set_variable)(station.pk, ref, form.cleaned_data["value"], actor=actor)
            text = f"SetVariables {_label(ref)}: the charger answered {result.status}"
            if result.status == "RebootRequired":
                text += " (it applies the value after a reboot)"
        if result.reason:
            text += f" ({result.reason})"
        (messages.success if result.status in dm.TAKEN else messages.warning)(request, f"Station {station.pk}: {text}")
    except services.DomainError as error:
        messages.error(request, f"Station {station.pk}: {action} failed: {error} ({error.code})")


def rotate_password_view(model_admin: Any, request: HttpRequest, object_id: str) -> HttpResponse:
    """A01: give a 2.0.1 station a new basic-auth password (SetVariables SecurityCtrlr.BasicAuthPassword)
    and show it once."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not request.user.has_perms((OPERATE, SET_PASSWORD)):
        raise PermissionDenied
    station = get_object_or_404(Station, pk=object_id)
    back = reverse("admin:stations_station_change", args=[station.pk])
    if not is_201(station):
        messages.error(request, f"Station {station.pk} speaks OCPP {station.ocpp_version}: set its password by hand")
        return HttpResponseRedirect(back)
    try:
        rotation = async_to_sync(dm.rotate_password)(station.pk, actor=actor_of(request.user))
    except services.DomainError as error:
        messages.error(request, f"Password rotation of {station.pk} failed: {error} ({error.code})")
        return HttpResponseRedirect(back)
    if rotation.promoted:
        explanation = ("The charger accepted it (SetVariables BasicAuthPassword) and reconnects with it; the old "
                       "password no longer works. Keep it only if the charger may need configuring by hand: "
                       "it is shown only now.")
    elif rotation.pending:
        why = {"RebootRequired": "takes it after a reboot",
               "Timeout": "did not answer in time"}.get(rotation.status, "closed its socket before answering")
        explanation = (f"The charger {why}: the old and the new password both work until the charger first "
                       f"connects with the new one. It is shown only now.")
    else:
        detail = f": {rotation.error}" if rotation.error else ""
        messages.error(request, f"Password rotation of {station.pk}: the charger answered {rotation.status}{detail}; "
                                f"the old password stays")
        return HttpResponseRedirect(back)
    return show_once(request, title=f"New basic-auth password of {station.pk}", secret=rotation.password,
                     secret_label="Password", explanation=explanation, back_url=back)
