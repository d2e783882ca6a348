"""The admin site: Django's, with the network dashboard on its index page."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path, reverse

from stations import selectors

SHOWN_ONCE = "csms_shown_once"


class CsmsAdminSite(admin.AdminSite):
    site_header = "CSMS administration"
    site_title = "CSMS"
    index_title = "Network"
    site_url = None  # no public site besides the admin and the APIs

    def get_urls(self) -> list[URLPattern | URLResolver]:
        return [
            path("dashboard/", self.admin_view(self.dashboard), name="dashboard"),
            path("shown-once/<str:token>/", self.admin_view(self.shown_once), name="shown_once"),
            *super().get_urls(),
        ]

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        extra_context = {**(extra_context or {}), "dashboard": selectors.network_summary()}
        return super().index(request, extra_context)

    def dashboard(self, request: HttpRequest) -> TemplateResponse:
        """The dashboard alone, for the index page's refresh without a reload."""
        context = {**self.each_context(request), "dashboard": selectors.network_summary()}
        return TemplateResponse(request, "admin/dashboard.html", context)

    def shown_once(self, request: HttpRequest, token: str) -> HttpResponse:
        """The page ``show_once`` redirected to: pops the secret, so a reload cannot show it again."""
        held: dict[str, Any] = request.session.get(SHOWN_ONCE, {})
        shown = held.pop(token, None)
        request.session[SHOWN_ONCE] = held
        if shown is None:
            messages.warning(request, "That secret was shown once and is not stored: make a new one if it was "
                                      "not copied.")
            return HttpResponseRedirect(reverse("admin:index"))
        response = TemplateResponse(request, "admin/shown_once.html", {**self.each_context(request), **shown})
        response["Cache-Control"] = "no-store"  # nor may the browser's back button show it
        return response


def show_once(request: HttpRequest, *, secret: str, secret_label: str, title: str, explanation: str,
              back_url: str) -> HttpResponse:
    """Answer the POST that made a secret with a redirect to a page that shows it once (POST/redirect/GET).

    The secret waits in the server-side session (the database, not a cookie) until that page
    pops it: reloading the page neither shows it again nor repeats the POST that made it
    (a second API key, or a second station password that locks the charger out).
    """
    token = secrets.token_urlsafe(12)
    held: dict[str, Any] = request.session.get(SHOWN_ONCE, {})
    held[token] = {"secret": secret, "secret_label": secret_label, "title": title, "explanation": explanation,
                   "back_url": back_url}
    request.session[SHOWN_ONCE] = held
    return HttpResponseRedirect(reverse("admin:shown_once", args=[token]))
