"""python manage.py simulate_charger <stationId> [--ocpp 1.6|2.0.1] --connectors N --url ws://HOST:PORT/ocpp [--ca-file CERT]"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Coroutine
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from simulator import v16, v201


class Command(BaseCommand):
    help = "Run a simulated OCPP 1.6J or 2.0.1 charger against a CSMS."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("station_id")
        parser.add_argument("--ocpp", choices=["1.6", "2.0.1"], default="1.6",
                            help="The OCPP version it speaks (default: %(default)s)")
        parser.add_argument("--connectors", type=int, default=4,
                            help="Connectors (1.6) or EVSEs of one connector each (2.0.1)")
        parser.add_argument("--url", default=f"ws://127.0.0.1:{settings.PORT}/ocpp",
                            help="OCPP endpoint without the station id (default: %(default)s)")
        parser.add_argument("--password", help="HTTP Basic password (security profile 1)")
        parser.add_argument("--meter-interval", type=float, default=5.0,
                            help="Seconds between MeterValues (2.0.1: TransactionEvent Updated, TxUpdatedInterval)")
        parser.add_argument("--auto-charge", type=float, metavar="SECONDS",
                            help="Drivers start local sessions (RFID) about every SECONDS per connector")
        parser.add_argument("--ca-file", help="Trust this CA or self-signed certificate for a wss:// URL")

    def handle(self, *args: Any, **options: Any) -> None:
        version = "v16" if options["ocpp"] == "1.6" else "v201"
        logging.getLogger(f"simulator.{version}").setLevel(logging.INFO)
        logging.getLogger(f"simulator.{version}.frames").setLevel(logging.WARNING)
        station_id, connectors = options["station_id"], options["connectors"]
        context = ssl.create_default_context(cafile=options["ca_file"]) if options["ca_file"] else None
        run: Coroutine[Any, Any, None]
        if options["ocpp"] == "1.6":
            state = v16.ChargerState.new(station_id, connectors, options["meter_interval"])
            run = v16.run_charger(options["url"], state, options["password"], auto_charge=options["auto_charge"],
                                  ssl_context=context)
            what = f"{connectors} connectors"
        else:
            station = v201.StationState.new(station_id, connectors, options["meter_interval"],
                                            password=options["password"])
            run = v201.run_station(options["url"], station, auto_charge=options["auto_charge"], ssl_context=context)
            what = f"{connectors} EVSEs"
        self.stdout.write(f"Simulating {station_id} (OCPP {options['ocpp']}) with {what} on {options['url']}")
        try:
            asyncio.run(run)
        except KeyboardInterrupt:
            pass
