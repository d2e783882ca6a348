"""Shared fixtures: a live ASGI server over real sockets, chargers, services.

``server`` runs the real ASGI application under uvicorn inside the test's own
event loop, so a test shares its channel layer and database with the server
and can call the remote-command service directly. ``daphne_process`` starts
real daphne processes for the tests about several processes.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from channels.layers import channel_layers, get_channel_layer
from django.conf import settings

from bench._support import free_port  # noqa: F401 (tests import it from here)
from simulator.v16 import ChargerState, SimulatedCharger, connect

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"
# As in the Makefile: daphne's own message limit above the mobile API's.
DAPHNE_ARGS = ["--websocket-max-message-size", "4194304", "--websocket-max-frame-size", "4194304"]
REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip when a local service is missing - but fail in CI, where it must be there."""
    if _answers(host, port):
        return
    message = f"{name} does not answer on {host}:{port}"
    if IN_CI:
        pytest.fail(message + " (CI=true: tests that need it fail rather than skip)")
    pytest.skip(message)


@pytest.fixture(scope="session", autouse=True)
def close_orm_thread_connections(django_db_setup, django_db_blocker):
    """Service calls keep a persistent connection in asgiref's ORM thread; close it
    before pytest-django drops the test database (PostgreSQL refuses while it is open)."""
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    with django_db_blocker.unblock():
        SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return REDIS_TEST_URL


@pytest.fixture
def redis_layer(settings, redis_url) -> str:
    """Use Redis as this test's channel layer, under a prefix of its own; returns the prefix."""
    from csms.settings import redis_channel_layer

    prefix = f"csms-test-{uuid.uuid4().hex[:8]}"
    settings.CHANNEL_LAYERS = {"default": redis_channel_layer(redis_url, prefix)}
    channel_layers.backends.clear()
    return prefix


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """A new channel-layer instance per test: each test has its own event loop."""
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def fresh_lockouts():
    """Failed authentications of one test (all from 127.0.0.1) do not lock out the next."""
    from csms import lockout

    for budget in lockout.BUDGETS:
        budget.clear()
    yield


@pytest.fixture
def fast_settings(settings):
    settings.OCPP_ACTIVITY_FLUSH_SECONDS = 1
    settings.OCPP_COMMAND_TIMEOUT = 5
    settings.MOBILE_SESSION_CHECK_SECONDS = 0.2
    return settings


@pytest.fixture
async def server(transactional_db, fast_settings) -> AsyncIterator[str]:
    """The ASGI app on a real socket; yields ``ws://127.0.0.1:<port>``."""
    from mobileapi.snapshots import snapshot

    snapshot.invalidate()  # the database was flushed since the last test
    layer = get_channel_layer()
    if hasattr(layer, "flush"):
        await layer.flush()
    config = uvicorn.Config(
        "csms.asgi:application", host="127.0.0.1", port=0, lifespan="off", log_level="warning", ws="websockets-sansio"
    )
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve())
    while not uv.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = uv.servers[0].sockets[0].getsockname()[1]
    yield f"ws://127.0.0.1:{port}"
    uv.should_exit = True
    await asyncio.wait_for(task, 10)


@pytest.fixture
def keys(transactional_db) -> dict[str, str]:
    """Mobile API key personas: raw keys by role."""
    from mobileapi.services import create_api_key

    return {
        "full": create_api_key("App", ["read:stations", "write:charging"], raw_key="test-mobile-key-123")[1],
        "other": create_api_key("Other app", ["read:stations", "write:charging"])[1],
        "readonly": create_api_key("Map widget", ["read:stations"])[1],
        "charging": create_api_key("Kiosk", ["write:charging"])[1],
        "bound": create_api_key("Fleet", ["read:stations", "write:charging"], ["FLEET-1"])[1],
        "operator": create_api_key("Back office", ["read:stations", "operate:stations"])[1],
    }


@pytest.fixture
async def mobile(server, keys):
    """Connect authenticated mobile clients: ``await mobile("/ws")`` or ``mobile("/mobile-client", "other")``."""
    from mobileapi.client import MobileClient

    clients = []

    async def make(path: str = "/ws", persona: str | None = "full") -> MobileClient:
        client = await MobileClient.connect(server, path, keys[persona] if persona else None)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


class Charger:
    """A simulated charger connected to the server, with its socket and serve task."""

    def __init__(self, cp: SimulatedCharger, ws: Any, task: asyncio.Task) -> None:
        self.cp, self.ws, self.task = cp, ws, task

    @property
    def state(self) -> ChargerState:
        return self.cp.state

    async def close(self) -> None:
        self.task.cancel()
        for task in list(self.cp.tasks):
            task.cancel()
        await self.ws.close()


@pytest.fixture
async def charger_factory(server) -> AsyncIterator[Callable[..., Awaitable[Charger]]]:
    chargers: list[Charger] = []

    async def make(
        station_id: str = "fora072",
        *,
        connectors: int = 2,
        boot: bool = True,
        password: str | None = None,
        state: ChargerState | None = None,
        cls: type[SimulatedCharger] = SimulatedCharger,
        meter_interval: float = 0.2,
    ) -> Charger:
        state = state or ChargerState.new(station_id, connectors, meter_interval)
        ws = await connect(f"{server}/ocpp", station_id, password)
        cp = cls(state, ws)
        charger = Charger(cp, ws, asyncio.create_task(cp.start()))
        chargers.append(charger)
        if boot:
            await cp.boot()
        return charger

    yield make
    for charger in chargers:
        await charger.close()


@pytest.fixture
async def station201(server) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """OCPP 2.0.1 stations (tests/ocpp201.py): ``cp = await station201("cs1")`` connects and boots one."""
    from tests.ocpp201 import station201_factory

    async for make in station201_factory(server):
        yield make


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 5.0, interval: float = 0.05) -> Any:
    """Poll an async check until it returns a truthy value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value: {value!r})")
        await asyncio.sleep(interval)


def server_database_url() -> str:
    """A DATABASE_URL for server processes, pointing at the test database."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost/127.0.0.1, made for this run: (cert, key) PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def daphne_process(transactional_db):
    """Start real daphne processes on the test database; stopped at teardown."""
    processes: list[subprocess.Popen] = []

    def start(
        env: dict[str, str] | None = None, port: int | None = None, args: list[str] | None = None,
        app: str = "csms.asgi:application",
    ) -> tuple[str, subprocess.Popen]:
        port = port or free_port()
        full_env = {
            **os.environ,
            "DATABASE_URL": server_database_url(),
            "OCPP_ACTIVITY_FLUSH_SECONDS": "1",
            "LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", *DAPHNE_ARGS, "-b", "127.0.0.1", "-p", str(port), *(args or []), app],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.DEVNULL,
            # A file, not a pipe: an unread pipe fills up (64 KiB of log lines)
            # and then blocks the server on its next log write.
            stderr=(log := tempfile.TemporaryFile()),
        )
        processes.append(process)
        deadline = time.monotonic() + 20
        while not _answers("127.0.0.1", port):
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"daphne exited: {log.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("daphne did not start in 20 s")
            time.sleep(0.1)
        return f"ws://127.0.0.1:{port}", process

    yield start
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


async def http_json(server: str, method: str, path: str, key: str | None = None, body: dict | bytes | None = None):
    """(status, JSON body) of one request to the HTTP API of ``server`` (its ws:// URL).

    ``body``: a dict sent as JSON, or raw bytes sent as they are.
    """
    url = server.replace("ws://", "http://") + path
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if key:
        request.add_header("X-API-Key", key)

    def run():
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    return await asyncio.to_thread(run)
