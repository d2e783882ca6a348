from typing import Any

from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig
from django.core.signals import request_finished
from django.db import connections
from django.db.models.signals import post_migrate


class CsmsConfig(AppConfig):
    name = "csms"
    verbose_name = "Event log"

    def ready(self) -> None:
        from csms import checks  # noqa: F401  (registers the production warnings)
        from csms.permissions import ensure_groups

        post_migrate.connect(ensure_groups, dispatch_uid="csms.ensure_groups")
        # Under ASGI each HTTP request runs its sync code in a thread of its own,
        # so a persistent connection (DB_CONN_MAX_AGE, kept for the consumers'
        # ORM thread) would be left behind in a dead thread by every request:
        # PostgreSQL ran out of connections under schemathesis. Close them.
        request_finished.connect(close_request_connections, dispatch_uid="csms.close_request_connections")


def close_request_connections(**kwargs: Any) -> None:
    connections.close_all()  # this request thread's connections only (they are thread-local)


class CsmsAdminConfig(AdminConfig):
    default_site = "csms.admin_site.CsmsAdminSite"
