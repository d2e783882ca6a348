"""Golden transcripts of the mobile API, replayed against a live server on both endpoints.

Each ``tests/transcripts/<scenario>.json`` holds the frames an app sends
(``steps[].send``) and, per endpoint (``/ws`` and ``/mobile-client``), every
frame the server sent back for each step (``expect``): the reply and the
pushes. The test replays the sends over a real WebSocket against the
``server`` fixture (uvicorn in-process, a simulated charger from
``charger_factory`` where the scenario has one) and compares what comes back
with the golden frames, so a change of the wire format - a field renamed, a
type changed (``28`` -> ``28.0``), an error code or message changed - fails.
The reference in docs/mobile-api.md §4 shows these transcripts as its examples
(``manage.py mobile_reference``), so the examples are the wire format.

What is compared:

- Volatile values are normalised before comparing (``normalise``): ISO times
  become ``"<time>"``; integer ``ts`` fields ``"<ms>"``; 13-digit millisecond
  stamps inside strings (``sess-<ms>``, ``corr-<ms>-fora072-1``,
  ``sub-<ms>-001``) ``<ms>``; event ids ``evt-<ms>-<seq>``; measured numbers
  (``energy``, ``power``, ``cost``, ...) ``"<int>"`` or ``"<float>"`` by their
  JSON type, so the type is still checked; transaction ids are renumbered
  1, 2, ... in order of first appearance, keeping their JSON type (integer on
  ``/ws``, string on ``/mobile-client``).
- The reply is compared exactly. Pushes are compared per event kind, in order
  within a kind. What the protocol guarantees: one reply per request, with the
  request's id; the events of one charger reach a connection in the order they
  were recorded. What it does not: the order of a reply and the pushes of the
  same command (``remote.start.result`` and the connector's ``Preparing`` race,
  and on ``/mobile-client`` the ``startCharging`` reply may follow them), nor
  the order of events of different kinds recorded concurrently.

A request template may refer to an earlier raw reply: ``"{{3:result.events.0.eventId}}"``
is that field of step 3's reply, as received (before normalising). A
``transactionId`` in a request is a renumbered one and is mapped back to the
real id. ``"pad": N`` in a step adds a ``pad`` param of N characters (for 413).
The rate limits are lifted except where a transcript's ``setup.settings`` sets
them (ratelimit.json), since replays send as fast as they can.

Re-record after a deliberate change of the wire format (then regenerate the
reference and read the diff of both before committing):

    TRANSCRIPTS_RECORD=1 CSMS_TEST_SQLITE=/tmp/me/t.sqlite3 .venv/bin/python -m pytest -q tests/test_transcripts.py
    .venv/bin/python manage.py mobile_reference

Recording collects, for each step, the reply, the pushes named in the step's
``await`` and whatever else arrives within 0.3 s after them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import websockets
from ocpp.exceptions import InternalError
from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from simulator.v16 import SimulatedCharger
from tests.conftest import eventually

TRANSCRIPTS = Path(__file__).resolve().parent / "transcripts"
ENDPOINTS = ("ws", "mobile-client")
RECORD = os.environ.get("TRANSCRIPTS_RECORD", "") not in ("", "0")
SETTLE = 0.3  # recording: how long to wait for more pushes after the awaited ones
TIMEOUT = 10.0
READONLY_KEY = "map-widget-key-readonly"
FLEET_KEY = "fleet-key-bound-to-FLEET-1"

ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
EVENT_ID = re.compile(r"^evt-\d{13}-\d+$")
MILLIS = re.compile(r"(?<!\d)\d{13}(?!\d)")
REFERENCE = re.compile(r"^\{\{(\d+):([^}]+)\}\}$")
# Readings and amounts that differ from run to run: only their JSON type is golden.
MEASURED = {"energy", "power", "current", "voltage", "soc", "register", "meterStart", "totalKWh", "cost",
            "duration", "delta", "total", "retryAfterMs"}


class RejectingCharger(SimulatedCharger):
    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag, connector_id=None, charging_profile=None):
        return call_result.RemoteStartTransaction(status="Rejected")


class FailingCharger(SimulatedCharger):
    """Answers RemoteStartTransaction with a CALLERROR."""

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag, connector_id=None, charging_profile=None):
        raise InternalError(description="Relay welded")


class SilentCharger(SimulatedCharger):
    """Never answers RemoteStartTransaction."""

    async def route_message(self, raw_msg):
        if "RemoteStartTransaction" not in raw_msg:
            await super().route_message(raw_msg)


CHARGERS = {"simulator": SimulatedCharger, "rejecting": RejectingCharger, "failing": FailingCharger,
            "silent": SilentCharger}


class Normaliser:
    """Turns frames into their golden form; remembers the transaction ids it renumbered."""

    def __init__(self) -> None:
        self.transactions: dict[int, int] = {}  # real id -> renumbered

    def __call__(self, value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            return {k: self(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self(item, key) for item in value]
        if isinstance(value, bool) or value is None:
            return value
        if key == "transactionId" and (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
            number = self.transactions.setdefault(int(value), len(self.transactions) + 1)
            return number if isinstance(value, int) else str(number)
        if isinstance(value, (int, float)):
            if key in MEASURED:
                return "<int>" if isinstance(value, int) else "<float>"
            if key == "ts" and isinstance(value, int):
                return "<ms>"
            return value
        if isinstance(value, str):
            if ISO_TIME.match(value):
                return "<time>"
            if EVENT_ID.match(value):
                return "evt-<ms>-<seq>"
            return MILLIS.sub("<ms>", value)
        return value

    def real_transaction(self, value: Any) -> Any:
        for real, number in self.transactions.items():
            if str(number) == str(value):
                return real if isinstance(value, int) else str(real)
        return value  # a literal (an unknown transaction)


def _lookup(frame: Any, path: str) -> Any:
    for part in path.split("."):
        frame = frame[int(part)] if isinstance(frame, list) else frame[part]
    return frame


def render_request(template: Any, replies: list[dict | None], normaliser: Normaliser, key: str | None = None) -> Any:
    """The frame to send: references resolved, renumbered transaction ids mapped back."""
    if isinstance(template, dict):
        return {k: render_request(v, replies, normaliser, k) for k, v in template.items()}
    if isinstance(template, list):
        return [render_request(item, replies, normaliser, key) for item in template]
    if isinstance(template, str):
        match = REFERENCE.match(template)
        if match:
            return _lookup(replies[int(match.group(1))], match.group(2))
    if key == "transactionId":
        return normaliser.real_transaction(template)
    return template


def is_reply(frame: dict) -> bool:
    return "event" not in frame


def by_kind(frames: list[dict]) -> dict[str, list[dict]]:
    """Replies under "reply", pushes under their event name, each in arrival order."""
    kinds: dict[str, list[dict]] = {}
    for frame in frames:
        kinds.setdefault("reply" if is_reply(frame) else frame["event"], []).append(frame)
    return kinds


def load(name: str) -> dict:
    return json.loads((TRANSCRIPTS / f"{name}.json").read_text())


def scenarios() -> list[str]:
    return sorted(path.stem for path in TRANSCRIPTS.glob("*.json"))


def cases() -> list[Any]:
    return [
        pytest.param(name, endpoint, id=f"{name}-{endpoint}")
        for name in scenarios()
        for endpoint in load(name).get("endpoints", ENDPOINTS)
    ]


@pytest.fixture
def transcript_keys(transactional_db) -> None:
    from mobileapi.services import create_api_key

    create_api_key("App", ["read:stations", "write:charging"], raw_key="test-mobile-key-123")
    create_api_key("Map widget", ["read:stations"], raw_key=READONLY_KEY)
    create_api_key("Fleet", ["read:stations", "write:charging"], ["FLEET-1"], raw_key=FLEET_KEY)


async def _station_ready(server: str, station_id: str, connectors: int) -> None:
    """Wait until the charger's boot is recorded, so snapshots are the same every run."""
    from mobileapi.client import MobileClient

    client = await MobileClient.connect(server, "/ws", "test-mobile-key-123")
    try:
        async def ready() -> bool:
            stations = await client.result("getStations")
            return any(
                s["id"] == station_id and s["isOnline"] and s["lastActivity"] and len(s["connectors"]) == connectors
                and all(c["updatedAt"] for c in s["connectors"])
                for s in stations
            )

        await eventually(ready, timeout=TIMEOUT)
    finally:
        await client.close()


async def _collect(ws: Any, request_id: Any, expected: list[dict] | None, awaited: list[str]) -> list[dict]:
    """The frames answering one step: until the reply and the pushes expected (replay) or awaited (record)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    frames: list[dict] = []
    if expected is not None:
        wanted = {kind: len(items) for kind, items in by_kind(expected).items()}
    else:
        wanted = {"reply": 1}
        for name in awaited:
            wanted[name] = wanted.get(name, 0) + 1

    def complete() -> bool:
        got = by_kind(frames)
        return all(len(got.get(kind, [])) >= count for kind, count in wanted.items())

    while not complete():
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"within {TIMEOUT} s got {[f.get('event', 'reply') for f in frames]}, "
                                 f"wanted {wanted}")
        try:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), remaining)))
        except TimeoutError:
            continue
    if expected is None:  # recording: whatever else this step causes
        while True:
            try:
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), SETTLE)))
            except TimeoutError:
                break
    replies = [f for f in frames if is_reply(f)]
    assert [r.get("id") for r in replies] == [request_id], f"one reply with id {request_id!r}: {replies}"
    return frames


async def _setup(spec: dict, charger_factory: Any, server: str, settings: Any) -> None:
    from stations.models import Tariff

    # A transcript sends as fast as it can: only ratelimit.json is about the rate limit.
    unlimited = {"MOBILE_WS_RATE_LIMIT": "1000/1", "MOBILE_CLIENT_RATE_LIMIT": "1000/1"}
    for name, value in {**unlimited, **spec.get("settings", {})}.items():
        setattr(settings, name, value)
    if spec.get("tariff", True):
        await Tariff.objects.acreate(name="Standard", price_per_kwh=Decimal("0.10"), currency="EUR", is_default=True)
    for charger in [spec["charger"]] if "charger" in spec else spec.get("chargers", []):
        await charger_factory(charger["id"], connectors=charger["connectors"],
                              meter_interval=charger.get("meterInterval", 600),
                              cls=CHARGERS[charger.get("class", "simulator")])
        await _station_ready(server, charger["id"], charger["connectors"])


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("name", "endpoint"), cases())
async def test_transcript(name, endpoint, server, charger_factory, transcript_keys, settings):
    transcript = load(name)
    await _setup(transcript.get("setup", {}), charger_factory, server, settings)
    normaliser = Normaliser()
    replies: list[dict | None] = []
    recorded: list[list[dict]] = []
    ws = await websockets.connect(f"{server}/{endpoint}", max_size=None)
    try:
        for index, step in enumerate(transcript["steps"]):
            if "sleep" in step:
                await asyncio.sleep(step["sleep"])
                replies.append(None)
                recorded.append([])
                continue
            frame = render_request(step["send"], replies, normaliser)
            if "pad" in step:
                frame.setdefault("params", {})["pad"] = "x" * step["pad"]
            await ws.send(frame if isinstance(frame, str) else json.dumps(frame))
            request_id = frame.get("id") if isinstance(frame, dict) else step.get("replyId")
            expected = None if RECORD else step["expect"][endpoint]
            frames = await _collect(ws, request_id, expected, step.get("await", []))
            replies.append(next(f for f in frames if is_reply(f)))
            got = [normaliser(f) for f in frames]
            recorded.append(got)
            if not RECORD:
                where = f"{name}.json step {index} ({json.dumps(step['send'])[:80]}) on /{endpoint}"
                assert by_kind(got) == by_kind(expected), (
                    f"{where}: the server's frames differ from the golden transcript.\n"
                    f"got:      {json.dumps(got)}\nexpected: {json.dumps(expected)}\n"
                    "If the wire format changed on purpose, re-record (see this module's docstring), "
                    "regenerate the reference (manage.py mobile_reference) and document the change."
                )
    finally:
        await ws.close()
    if RECORD:
        transcript = load(name)  # the other endpoint's run may have written it meanwhile
        for step, frames in zip(transcript["steps"], recorded, strict=True):
            if "send" in step:
                step.setdefault("expect", {})[endpoint] = frames
        (TRANSCRIPTS / f"{name}.json").write_text(json.dumps(transcript, indent=1, ensure_ascii=False) + "\n")


def test_every_action_has_a_transcript():
    """Each registered action is exercised by at least one golden transcript, so its reference has an example."""
    import mobileapi.actions  # noqa: F401  (registers them)
    from mobileapi.registry import ACTIONS

    sent = {step["send"].get("action") for name in scenarios() for step in load(name)["steps"]
            if isinstance(step.get("send"), dict)}
    assert set(ACTIONS) - sent == set()


@pytest.mark.django_db(transaction=True)
async def test_an_auth_during_a_session_check_is_not_taken_for_a_revoked_key(server, transcript_keys, settings):
    """Found by these transcripts (a 4003 close in 2 of 19 recordings): the session watcher
    asked the database about the keys of the connections it saw, and a connection that
    authenticated while it waited was judged by a key it had not asked about - "revoked",
    closed with 4003. Switching keys as fast as possible under a fast watcher reproduces it."""
    settings.MOBILE_SESSION_CHECK_SECONDS = 0.005
    settings.MOBILE_WS_RATE_LIMIT = "1000/1"
    ws = await websockets.connect(f"{server}/ws")
    try:
        for n in range(150):
            key = READONLY_KEY if n % 2 else "test-mobile-key-123"
            await ws.send(json.dumps({"id": n, "action": "auth", "params": {"apiKey": key}}))
            while True:  # a session.expired push would come first; the close raises here
                frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                if frame.get("id") == n:
                    break
                assert frame.get("event") != "session.expired", frame
            assert frame.get("result", {}).get("status") == "ok", frame
    finally:
        await ws.close()
