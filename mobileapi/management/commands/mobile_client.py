"""python manage.py mobile_client --url ws://HOST:8081 --api-key KEY [--endpoint /ws] [--station fora072]

Runs the documents' smoke scenario against a server and prints each step:
auth, subscribe, getStations, ping, then (unless --no-charge) startCharging,
transaction.started, a meter event, getConnectorStatus, stopCharging,
transaction.stopped and getMySessions. Exits non-zero at the first failure.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mobileapi.client import ApiReplyError, MobileClient


class Command(BaseCommand):
    help = "Check a CSMS server's mobile API with the documents' smoke scenario."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="ws://127.0.0.1:8081", help="Server base URL (default: %(default)s)")
        parser.add_argument("--api-key", required=True)
        parser.add_argument("--endpoint", default="/ws", choices=["/ws", "/mobile-client"])
        parser.add_argument("--station", help="Station to charge on (default: the first with an Available connector)")
        parser.add_argument("--connector", type=int, help="Connector to charge on (default: the first Available)")
        parser.add_argument("--id-tag", default="MOBILE_TEST_USER")
        parser.add_argument("--no-charge", action="store_true", help="Read-only: skip start/stop charging")
        parser.add_argument("--timeout", type=float, default=30.0, help="Seconds to wait for each event")
        parser.add_argument("--ca-file", help="Trust this CA or self-signed certificate for a wss:// URL")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            asyncio.run(self.scenario(options))
        except (TimeoutError, ApiReplyError, OSError) as error:
            raise CommandError(f"FAILED: {error}") from None

    def step(self, name: str, detail: object) -> None:
        text = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False)
        self.stdout.write(f"[{time.strftime('%H:%M:%S')}] {name}: {text}")

    async def scenario(self, options: dict[str, Any]) -> None:
        url, endpoint, timeout = options["url"].rstrip("/"), options["endpoint"], options["timeout"]
        tls: dict[str, Any] = {"ssl": ssl.create_default_context(cafile=options["ca_file"])} if options["ca_file"] else {}
        client = await MobileClient.connect(url, endpoint, **tls)
        try:
            auth = await client.result("auth", {"apiKey": options["api_key"]})
            self.step("auth", auth)
            subscribed = await client.result("subscribe", {"events": ["all"]})
            self.step("subscribe", f"{subscribed['subscriptionId']}, snapshot of {len(subscribed['snapshot']['stations'])} stations")
            stations = await client.result("getStations")
            for station in stations:
                connectors = ", ".join(f"{c['id']}:{c['status']}" for c in station["connectors"])
                self.step("getStations", f"{station['id']} {station['status']} online={station['isOnline']} [{connectors}]")
            self.step("ping", await client.result("ping"))
            if not options["no_charge"]:
                await self.charge(client, stations, options, timeout)
        finally:
            await client.close()
        self.stdout.write(self.style.SUCCESS("Smoke scenario passed."))

    async def charge(self, client: MobileClient, stations: list[dict[str, Any]], options: dict[str, Any], timeout: float) -> None:
        station_id, connector_id = self.pick(stations, options)
        start = await client.result(
            "startCharging", {"stationId": station_id, "connectorId": connector_id, "idTag": options["id_tag"]},
            timeout=timeout + 5,
        )
        self.step("startCharging", start)
        started = await client.event("transaction.started", timeout, correlationId=start["correlationId"])
        self.step("transaction.started", started)
        tx_id = client.field(started, "transactionId")
        meter = "meter.update" if client.dialect == "ws" else "meter.values.delta"
        self.step(meter, await client.event(meter, timeout, transactionId=tx_id))
        status = await client.result("getConnectorStatus", {"stationId": station_id, "connectorId": connector_id})
        self.step("getConnectorStatus", status)
        stop = await client.result("stopCharging", {"transactionId": tx_id}, timeout=timeout + 5)
        self.step("stopCharging", stop)
        self.step("transaction.stopped", await client.event("transaction.stopped", timeout, transactionId=tx_id))
        sessions = await client.result("getMySessions", {"limit": 1})
        self.step("getMySessions", sessions[0] if sessions else "none")

    @staticmethod
    def pick(stations: list[dict[str, Any]], options: dict[str, Any]) -> tuple[str, int]:
        for station in stations:
            if options["station"] and station["id"] != options["station"]:
                continue
            for connector in station["connectors"]:
                if options["connector"] in (None, connector["id"]) and connector["status"] == "Available" \
                        and station["isOnline"]:
                    return station["id"], connector["id"]
        raise CommandError("No online station with an Available connector to charge on (see --station/--connector)")
