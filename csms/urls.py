from django.contrib import admin
from django.urls import path

from csms import views
from mobileapi.http import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("metrics", views.metrics, name="metrics"),
]
