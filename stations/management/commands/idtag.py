"""python manage.py idtag add <token> [--type T] [--status S] [--group G] [--expiry ISO] | list | remove <token>

Provision tokens (the IdTag table) through the same service as ``import_network``. ``add``
is idempotent: an existing token keeps what is not given, takes what is and says what
changed; ``--group ""`` and ``--expiry ""`` clear them.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from stations import services
from stations.management.provisioning import refusals, report, table
from stations.models import IdTag, IdTagStatus, TokenType


class Command(BaseCommand):
    help = "Add (or update), list and remove tokens (idTags)."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="Create a token, or update the given fields of an existing one")
        add.add_argument("token", help="The token's value, e.g. an RFID card's UID")
        add.add_argument("--type", choices=TokenType.values, help="Left out: ISO14443 (an RFID card) for a new token")
        add.add_argument("--status", choices=IdTagStatus.values, help="Left out: Accepted for a new token")
        add.add_argument("--group", help="Group id: tokens of one group may stop each other's sessions")
        add.add_argument("--expiry", help="ISO 8601 date or time, UTC unless it says, e.g. 2027-01-31T00:00:00Z")
        actions.add_parser("list", help="List the tokens")
        remove = actions.add_parser("remove", help="Delete a token (its transactions keep the value)")
        remove.add_argument("token")

    def handle(self, *args: Any, **options: Any) -> None:
        with refusals():
            getattr(self, f"_{options['action']}")(options)

    def _add(self, options: dict[str, Any]) -> None:
        result = services.provision_token(
            options["token"], type=options["type"], status=options["status"], group=options["group"],
            expiry=options["expiry"])
        for line in report("token", result):
            self.stdout.write(line)

    def _list(self, options: dict[str, Any]) -> None:
        rows = [
            (t.id_tag, t.type, t.status, t.group_id, services.iso(t.expiry_date) or "")
            for t in IdTag.objects.order_by("id_tag")
        ]
        if not rows:
            self.stdout.write("No tokens")
            return
        table(("TOKEN", "TYPE", "STATUS", "GROUP", "EXPIRY"), rows, self.stdout.write)

    def _remove(self, options: dict[str, Any]) -> None:
        token = options["token"]
        if services.remove_token(token):
            self.stdout.write(f"Removed token {token}")
        else:
            self.stdout.write(f"No token {token}: nothing to remove")
