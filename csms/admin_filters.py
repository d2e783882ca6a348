"""Shared admin pieces: a read-only base, and a text-box list filter for fields
with too many values to list (station ids)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import Model, QuerySet
from django.http import HttpRequest


class InputFilter(admin.SimpleListFilter):
    template = "admin/input_filter.html"
    placeholder = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> tuple[tuple[str, str], ...]:
        return (("", ""),)  # never listed; non-empty so the filter is shown

    def choices(self, changelist: ChangeList) -> Iterator[dict[str, Any]]:  # type: ignore[override]
        # The other parameters (filters, search, ordering) go along as hidden fields; the choice carries
        # the keys admin/input_filter.html reads besides Django's (hence the override).
        keep = [(name, value) for name, values in self.request.GET.lists() if name not in (self.parameter_name, "p")
                for value in values]
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name or ""]),
            "hidden": keep,
            "value": self.value() or "",
            "placeholder": self.placeholder,
        }


class StationIdFilter(InputFilter):
    """Rows of one station, by its id (models with a ``station_id`` column)."""

    title = "station"
    parameter_name = "station"
    placeholder = "station id"

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(station_id=value.strip()) if value else queryset


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by the services (events, transactions, sessions): view, never edit."""

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
