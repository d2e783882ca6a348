"""The charger's messages of the raw OCPP-J load generators, per OCPP version (1.6 or 2.0.1).

Not a benchmark itself. ``side_by_side.py`` and ``chargers_held.py`` take ``--ocpp 1.6|2.0.1`` and send
the same load in either version: the same calls, each in the form its version gives it.

    1.6                                          2.0.1
    BootNotification {chargePointVendor, ...}    BootNotification {chargingStation {vendorName, model}, reason PowerUp}
    StatusNotification {connectorId 1, ...}      StatusNotification {timestamp, connectorStatus, evseId 1, connectorId 1}
    Heartbeat {}                                 Heartbeat {}
    MeterValues {connectorId 1, meterValue}      MeterValues {evseId 1, meterValue} (sampledValue's value a number,
                                                 its unit in unitOfMeasure)

and, for a burst in a transaction (side_by_side.py --in-transaction), the transaction's start and readings:

    StartTransaction {connectorId 1, idTag,      TransactionEvent Started {seqNo 0, triggerReason Authorized,
      meterStart, timestamp}                       transactionInfo {transactionId}, idToken, evse, meterValue}
    MeterValues {connectorId 1, transactionId,   TransactionEvent Updated {seqNo n, triggerReason
      meterValue}                                  MeterValuePeriodic, transactionInfo {transactionId,
                                                   chargingState Charging}, meterValue}
"""

from __future__ import annotations

import datetime as dt
import random
import time

VERSIONS = ("1.6", "2.0.1")
SUBPROTOCOLS = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}


def iso_ms(epoch_ms: int) -> str:
    stamp = dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def boot(version: str, model: str) -> dict:
    if version == "2.0.1":
        return {"chargingStation": {"vendorName": "Bench", "model": model}, "reason": "PowerUp"}
    return {"chargePointVendor": "Bench", "chargePointModel": model}


def status_available(version: str) -> dict:
    """Connector 1 (2.0.1: of EVSE 1) is Available."""
    if version == "2.0.1":
        return {"timestamp": iso_ms(int(time.time() * 1000)), "connectorStatus": "Available", "evseId": 1,
                "connectorId": 1}
    return {"connectorId": 1, "errorCode": "NoError", "status": "Available"}


class Meter:
    """A charger's register and clock: every reading later than the one before, and more energy.

    Timestamps are milliseconds, at least 1 ms apart: the CSMS stores microseconds and keeps one
    reading per station, connector and timestamp, so every MeterValues must be stored.
    """

    def __init__(self, version: str = "1.6") -> None:
        self.version = version
        self.last_ms = 0
        self.energy_wh = random.randint(0, 1000)

    def reading(self, context: str = "Sample.Periodic") -> list[dict]:
        """The next reading, as its version's meterValue (a list of one)."""
        self.last_ms = max(int(time.time() * 1000), self.last_ms + 1)
        self.energy_wh += 7
        if self.version == "2.0.1":
            return [{"timestamp": iso_ms(self.last_ms),
                     "sampledValue": [{"value": self.energy_wh, "measurand": "Energy.Active.Import.Register",
                                       "context": context, "unitOfMeasure": {"unit": "Wh"}}]}]
        return [{"timestamp": iso_ms(self.last_ms),
                 "sampledValue": [{"value": str(self.energy_wh), "measurand": "Energy.Active.Import.Register",
                                   "unit": "Wh", "context": context}]}]

    def payload(self, transaction_id: int | None = None) -> dict:
        """A MeterValues (1.6: of ``transaction_id`` when given)."""
        if self.version == "2.0.1":
            return {"evseId": 1, "meterValue": self.reading()}
        payload: dict = {"connectorId": 1}
        if transaction_id is not None:
            payload["transactionId"] = transaction_id
        payload["meterValue"] = self.reading()
        return payload

    def start(self, transaction_id: str) -> tuple[str, dict]:
        """The call that starts a transaction at the current register: (action, payload). 1.6's
        StartTransaction gets its id from the CSMS; 2.0.1's Started names ``transaction_id``."""
        if self.version == "2.0.1":
            return "TransactionEvent", {
                "eventType": "Started", "timestamp": iso_ms(int(time.time() * 1000)), "triggerReason": "Authorized",
                "seqNo": 0, "transactionInfo": {"transactionId": transaction_id, "chargingState": "Charging"},
                "idToken": {"idToken": TOKEN, "type": "ISO14443"}, "evse": {"id": 1, "connectorId": 1},
                "meterValue": self.reading("Transaction.Begin"),
            }
        return "StartTransaction", {"connectorId": 1, "idTag": TOKEN, "meterStart": self.energy_wh,
                                    "timestamp": iso_ms(int(time.time() * 1000))}

    def in_transaction(self, transaction_id: int | str, seq_no: int) -> tuple[str, dict]:
        """The next reading of a running transaction: (action, payload)."""
        if self.version == "2.0.1":
            return "TransactionEvent", {
                "eventType": "Updated", "timestamp": iso_ms(int(time.time() * 1000)),
                "triggerReason": "MeterValuePeriodic", "seqNo": seq_no,
                "transactionInfo": {"transactionId": str(transaction_id), "chargingState": "Charging"},
                "meterValue": self.reading(),
            }
        return "MeterValues", self.payload(int(transaction_id))


TOKEN = "BENCH0001"
