"""The admin site: Django's, with the network dashboard on its index page."""

from __future__ import annotations

from django.contrib import admin
from django.template.response import TemplateResponse
from django.urls import path

from stations import selectors


class CsmsAdminSite(admin.AdminSite):
    site_header = "CSMS administration"
    site_title = "CSMS"
    index_title = "Network"
    site_url = None  # no public site besides the admin and the APIs

    def get_urls(self):
        return [path("dashboard/", self.admin_view(self.dashboard), name="dashboard"), *super().get_urls()]

    def index(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "dashboard": selectors.network_summary()}
        return super().index(request, extra_context)

    def dashboard(self, request):
        """The dashboard alone, for the index page's refresh without a reload."""
        context = {**self.each_context(request), "dashboard": selectors.network_summary()}
        return TemplateResponse(request, "admin/dashboard.html", context)
