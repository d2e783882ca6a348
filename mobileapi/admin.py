"""API keys and mobile sessions in the back-office.

A key is shown once, on the page the POST that created it redirects to (it
waits in the server-side session until that page pops it, so a reload shows
it no more and creates no second key); afterwards only its prefix. Deactivating a key or ending a session takes
effect on every server process within MOBILE_SESSION_CHECK_SECONDS.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from csms.admin_filters import InputFilter, ReadOnlyAdmin
from csms.admin_site import show_once
from mobileapi import services
from mobileapi.models import APP_SCOPES, ApiKey, MobileSession, Scope
from stations.admin.display import short_time
from stations.admin.operations import actor_of


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=[(scope, scope) for scope in APP_SCOPES], widget=forms.CheckboxSelectMultiple, required=False,
        help_text="read:stations: station list, status, meter values, events. "
                  "write:charging: start and stop charging.",
    )
    # A field of its own, not a third checkbox: ticking all the scopes a phone app needs must not also
    # let its key reset or reconfigure every charger.
    operate_stations = forms.BooleanField(
        required=False, label="Operate stations",
        help_text=f"Scope {Scope.OPERATE_STATIONS.value}: reset, configuration, availability, unlock, trigger, "
                  "clear cache, data transfer on any station — for back-office integrations, never a phone "
                  "app's key.",
    )

    class Meta:
        model = ApiKey
        fields = ("name", "scopes", "operate_stations", "id_tags", "is_active")
        help_texts = {"id_tags": "idTags this key may charge with, and whose idTag it sees in events"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.initial["operate_stations"] = Scope.OPERATE_STATIONS in self.instance.scopes

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        scopes = [scope for scope in data.get("scopes", []) if scope != Scope.OPERATE_STATIONS]
        data["scopes"] = [*scopes, Scope.OPERATE_STATIONS.value] if data.get("operate_stations") else scopes
        return data


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ("name", "prefix_display", "scope_list", "is_active", "created_at", "last_used_at", "tags",
                    "live_sessions")
    list_filter = ("is_active",)
    search_fields = ("name", "prefix")
    autocomplete_fields = ("id_tags",)
    readonly_fields = ("prefix_display", "created_at", "last_used_at", "sessions_link")
    actions = ("deactivate", "reactivate")

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        base = ("name", "scopes", "operate_stations", "id_tags", "is_active")
        return base if obj is None else ("prefix_display", *base, "created_at", "last_used_at", "sessions_link")

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiKey]:
        live = Q(sessions__ended_at__isnull=True, sessions__seen_at__gte=timezone.now() - services.SESSION_LOST_AFTER)
        return super().get_queryset(request).prefetch_related("id_tags").annotate(
            n_live=Count("sessions", filter=live)
        )

    @admin.display(description="key")
    def prefix_display(self, key: ApiKey) -> str:
        return f"{key.prefix}…"

    @admin.display(description="scopes")
    def scope_list(self, key: ApiKey) -> str:
        return ", ".join(key.scopes)

    @admin.display(description="idTags")
    def tags(self, key: ApiKey) -> str:
        return ", ".join(tag.id_tag for tag in key.id_tags.all())

    @admin.display(description="live sessions", ordering="n_live")
    def live_sessions(self, key: ApiKey) -> int:
        return getattr(key, "n_live")  # annotated by get_queryset

    @admin.display(description="sessions")
    def sessions_link(self, key: ApiKey) -> str:
        url = reverse("admin:mobileapi_mobilesession_changelist") + f"?api_key__id__exact={key.pk}"
        return render_to_string("admin/mobileapi/apikey/sessions_link.html", {"url": url})

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            services.update_api_key(obj.pk, name=data["name"], scopes=data["scopes"], id_tags=list(data["id_tags"]),
                                    is_active=data["is_active"])
            return
        key, raw_key = services.create_api_key(data["name"], data["scopes"],
                                               [tag.id_tag for tag in data["id_tags"]])
        if not data["is_active"]:
            services.set_key_active(key.pk, False)
        obj.pk, obj.prefix, obj.key_hash = key.pk, key.prefix, key.key_hash
        setattr(request, "_created_api_key", raw_key)  # for response_add, this request only

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass  # the service wrote the bound idTags

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None) -> HttpResponse:
        raw_key = getattr(request, "_created_api_key", None)
        if raw_key is None:
            return super().response_add(request, obj, post_url_continue)
        return show_once(
            request, title=f"API key “{obj.name}” created", secret=raw_key, secret_label="API key",
            explanation="Give this key to the app (it sends it in its auth request). From now on the admin "
                        f"shows only its prefix, {obj.prefix}…: the key itself is stored hashed.",
            back_url=reverse("admin:mobileapi_apikey_change", args=[obj.pk]),
        )

    @admin.action(description="Deactivate selected keys (their live sessions end)", permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key_id in queryset.values_list("pk", flat=True):
            services.set_key_active(key_id, False)
        self.message_user(request, f"Deactivated {queryset.count()} key(s); their live sessions end within seconds.")

    @admin.action(description="Reactivate selected keys", permissions=["change"])
    def reactivate(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key_id in queryset.values_list("pk", flat=True):
            services.set_key_active(key_id, True)
        self.message_user(request, f"Reactivated {queryset.count()} key(s).")


# --- Mobile sessions ---------------------------------------------------------------------

class SessionStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("live", "Live"), ("ended", "Ended")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[MobileSession]) -> QuerySet[MobileSession]:
        fresh = timezone.now() - services.SESSION_LOST_AFTER
        if self.value() == "live":
            return queryset.filter(ended_at__isnull=True, seen_at__gte=fresh)
        if self.value() == "ended":
            return queryset.exclude(ended_at__isnull=True, seen_at__gte=fresh)
        return queryset


class ConnectedAtFilter(InputFilter):
    """"Was the app connected at 14:05?": the sessions open at that moment."""

    title = "connected at (time)"
    parameter_name = "at"
    placeholder = "YYYY-MM-DD HH:MM"

    def queryset(self, request: HttpRequest, queryset: QuerySet[MobileSession]) -> QuerySet[MobileSession]:
        value = self.value()
        if not value:
            return queryset
        moment = parse_datetime(value.strip().replace("T", " "))
        if moment is None:
            messages.warning(request, "Give the time as YYYY-MM-DD HH:MM")
            return queryset
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment)
        return queryset.filter(connected_at__lte=moment).filter(Q(ended_at__isnull=True) | Q(ended_at__gte=moment))


@admin.register(MobileSession)
class MobileSessionAdmin(ReadOnlyAdmin):
    # Fits 1366 px beside the filters: times to the minute; the session id and the endpoint are on
    # the session's page (and the endpoint is a filter).
    list_display = ("connection", "api_key", "connected", "last_message", "subscription_summary", "state",
                    "client_address")
    list_filter = (SessionStateFilter, ConnectedAtFilter, "endpoint", "api_key")
    search_fields = ("session_id", "api_key__name", "client_address", "connection_id")
    date_hierarchy = "connected_at"
    list_select_related = ("api_key",)
    actions = ("end_sessions",)
    fields = ("connection_id", "api_key", "endpoint", "session_id", "client_address", "server", "connected_at",
              "last_message_at", "subscription_table", "state", "seen_at", "ended_at", "end_reason",
              "end_requested_at", "end_requested_by")
    readonly_fields = fields

    def has_end_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("mobileapi.end_mobilesession")

    @admin.display(description="connection")
    def connection(self, session: MobileSession) -> str:
        return session.connection_id[:8]

    @admin.display(description="connected", ordering="connected_at")
    def connected(self, session: MobileSession) -> str:
        return short_time(session.connected_at)

    @admin.display(description="last message", ordering="last_message_at")
    def last_message(self, session: MobileSession) -> str:
        return short_time(session.last_message_at) or "—"

    @admin.display(description="subscriptions")
    def subscription_summary(self, session: MobileSession) -> str:
        return "; ".join(f"{s.get('stationId') or 'all stations'}: {', '.join(s.get('events', []))}"
                         for s in session.subscriptions) or "—"

    @admin.display(description="subscriptions")
    def subscription_table(self, session: MobileSession) -> str:
        if not session.subscriptions:
            return "—"
        rows = [{"id": s.get("id"), "station": s.get("stationId") or "all stations",
                 "events": ", ".join(s.get("events", []))} for s in session.subscriptions]
        return render_to_string("admin/mobileapi/mobilesession/subscriptions.html", {"subscriptions": rows})

    @admin.display(description="state")
    def state(self, session: MobileSession) -> str:
        if session.ended_at is not None:
            return f"Ended ({session.end_reason})" if session.end_reason else "Ended"
        if session.seen_at < timezone.now() - services.SESSION_LOST_AFTER:
            return "Lost (server process gone)"
        if session.end_requested_at is not None:
            return "Live, ending"
        return "Live"

    @admin.action(description="End selected sessions", permissions=["end"])
    def end_sessions(self, request: HttpRequest, queryset: QuerySet[MobileSession]) -> None:
        count = services.request_session_end(list(queryset.values_list("pk", flat=True)), actor=actor_of(request.user))
        self.message_user(request, f"Asked to end {count} live session(s); the app is told and disconnected "
                                   "within seconds.")
