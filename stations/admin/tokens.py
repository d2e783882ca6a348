"""idTags: the tokens chargers authorise, and the API keys bound to them."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Field, QuerySet
from django.forms import Field as FormField
from django.http import HttpRequest

from stations.models import IdTag


@admin.register(IdTag)
class IdTagAdmin(admin.ModelAdmin):
    list_display = ("id_tag", "type", "status", "expiry_date", "group_id", "note", "bound_keys", "created_at")
    list_filter = ("status", "type")
    search_fields = ("id_tag", "group_id", "note")

    def formfield_for_dbfield(self, db_field: Field, request: HttpRequest, **kwargs: Any) -> FormField | None:
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "type" and field is not None:
            # A form posted without a type (a script, a form from before types) keeps the
            # token's, or ISO14443 for a new one; an empty type is still refused (the model's check).
            field.required = False
        return field

    @admin.display(description="API keys")
    def bound_keys(self, tag: IdTag) -> str:
        return ", ".join(key.name for key in tag.api_keys.all())

    def get_queryset(self, request: HttpRequest) -> QuerySet[IdTag]:
        return super().get_queryset(request).prefetch_related("api_keys")
