"""python manage.py station_command <stationId> <command> ['{"json": "parameters"}'] [--timeout S]

Send one command to a station through the remote-command service (it reaches
the charger on whichever server process holds it, when the processes share
Redis) and print the charger's answer. ``command`` is a registered command
(``reset '{"type": "Soft"}'``, its parameters as the HTTP API takes them; see
docs/http-api.md), recorded in the event log as ``system:station_command``;
or an action of the station's OCPP version with its payload as the charger
reads it (``Reset '{"type": "Soft"}'``), sent as it is and not recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from stations import commands
from stations import ocpp as adapters
from stations.commands.registry import REGISTRY
from stations.errors import DomainError

ACTOR = "system:station_command"


def _choices() -> list[str]:
    raw = sorted({action for adapter in adapters.ADAPTERS.values() for action in adapter.csms_actions})
    return [*REGISTRY, *raw]


class Command(BaseCommand):
    help = "Send a command to a station and print the charger's answer."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("station_id")
        parser.add_argument("action", metavar="command", choices=_choices(),
                            help=f"a registered command ({', '.join(REGISTRY)}) or an OCPP action")
        parser.add_argument("payload", nargs="?", default="{}",
                            help="JSON: the command's parameters, or the OCPP action's payload in camelCase")
        parser.add_argument("--timeout", type=float, default=None, help="seconds to wait for the charger")

    def handle(self, *args: Any, **options: Any) -> None:
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
        if not isinstance(payload, dict):
            raise CommandError("payload must be a JSON object")
        station_id, name = options["station_id"], options["action"]
        try:
            if name in REGISTRY:
                params = REGISTRY[name].validate(payload)
                answer = asyncio.run(commands.run(station_id, name, params, actor=ACTOR, timeout=options["timeout"]))
            else:
                answer = asyncio.run(commands.send_command(station_id, name, payload, timeout=options["timeout"]))
        except DomainError as error:
            raise CommandError(f"{error.code} {error}") from None
        self.stdout.write(json.dumps(answer))
