"""idTags: the tokens chargers authorise, and the API keys bound to them."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from stations.models import IdTag


@admin.register(IdTag)
class IdTagAdmin(admin.ModelAdmin):
    list_display = ("id_tag", "status", "expiry_date", "parent", "note", "bound_keys", "created_at")
    list_filter = ("status",)
    search_fields = ("id_tag", "note")
    autocomplete_fields = ("parent",)

    @admin.display(description="API keys")
    def bound_keys(self, tag: IdTag) -> str:
        return ", ".join(key.name for key in tag.api_keys.all())

    def get_queryset(self, request: HttpRequest) -> QuerySet[IdTag]:
        return super().get_queryset(request).prefetch_related("api_keys")
