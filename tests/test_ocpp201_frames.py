"""Malformed and schema-invalid frames from a 2.0.1 station get the OCPP-J 2.0.1 CALLERROR; the socket survives."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.ocpp201 import connect201

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def raw(server):
    ws = await connect201(f"{server}/ocpp", "raw201")
    yield ws
    await ws.close()


async def exchange(ws, frame: str) -> list:
    await ws.send(frame)
    return json.loads(await asyncio.wait_for(ws.recv(), 5))


HEARTBEAT = '[2,"hb","Heartbeat",{}]'
BOOT = '{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}'


@pytest.mark.parametrize("frame", ["hello", "[]", "{}", "[2]", "[2, 17]", "null"])
async def test_unreadable_frames_get_no_answer(raw, frame):
    await raw.send(frame)
    assert (await exchange(raw, HEARTBEAT))[:2] == [3, "hb"]


@pytest.mark.parametrize(
    "frame, code",
    [
        ('[2,"u1"]', "RpcFrameworkError"),  # not a valid RPC request (1.6J: ProtocolError)
        ('[2,"u1","Heartbeat",{},"extra"]', "FormatViolation"),
        ('[2,"u1","Heartbeat","not an object"]', "FormatViolation"),
        ('[9,"u1","Heartbeat",{}]', "MessageTypeNotSupported"),
        ('[2,"u1","BootNotification",{"reason":"PowerUp","chargingStation":{"model":1,"vendorName":"V"}}]',
         "TypeConstraintViolation"),
        ('[2,"u1","BootNotification",{"reason":"PowerUp"}]', "OccurrenceConstraintViolation"),
        ('[2,"u1","BootNotification",{"reason":"Bored","chargingStation":{"model":"M","vendorName":"V"}}]',
         "FormatViolation"),
        ('[2,"u1","StatusNotification",{"timestamp":"2026-12-01T10:00:00Z","connectorStatus":"Available",'
         '"evseId":1,"connectorId":1,"x":1}]', "FormatViolation"),
        ('[2,"u1","NoSuchAction",{}]', "NotImplemented"),
        ('[2,"u1","GetVariables",{"getVariableData":[]}]', "NotSupported"),  # a CSMS-to-station action
        ('[2,"u1", broken json', "FormatViolation"),
    ],
)
async def test_bad_calls_get_the_named_callerror_and_the_socket_lives(raw, frame, code):
    reply = await exchange(raw, frame)
    assert reply[0] == 4 and reply[1] == "u1" and isinstance(reply[3], str) and isinstance(reply[4], dict)
    assert reply[2] == code, reply
    assert (await exchange(raw, HEARTBEAT))[:2] == [3, "hb"]


async def test_oversized_frame_is_refused_with_its_id(raw):
    reply = await exchange(raw, '[2,"big","DataTransfer",{"vendorId":"x","data":"' + "x" * 300_000 + '"}]')
    assert reply[:3] == [4, "big", "FormatViolation"]
    assert (await exchange(raw, HEARTBEAT))[:2] == [3, "hb"]


async def test_deeply_nested_payload_is_refused(raw):
    reply = await exchange(raw, '[2,"deep","DataTransfer",{"vendorId":"x","data":' + "[" * 100 + "]" * 100 + "}]")
    assert reply[:3] == [4, "deep", "FormatViolation"]
    assert (await exchange(raw, HEARTBEAT))[:2] == [3, "hb"]


async def test_stray_call_result_is_ignored(raw):
    await raw.send('[3,"nobody-asked",{}]')
    await raw.send('[4,"nobody-asked","GenericError","",{}]')
    assert (await exchange(raw, HEARTBEAT))[:2] == [3, "hb"]


async def test_impossible_timestamp_is_a_property_violation(raw):
    assert (await exchange(raw, f'[2,"b","BootNotification",{BOOT}]'))[0] == 3
    frame = ('[2,"u1","StatusNotification",{"timestamp":"2026-13-45T10:00:00Z","connectorStatus":"Available",'
             '"evseId":1,"connectorId":1}]')
    reply = await exchange(raw, frame)
    assert reply[:3] == [4, "u1", "PropertyConstraintViolation"], reply
