"""python manage.py simulate_charger <stationId> --connectors N --url ws://HOST:PORT/ocpp [--ca-file CERT]"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from simulator.v16 import ChargerState, run_charger


class Command(BaseCommand):
    help = "Run a simulated OCPP 1.6J charger against a CSMS."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("station_id")
        parser.add_argument("--connectors", type=int, default=4)
        parser.add_argument("--url", default=f"ws://127.0.0.1:{settings.PORT}/ocpp",
                            help="OCPP endpoint without the station id (default: %(default)s)")
        parser.add_argument("--password", help="HTTP Basic password (security profile 1)")
        parser.add_argument("--meter-interval", type=float, default=5.0, help="Seconds between MeterValues")
        parser.add_argument("--auto-charge", type=float, metavar="SECONDS",
                            help="Drivers start local sessions (RFID) about every SECONDS per connector")
        parser.add_argument("--ca-file", help="Trust this CA or self-signed certificate for a wss:// URL")

    def handle(self, *args: Any, **options: Any) -> None:
        logging.getLogger("simulator.v16").setLevel(logging.INFO)
        logging.getLogger("simulator.v16.frames").setLevel(logging.WARNING)
        state = ChargerState.new(options["station_id"], options["connectors"], options["meter_interval"])
        self.stdout.write(f"Simulating {state.station_id} with {options['connectors']} connectors on {options['url']}")
        try:
            context = ssl.create_default_context(cafile=options["ca_file"]) if options["ca_file"] else None
            asyncio.run(run_charger(options["url"], state, options["password"], auto_charge=options["auto_charge"],
                                    ssl_context=context))
        except KeyboardInterrupt:
            pass
