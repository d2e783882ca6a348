from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig
from django.db.models.signals import post_migrate


class CsmsConfig(AppConfig):
    name = "csms"
    verbose_name = "Event log"

    def ready(self) -> None:
        from csms.permissions import ensure_groups

        post_migrate.connect(ensure_groups, dispatch_uid="csms.ensure_groups")


class CsmsAdminConfig(AdminConfig):
    default_site = "csms.admin_site.CsmsAdminSite"
