"""The event log, read-only: what happened, to which station, by whom."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string

from csms import admin_events
from csms.admin_filters import InputFilter, ReadOnlyAdmin, StationIdFilter
from csms.models import Event


class KindFilter(admin.SimpleListFilter):
    title = "type"
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        kinds = Event.objects.order_by("kind").values_list("kind", flat=True).distinct()
        return [(kind, kind) for kind in kinds]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Event]) -> QuerySet[Event]:
        return queryset.filter(kind=self.value()) if self.value() else queryset


class ActorFilter(InputFilter):
    title = "actor"
    parameter_name = "actor"
    placeholder = "user:<name> or apikey:<id>"

    def queryset(self, request: HttpRequest, queryset: QuerySet[Event]) -> QuerySet[Event]:
        value = self.value()
        return queryset.filter(actor=value.strip()) if value else queryset


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("seq", "created_at", "kind", "station_id", "by", "summary")
    list_display_links = ("seq",)
    list_filter = (KindFilter, StationIdFilter, ActorFilter, "created_at")
    date_hierarchy = "created_at"
    search_fields = ("=station_id", "kind", "actor")
    ordering = ("-seq",)
    list_per_page = 100
    show_full_result_count = False  # counting a large log on every page is slow
    fields = ("seq", "event_id", "created_at", "kind", "station_id", "actor", "payload")
    readonly_fields = fields

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        # One query for the page's API key names, not one per row.
        changelist = super().get_changelist_instance(request)
        names = admin_events.actor_names(event.actor for event in changelist.result_list)
        for event in changelist.result_list:
            event.actor_name = names[event.actor]
        return changelist

    @admin.display(description="by", ordering="actor")
    def by(self, event: Event) -> str:
        name = getattr(event, "actor_name", None) or admin_events.actor_names([event.actor])[event.actor]
        if not event.actor:
            return name
        return render_to_string("admin/csms/event/actor.html", {"actor": event.actor, "name": name})

    @admin.display(description="what")
    def summary(self, event: Event) -> str:
        return admin_events.describe(event.kind, event.data)

    @admin.display(description="data")
    def payload(self, event: Event) -> str:
        data = json.dumps(event.data, ensure_ascii=False, indent=2)
        return render_to_string("admin/csms/event/payload.html", {"data": data})
