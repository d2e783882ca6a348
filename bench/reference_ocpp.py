"""The reference server: the bare ``ocpp`` library on ``websockets``, no Django, no database.

What a charger's message costs when nothing but the OCPP library handles it: BootNotification,
Heartbeat, StatusNotification, MeterValues, Authorize, StartTransaction and StopTransaction are
answered (validated by the library both ways) and nothing is stored, so the same load the CSMS
gets (bench/side_by_side.py) runs against it. It speaks OCPP 2.0.1 too, on the same port: a
charger offering ``ocpp2.0.1`` gets the library's v201 ChargePoint, answering BootNotification,
Heartbeat, StatusNotification, MeterValues, Authorize and TransactionEvent the same way, so a
2.0.1 load (``--ocpp 2.0.1``) is measured against a 2.0.1 reference (offered both, it chooses 2.0.1, as
the CSMS does by default). The benches
serve it with ``--asgi-server bare-ocpp`` (bench/_support.py) and report the CSMS's figures as a
ratio to it, measured in the same session, since this machine's speed varies from run to run.

    .venv/bin/python bench/reference_ocpp.py --port 9000
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import logging

import websockets
from ocpp import v201
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_TRANSACTION_IDS = itertools.count(1)
_ACCEPTED = IdTagInfo(status=AuthorizationStatus.accepted)


class ReferenceChargePoint(ChargePoint):
    @on(Action.boot_notification)
    async def on_boot(self, **_):
        return call_result.BootNotification(current_time=now(), interval=30, status=RegistrationStatus.accepted)

    @on(Action.heartbeat)
    async def on_heartbeat(self):
        return call_result.Heartbeat(current_time=now())

    @on(Action.status_notification)
    async def on_status(self, **_):
        return call_result.StatusNotification()

    @on(Action.meter_values)
    async def on_meter_values(self, **_):
        return call_result.MeterValues()

    @on(Action.authorize)
    async def on_authorize(self, **_):
        return call_result.Authorize(id_tag_info=_ACCEPTED)

    @on(Action.start_transaction)
    async def on_start_transaction(self, **_):
        return call_result.StartTransaction(transaction_id=next(_TRANSACTION_IDS), id_tag_info=_ACCEPTED)

    @on(Action.stop_transaction)
    async def on_stop_transaction(self, **_):
        return call_result.StopTransaction(id_tag_info=_ACCEPTED)


_ACCEPTED_201 = {"status": "Accepted"}


class ReferenceChargePoint201(v201.ChargePoint):
    @on("BootNotification")
    async def on_boot(self, **_):
        return v201.call_result.BootNotification(current_time=now(), interval=30, status="Accepted")

    @on("Heartbeat")
    async def on_heartbeat(self):
        return v201.call_result.Heartbeat(current_time=now())

    @on("StatusNotification")
    async def on_status(self, **_):
        return v201.call_result.StatusNotification()

    @on("MeterValues")
    async def on_meter_values(self, **_):
        return v201.call_result.MeterValues()

    @on("Authorize")
    async def on_authorize(self, **_):
        return v201.call_result.Authorize(id_token_info=_ACCEPTED_201)

    @on("TransactionEvent")
    async def on_transaction_event(self, event_type, id_token=None, **_):
        # idTokenInfo when a token is given, as a CSMS answers (E01-E03); nothing is stored.
        return v201.call_result.TransactionEvent(id_token_info=_ACCEPTED_201 if id_token else None)


CHARGE_POINTS = {"ocpp1.6": ReferenceChargePoint, "ocpp2.0.1": ReferenceChargePoint201}


async def serve_one(ws) -> None:
    station_id = ws.request.path.rstrip("/").rsplit("/", 1)[-1]
    try:
        await CHARGE_POINTS[ws.subprotocol](station_id, ws).start()
    except websockets.ConnectionClosed:
        pass


async def main(port: int) -> None:
    logging.getLogger("ocpp").setLevel(logging.WARNING)
    async with websockets.serve(serve_one, "127.0.0.1", port, subprotocols=["ocpp2.0.1", "ocpp1.6"], backlog=1024,
                                ping_interval=20):
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
