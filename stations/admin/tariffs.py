"""Tariffs: every save goes through services.save_tariff, which keeps one default."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from stations import services
from stations.models import Tariff


class TariffForm(forms.ModelForm):
    class Meta:
        model = Tariff
        fields = "__all__"

    def _get_validation_exclusions(self) -> set[str]:  # private in Django, so not in its stubs
        # Making this the default is allowed: services.save_tariff moves the
        # default from the previous one (the constraint would refuse it here).
        return {*super()._get_validation_exclusions(), "is_default"}  # type: ignore[misc]


@admin.register(Tariff)
class TariffAdmin(admin.ModelAdmin):
    form = TariffForm
    list_display = ("name", "price_per_kwh", "price_per_minute", "session_fee", "currency", "is_default")
    list_filter = ("currency", "is_default")
    actions = ("make_default",)

    def save_model(self, request: HttpRequest, obj: Tariff, form: Any, change: bool) -> None:
        services.save_tariff(obj)

    @admin.action(description="Make the selected tariff the default", permissions=["change"])
    def make_default(self, request: HttpRequest, queryset: QuerySet[Tariff]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one tariff to make it the default.", messages.WARNING)
            return
        tariff = queryset.get()
        tariff.is_default = True
        services.save_tariff(tariff)
        self.message_user(request, f"{tariff.name} is now the default tariff.")
