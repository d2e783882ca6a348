"""python manage.py station add <id> [--password P] [--accepted] [--name N] | list | remove <id>

Provision stations from a shell or a test suite's setup, through the same services as the
admin. ``add`` is idempotent: an existing station keeps what is not given, takes what is
(a new name, Accepted, a new password) and says what changed; repeating it changes nothing.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from stations import services
from stations.management.provisioning import actor, refusals, report, table
from stations.models import Station


class Command(BaseCommand):
    help = "Add (or update), list and remove stations."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="Create a station, or update the given fields of an existing one")
        add.add_argument("station_id", help="The charger's identity, the last part of its OCPP URL")
        add.add_argument("--password", help="Basic-auth password, at least 16 characters; left out: one is "
                                            "generated for a station that has none, and printed once")
        add.add_argument("--accepted", action="store_true", help="Registration Accepted (left out: a new station "
                         "gets the OCPP_UNKNOWN_STATIONS policy's status, Pending under 'reject')")
        add.add_argument("--name", help="A name for support staff")
        actions.add_parser("list", help="List the stations")
        remove = actions.add_parser("remove", help="Delete a station that has no transactions")
        remove.add_argument("station_id")

    def handle(self, *args: Any, **options: Any) -> None:
        with refusals():
            getattr(self, f"_{options['action']}")(options)

    def _add(self, options: dict[str, Any]) -> None:
        result = services.provision_station(
            options["station_id"], name=options["name"], accepted=options["accepted"], password=options["password"],
            actor=actor("station"))
        for line in report("station", result):
            self.stdout.write(line)

    def _list(self, options: dict[str, Any]) -> None:
        rows = [
            (s.pk, s.name, s.registration_status, "online" if s.is_online else "offline", s.ocpp_version,
             "yes" if s.password_hash else "no", services.iso(s.last_boot_at) or "")
            for s in Station.objects.order_by("pk")
        ]
        if not rows:
            self.stdout.write("No stations")
            return
        table(("ID", "NAME", "REGISTRATION", "SOCKET", "OCPP", "PASSWORD", "LAST BOOT"), rows, self.stdout.write)

    def _remove(self, options: dict[str, Any]) -> None:
        station_id = options["station_id"]
        if services.remove_station(station_id):
            self.stdout.write(f"Removed station {station_id}")
        else:
            self.stdout.write(f"No station {station_id}: nothing to remove")
