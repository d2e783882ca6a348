from django.apps import AppConfig


class MobileApiConfig(AppConfig):
    name = "mobileapi"
    verbose_name = "Mobile API"
