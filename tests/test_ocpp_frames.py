"""Malformed and schema-invalid frames get the OCPP-J 1.6 CALLERROR; the socket survives."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from stations.models import Station

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def raw(server):
    ws = await websockets.connect(f"{server}/ocpp/rawcp", subprotocols=["ocpp1.6"])
    yield ws
    await ws.close()


async def exchange(ws, frame: str) -> list:
    await ws.send(frame)
    return json.loads(await asyncio.wait_for(ws.recv(), 5))


HEARTBEAT = '[2,"hb","Heartbeat",{}]'


@pytest.mark.parametrize("frame", ["hello", "[]", "{}", '{"a":1}', "[2]", "[2, 17]", "null"])
async def test_unreadable_frames_get_no_answer(raw, frame):
    await raw.send(frame)
    reply = await exchange(raw, HEARTBEAT)
    assert reply[:2] == [3, "hb"], reply


@pytest.mark.parametrize(
    "frame, code",
    [
        ('[2,"u1"]', "ProtocolError"),
        ('[2,"u1","Heartbeat"]', "ProtocolError"),
        ('[2,"u1","Heartbeat",{},"extra"]', "FormationViolation"),
        ('[2,"u1","Heartbeat","not an object"]', "FormationViolation"),
        ('[2,"u1",42,{}]', "FormationViolation"),
        ('[9,"u1","Heartbeat",{}]', "FormationViolation"),
        ('[2,"u1","BootNotification",{"chargePointVendor":1,"chargePointModel":"M"}]', "TypeConstraintViolation"),
        ('[2,"u1","BootNotification",{"chargePointVendor":"V"}]', "ProtocolError"),
        ('[2,"u1","BootNotification",{"chargePointVendor":"V","chargePointModel":"M","x":1}]', "FormationViolation"),
        ('[2,"u1","BootNotification",{"chargePointVendor":"' + "V" * 30 + '","chargePointModel":"M"}]',
         "TypeConstraintViolation"),
        ('[2,"u1","NoSuchAction",{}]', "NotSupported"),
        ('[2,"u1","GetConfiguration",{}]', "NotImplemented"),  # a CSMS->charger action
        ('[2,"u1", broken json', "FormationViolation"),
    ],
)
async def test_bad_calls_get_the_named_callerror_and_the_socket_lives(raw, frame, code):
    reply = await exchange(raw, frame)
    assert reply[0] == 4 and reply[1] == "u1" and reply[2] == code, reply
    assert isinstance(reply[3], str) and isinstance(reply[4], dict)
    assert (await exchange(raw, HEARTBEAT))[:2] == [3, "hb"]


async def test_oversized_frame_is_refused_with_its_id(raw):
    reply = await exchange(raw, '[2,"big","DataTransfer",{"vendorId":"x","data":"' + "x" * 300_000 + '"}]')
    assert reply[:3] == [4, "big", "FormationViolation"]
    assert (await exchange(raw, HEARTBEAT))[:2] == [3, "hb"]


async def test_stray_call_result_is_ignored(raw):
    await raw.send('[3,"nobody-asked",{}]')
    await raw.send('[4,"nobody-asked","GenericError","",{}]')
    assert (await exchange(raw, HEARTBEAT))[:2] == [3, "hb"]


async def test_impossible_timestamp_is_a_property_violation_not_an_internal_error(raw):
    frame = '[2,"u1","StartTransaction",{"connectorId":1,"idTag":"T","meterStart":0,"timestamp":"2026-13-45T10:00:00Z"}]'
    reply = await exchange(raw, frame)
    assert reply[:3] == [4, "u1", "PropertyConstraintViolation"], reply
    assert "timestamp" in reply[3]
    assert (await exchange(raw, HEARTBEAT))[:2] == [3, "hb"]
    assert await Station.objects.filter(pk="rawcp", is_online=True).aexists()
