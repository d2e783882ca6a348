"""python manage.py station_command <stationId> <Action> ['{"json": "payload"}'] [--timeout S]

Send one CSMS-initiated OCPP command to a station through the remote-command
service (it reaches the charger on whichever server process holds it, when
the processes share Redis) and print the charger's answer.
"""

from __future__ import annotations

import asyncio
import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from stations import commands
from stations.services import DomainError


class Command(BaseCommand):
    help = "Send an OCPP command to a station and print the charger's answer."

    def add_arguments(self, parser):
        parser.add_argument("station_id")
        parser.add_argument("action", choices=sorted(commands.ACTIONS))
        parser.add_argument("payload", nargs="?", default="{}", help="JSON payload in OCPP camelCase")
        parser.add_argument("--timeout", type=float, default=None)

    def handle(self, *args, **options):
        backend = settings.CHANNEL_LAYERS["default"]["BACKEND"]
        if backend.rsplit(".", 1)[-1] == "InMemoryChannelLayer":
            # The in-memory layer lives inside one process: a command sent from this
            # one could never reach the server's charger, and would wait
            # OCPP_COMMAND_TIMEOUT to say the station did not answer.
            raise CommandError(
                "This process uses the in-memory channel layer (REDIS_URL is not set), which cannot reach the "
                "server process that holds the charger's socket. Run the server and this command with the same "
                "REDIS_URL, or send it from the admin's station page ('Act on the charger')."
            )
        try:
            payload = json.loads(options["payload"])
        except ValueError as error:
            raise CommandError(f"payload is not JSON: {error}") from None
        try:
            answer = asyncio.run(
                commands.send_command(options["station_id"], options["action"], payload, timeout=options["timeout"])
            )
        except DomainError as error:
            raise CommandError(f"{error.code} {error}") from None
        self.stdout.write(json.dumps(answer))
