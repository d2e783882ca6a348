"""An OCPP 2.0.1 charging station for the tests: the ocpp library's v201 ChargePoint over a real socket.

It answers every CSMS request the CSMS sends with what ``answers`` holds for the action (default
status Accepted) and records each one in ``received``; its methods send the station's own requests
and return the CSMS's answer as the library's call_result.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import websockets
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result
from websockets import Subprotocol

from simulator.v16 import basic_auth_header

SUBPROTOCOL = "ocpp2.0.1"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def connect201(url: str, station_id: str, password: str | None = None, *,
                     subprotocols: tuple[str, ...] = (SUBPROTOCOL,), **kwargs: Any) -> Any:
    """Open a WebSocket to ``<url>/<station_id>`` (``url`` ends with /ocpp) offering ``subprotocols``."""
    headers = basic_auth_header(station_id, password) if password else None
    return await websockets.connect(f"{url.rstrip('/')}/{station_id}",
                                    subprotocols=[Subprotocol(name) for name in subprotocols],
                                    additional_headers=headers, **kwargs)


# CSMS-initiated actions the station answers, with the answer's default payload (snake case).
DEFAULT_ANSWERS: dict[str, dict[str, Any] | None] = {
    "RequestStartTransaction": {"status": "Accepted"},
    "RequestStopTransaction": {"status": "Accepted"},
    "Reset": {"status": "Accepted"},
    "UnlockConnector": {"status": "Unlocked"},
    "ChangeAvailability": {"status": "Accepted"},
    "ClearCache": {"status": "Accepted"},
    "TriggerMessage": {"status": "Accepted"},
    "DataTransfer": {"status": "Accepted"},
    "GetBaseReport": {"status": "Accepted"},
    "GetReport": {"status": "Accepted"},
    "SetVariables": None,  # one Accepted result per variable asked (below)
    "GetVariables": None,  # the variable's value from ``variables``, or UnknownVariable
}


class Station201(ChargePoint):
    """The station's side; ``answers[action]`` overrides an answer (a dict, or a callable of the request)."""

    def __init__(self, station_id: str, connection: Any, **kwargs: Any) -> None:
        super().__init__(station_id, connection, response_timeout=10, **kwargs)
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, Any] = {}
        # (component, variable) -> value, for GetVariables and what SetVariables sets.
        self.variables: dict[tuple[str, str], str] = {}
        self.seq_no = 0

    def _answer(self, action: str, request: dict[str, Any]) -> dict[str, Any]:
        self.received.append((action, request))
        answer = self.answers.get(action, DEFAULT_ANSWERS.get(action))
        return answer(request) if callable(answer) else dict(answer or {})

    async def wait_for(self, action: str, count: int = 1, timeout: float = 5.0) -> dict[str, Any]:
        """The ``count``-th request of ``action`` the CSMS sent (waits for it)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            seen = [request for name, request in self.received if name == action]
            if len(seen) >= count:
                return seen[count - 1]
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no {action} #{count} within {timeout} s (got {self.received!r})")
            await asyncio.sleep(0.02)

    # --- What the CSMS asks -----------------------------------------------------------------

    @on("RequestStartTransaction")
    def on_request_start(self, **request: Any) -> call_result.RequestStartTransaction:
        return call_result.RequestStartTransaction(**self._answer("RequestStartTransaction", request))

    @on("RequestStopTransaction")
    def on_request_stop(self, **request: Any) -> call_result.RequestStopTransaction:
        return call_result.RequestStopTransaction(**self._answer("RequestStopTransaction", request))

    @on("Reset")
    def on_reset(self, **request: Any) -> call_result.Reset:
        return call_result.Reset(**self._answer("Reset", request))

    @on("UnlockConnector")
    def on_unlock(self, **request: Any) -> call_result.UnlockConnector:
        return call_result.UnlockConnector(**self._answer("UnlockConnector", request))

    @on("ChangeAvailability")
    def on_change_availability(self, **request: Any) -> call_result.ChangeAvailability:
        return call_result.ChangeAvailability(**self._answer("ChangeAvailability", request))

    @on("ClearCache")
    def on_clear_cache(self, **request: Any) -> call_result.ClearCache:
        return call_result.ClearCache(**self._answer("ClearCache", request))

    @on("TriggerMessage")
    def on_trigger(self, **request: Any) -> call_result.TriggerMessage:
        return call_result.TriggerMessage(**self._answer("TriggerMessage", request))

    @on("DataTransfer")
    def on_data_transfer(self, **request: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(**self._answer("DataTransfer", request))

    @on("GetBaseReport")
    def on_get_base_report(self, **request: Any) -> call_result.GetBaseReport:
        return call_result.GetBaseReport(**self._answer("GetBaseReport", request))

    @on("GetReport")
    def on_get_report(self, **request: Any) -> call_result.GetReport:
        return call_result.GetReport(**self._answer("GetReport", request))

    @on("GetVariables")
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **extra: Any) -> call_result.GetVariables:
        answer = self._answer("GetVariables", {"get_variable_data": get_variable_data, **extra})
        if "get_variable_result" in answer:
            return call_result.GetVariables(**answer)
        results = []
        for item in get_variable_data:
            key = (item["component"]["name"], item["variable"]["name"])
            result: dict[str, Any] = {"component": item["component"], "variable": item["variable"]}
            if key in self.variables:
                result.update(attribute_status="Accepted", attribute_value=self.variables[key])
            else:
                result.update(attribute_status="UnknownVariable")
            results.append(result)
        return call_result.GetVariables(get_variable_result=results)

    @on("SetVariables")
    def on_set_variables(self, set_variable_data: list[dict[str, Any]], **extra: Any) -> call_result.SetVariables:
        answer = self._answer("SetVariables", {"set_variable_data": set_variable_data, **extra})
        if "set_variable_result" in answer:
            return call_result.SetVariables(**answer)
        results = []
        for item in set_variable_data:
            self.variables[(item["component"]["name"], item["variable"]["name"])] = item["attribute_value"]
            results.append({"attribute_status": "Accepted", "component": item["component"],
                            "variable": item["variable"]})
        return call_result.SetVariables(set_variable_result=results)

    # --- What the station sends ---------------------------------------------------------------

    async def boot(self, reason: str = "PowerUp", **station: Any) -> call_result.BootNotification:
        charging_station = {"model": "TestModel", "vendor_name": "TestVendor", **station}
        return await self.call(call.BootNotification(charging_station=charging_station, reason=reason))

    async def status(self, evse_id: int, status: str = "Available", connector_id: int = 1,
                     timestamp: str | None = None) -> call_result.StatusNotification:
        return await self.call(call.StatusNotification(timestamp=timestamp or now_iso(), connector_status=status,
                                                       evse_id=evse_id, connector_id=connector_id))

    async def authorize(self, token: str, token_type: str = "Central") -> call_result.Authorize:
        return await self.call(call.Authorize(id_token={"id_token": token, "type": token_type}))

    async def heartbeat(self) -> call_result.Heartbeat:
        return await self.call(call.Heartbeat())

    async def transaction_event(
        self, event_type: str, transaction_id: str, *, trigger_reason: str = "Authorized",
        seq_no: int | None = None, timestamp: str | None = None, evse_id: int | None = 1,
        token: str | None = None, token_type: str = "Central", meter_value: list[dict[str, Any]] | None = None,
        **info: Any,
    ) -> call_result.TransactionEvent:
        """A TransactionEvent; ``seq_no`` counts up by itself; ``info`` goes into transactionInfo
        (charging_state, stopped_reason, remote_start_id)."""
        if seq_no is None:
            seq_no, self.seq_no = self.seq_no, self.seq_no + 1
        extra: dict[str, Any] = {}
        if evse_id is not None:
            extra["evse"] = {"id": evse_id, "connector_id": 1}
        if token is not None:
            extra["id_token"] = {"id_token": token, "type": token_type}
        if meter_value is not None:
            extra["meter_value"] = meter_value
        return await self.call(call.TransactionEvent(
            event_type=event_type, timestamp=timestamp or now_iso(), trigger_reason=trigger_reason, seq_no=seq_no,
            transaction_info={"transaction_id": transaction_id, **info}, **extra))


def energy(wh: float, timestamp: str | None = None, context: str = "Sample.Periodic") -> dict[str, Any]:
    """One meterValue with the energy register (Wh)."""
    return {"timestamp": timestamp or now_iso(),
            "sampled_value": [{"value": wh, "context": context, "measurand": "Energy.Active.Import.Register",
                               "unit_of_measure": {"unit": "Wh"}}]}


class Connected:
    """A Station201 on its socket, serving in a task."""

    def __init__(self, cp: Station201, ws: Any, task: asyncio.Task) -> None:
        self.cp, self.ws, self.task = cp, ws, task

    async def close(self) -> None:
        self.task.cancel()
        await self.ws.close()


async def station201_factory(server: str) -> AsyncIterator[Callable[..., Awaitable[Station201]]]:
    """What the ``station201`` fixture yields: ``await make("cs1", password=..., boot=True)``."""
    opened: list[Connected] = []

    async def make(station_id: str = "cs201", *, password: str | None = None, boot: bool = True,
                   cls: type[Station201] = Station201, subprotocols: tuple[str, ...] = (SUBPROTOCOL,)) -> Station201:
        ws = await connect201(f"{server}/ocpp", station_id, password, subprotocols=subprotocols)
        cp = cls(station_id, ws)
        opened.append(Connected(cp, ws, asyncio.create_task(cp.start())))
        if boot:
            await cp.boot()
        return cp

    yield make
    for connected in opened:
        await connected.close()
