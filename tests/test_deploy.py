"""The deployment guide's files (deploy/), checked with the real tools.

- nginx: `nginx -t` on deploy/nginx/, then a live nginx with that config
  terminating TLS in front of two daphne processes (Debian's nginx; `make
  test` installs it).
- systemd: `systemd-analyze verify` on deploy/systemd/ (where systemd is).
- The environment file: production mode starts with it, `check --deploy`
  finds nothing, and `csms-manage` runs commands with it.
- docs/deployment.md names every file in deploy/, and every file it names
  exists; every setting the code reads is in the README's table.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import secrets
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import websockets

from csms.events import call_service
from mobileapi.client import MobileClient
from simulator.v16 import ChargerState, SimulatedCharger, basic_auth_header, connect
from stations import services
from stations.models import Station
from tests.conftest import IN_CI, REDIS_TEST_URL, ROOT, _answers, free_port, server_database_url
from tests.ocpp201 import Station201, connect201

DEPLOY = ROOT / "deploy"
PASSWORD = "a-long-station-password-02"


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if found:
        return found
    if IN_CI:
        pytest.fail("nginx is missing (make test installs Debian's nginx; CI=true: fail rather than skip)")
    pytest.skip("nginx is not installed (make test installs it)")


def nginx_config(folder: Path, cert: Path, key: Path, *, http_port: int = 80, https_port: int = 443,
                 mtls_port: int = 8443, client_ca: Path | None = None, upstreams: list[int] | None = None) -> Path:
    """deploy/nginx/ as installed on a host, under ``folder``, with this run's certificate,
    ports, stations' CA (default: the server certificate) and upstream processes; returns
    the main nginx.conf that includes it."""
    proxy = folder / "csms-proxy.conf"
    shutil.copy(DEPLOY / "nginx" / "csms-proxy.conf", proxy)
    site = (DEPLOY / "nginx" / "csms.conf").read_text()
    site = site.replace("/etc/nginx/snippets/csms-proxy.conf", str(proxy))
    site = site.replace("/etc/ssl/csms/fullchain.pem", str(cert)).replace("/etc/ssl/csms/privkey.pem", str(key))
    site = site.replace("/etc/ssl/csms/stations-ca.pem", str(client_ca or cert))
    site = re.sub(r"\n\s*listen \[::\]:\d+[^;]*;", "", site)  # IPv6 may be off in a sandbox
    site = site.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    site = site.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")
    site = site.replace("listen 8443 ssl;", f"listen 127.0.0.1:{mtls_port} ssl;")
    if upstreams is not None:
        site = re.sub(r"\n    server 127\.0\.0\.1:\d+;", "", site)
        servers = "".join(f"\n    server 127.0.0.1:{port};" for port in upstreams)
        site = site.replace("    least_conn;", "    least_conn;" + servers)
    (folder / "csms.conf").write_text(site)
    main = folder / "nginx.conf"
    main.write_text(f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
daemon off;
events {{ worker_connections 256; }}
http {{
    access_log {folder}/access.log;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    include {folder}/csms.conf;
}}
""")
    return main


def test_nginx_config_is_valid(tmp_path, tls_certificate):
    nginx = nginx_binary()
    main = nginx_config(tmp_path, *tls_certificate)
    done = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(main)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


def request(url: str, context=None, **headers: str) -> tuple[int, dict[str, str], bytes]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    handlers = [NoRedirect(), urllib.request.HTTPSHandler(context=context)]
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture
def behind_nginx(tmp_path, tls_certificate, redis_layer, daphne_process):
    """Two daphne processes (profile 2 required) behind a live nginx running deploy/nginx/:
    yields (http://, https://) base URLs of nginx."""
    nginx = nginx_binary()
    env = {"REDIS_URL": REDIS_TEST_URL, "CHANNEL_PREFIX": redis_layer, "BEHIND_PROXY": "true",
           "OCPP_REQUIRE_TLS": "true", "OCPP_REQUIRE_AUTH": "true", "MOBILE_REQUIRE_TLS": "true"}
    ports = [free_port(), free_port()]
    for port in ports:
        daphne_process(env, port=port, args=["--proxy-headers"])
    http_port, https_port = free_port(), free_port()
    main = nginx_config(tmp_path, *tls_certificate, http_port=http_port, https_port=https_port,
                        mtls_port=free_port(), upstreams=ports)
    server = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(main)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not (_answers("127.0.0.1", http_port) and _answers("127.0.0.1", https_port)):
        assert server.poll() is None, server.stderr.read().decode()
        assert time.monotonic() < deadline, "nginx did not start"
        time.sleep(0.05)
    yield f"127.0.0.1:{http_port}", f"127.0.0.1:{https_port}"
    server.terminate()
    server.wait(10)


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_behind_nginx_wss_for_chargers_and_apps_plain_refused(behind_nginx, tls_certificate, keys):
    import ssl

    plain, tls = behind_nginx
    trust = ssl.create_default_context(cafile=str(tls_certificate[0]))
    await Station.objects.acreate(pk="nginx1")
    await call_service(services.set_station_password, "nginx1", PASSWORD)

    # A charger over plain ws:// reaches the CSMS through nginx's port 80 and is
    # refused there, even when it claims TLS itself (nginx overwrites the header).
    for claim in ({}, {"X-Forwarded-Proto": "https"}):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"ws://{plain}/ocpp/nginx1", subprotocols=["ocpp1.6"],
                                     additional_headers={**basic_auth_header("nginx1", PASSWORD), **claim})
        assert refused.value.response.status_code == 403

    # Over wss:// with its password: served.
    ws = await connect(f"wss://{tls}/ocpp", "nginx1", PASSWORD, ssl=trust)
    cp = SimulatedCharger(ChargerState.new("nginx1", 1, meter_interval=0.3), ws)
    serving = asyncio.create_task(cp.start())
    app = None
    try:
        assert await cp.boot() == "Accepted"
        # An app over wss:// (on whichever process nginx picked) starts a session on it.
        app = await MobileClient.connect(f"wss://{tls}", "/mobile-client", keys["full"], ssl=trust)
        start = await app.result("startCharging", {"stationId": "nginx1", "connectorId": 1, "idTag": "N1"})
        assert start["status"] == "Accepted"
        await app.event("transaction.started", correlationId=start["correlationId"])
        with pytest.raises((websockets.WebSocketException, OSError)):
            await MobileClient.connect(f"ws://{plain}", "/ws")  # redirected to https, never served
        # HTTP: redirected to HTTPS; the API over HTTPS; /metrics not exposed.
        status, headers, _ = await asyncio.to_thread(request, f"http://{plain}/admin/")
        assert status == 301 and headers["Location"] == "https://127.0.0.1/admin/"
        status, headers, body = await asyncio.to_thread(request, f"https://{tls}/api/ready", trust)
        assert status == 200 and b'"ready"' in body
        assert headers["Strict-Transport-Security"] == "max-age=31536000"
        status, _, _ = await asyncio.to_thread(request, f"https://{tls}/api/stations", trust,
                                               **{"X-API-Key": keys["full"]})
        assert status == 200
        status, _, _ = await asyncio.to_thread(request, f"https://{tls}/metrics", trust)
        assert status == 404
    finally:
        if app is not None:
            await app.close()
        serving.cancel()
        for task in list(cp.tasks):
            task.cancel()
        await ws.close()


# --- Security profile 3: client certificates verified by nginx ------------------------------

class StationPki:
    """A stations' CA made for this run, issuing charger certificates (CN = station id)."""

    def __init__(self, folder: Path, name: str = "Test stations CA") -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = folder / "stations-ca.pem"
        self.ca_file.write_bytes(self.cert.public_bytes(_pem()))

    def client_context(self, common_name: str, trust: Path) -> ssl.SSLContext:
        """What a charger with a certificate for ``common_name`` (signed by this CA) connects with."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                             x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test CPO")])
        cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(self.name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        stem = self.folder / f"{secrets.token_hex(4)}-{common_name}"
        cert_file, key_file = stem.with_suffix(".crt"), stem.with_suffix(".key")
        cert_file.write_bytes(cert.public_bytes(_pem()))
        key_file.write_bytes(key.private_bytes(_pem(), serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        context = ssl.create_default_context(cafile=str(trust))
        context.load_cert_chain(str(cert_file), str(key_file))
        return context


def _pem():
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.PEM


@pytest.fixture
def station_pki(tmp_path_factory) -> StationPki:
    return StationPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def nginx_mtls(tmp_path, tls_certificate, station_pki, daphne_process):
    """Starts one daphne (with ``env`` over profiles 2 and 3 required: TLS, authentication,
    the certificate headers trusted) behind a live nginx running deploy/nginx/ with this run's
    stations' CA; returns (plain address, TLS address, client-certificate address)."""
    nginx = nginx_binary()
    servers: list[subprocess.Popen] = []

    def start(env: dict[str, str] | None = None) -> tuple[str, str, str]:
        port = free_port()
        daphne_process({"BEHIND_PROXY": "true", "OCPP_CLIENT_CERT_HEADERS": "true", "OCPP_REQUIRE_TLS": "true",
                        "OCPP_REQUIRE_AUTH": "true", "OCPP_UNKNOWN_STATIONS": "reject", "AUTH_FAILURE_LIMIT": "3",
                        **(env or {})}, port=port, args=["--proxy-headers"])
        http_port, https_port, mtls_port = free_port(), free_port(), free_port()
        main = nginx_config(tmp_path, *tls_certificate, http_port=http_port, https_port=https_port,
                            mtls_port=mtls_port, client_ca=station_pki.ca_file, upstreams=[port])
        server = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(main)], stderr=subprocess.PIPE)
        servers.append(server)
        deadline = time.monotonic() + 10
        while not all(_answers("127.0.0.1", p) for p in (http_port, https_port, mtls_port)):
            assert server.poll() is None, server.stderr.read().decode()
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
        return f"127.0.0.1:{http_port}", f"127.0.0.1:{https_port}", f"127.0.0.1:{mtls_port}"

    yield start
    for server in servers:
        server.terminate()
        server.wait(10)


@pytest.fixture
def behind_nginx_mtls(nginx_mtls):
    """Profiles 2 and 3 required behind nginx: yields (TLS address, client-certificate address)."""
    _, tls, mtls = nginx_mtls()
    return tls, mtls


async def handshake_refused(url: str, **kwargs) -> int:
    """The HTTP status nginx or the CSMS refused a WebSocket handshake with."""
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url, **kwargs)
    return refused.value.response.status_code


@pytest.mark.django_db(transaction=True)
async def test_tc_a_07_profile_3_behind_nginx_for_both_versions(
    behind_nginx_mtls, tls_certificate, station_pki, tmp_path_factory
):
    """TC_A_07_CSMS (and TC_087 for 1.6): a charger's certificate whose CN is its id lets it in
    without a password; another station's certificate, none, or another CA's is refused."""
    tls, mtls = behind_nginx_mtls
    trust = tls_certificate[0]
    await Station.objects.acreate(pk="mtls16")  # no password: its certificate is its only credential
    await Station.objects.acreate(pk="mtls201")
    await call_service(services.set_station_password, "mtls201", PASSWORD)

    ws16 = await connect(f"wss://{mtls}/ocpp", "mtls16", ssl=station_pki.client_context("mtls16", trust))
    cp16 = SimulatedCharger(ChargerState.new("mtls16", 1), ws16)
    ws201 = await connect201(f"wss://{mtls}/ocpp", "mtls201", ssl=station_pki.client_context("mtls201", trust))
    cp201 = Station201("mtls201", ws201)
    serving = [asyncio.create_task(cp16.start()), asyncio.create_task(cp201.start())]
    try:
        assert ws16.subprotocol == "ocpp1.6" and ws201.subprotocol == "ocpp2.0.1"
        assert await cp16.boot() == "Accepted"
        assert (await cp201.boot()).status == "Accepted"  # its password was not needed
        assert {s.pk async for s in Station.objects.filter(is_online=True)} == {"mtls16", "mtls201"}
    finally:
        for task in serving:
            task.cancel()
        await ws16.close()
        await ws201.close()

    # The 2.0.1 station's password still works on the TLS port (profile 2): certificate OR password.
    ws = await connect201(f"wss://{tls}/ocpp", "mtls201", PASSWORD, ssl=ssl.create_default_context(cafile=str(trust)))
    await ws.close()
    # nginx's headers sent by a client on the TLS port are overwritten: mtls16 has no password, so refused.
    claimed = {"X-SSL-Client-Verify": "SUCCESS", "X-SSL-Client-S-DN": "CN=mtls16"}
    assert await handshake_refused(f"wss://{tls}/ocpp/mtls16", subprotocols=["ocpp2.0.1"], additional_headers=claimed,
                                   ssl=ssl.create_default_context(cafile=str(trust))) == 403
    # No certificate, or one another CA signed: nginx refuses (400) before the CSMS sees anything.
    assert await handshake_refused(f"wss://{mtls}/ocpp/mtls16", subprotocols=["ocpp1.6"],
                                   ssl=ssl.create_default_context(cafile=str(trust))) == 400
    rogue = StationPki(tmp_path_factory.mktemp("rogue"), "Rogue CA")
    assert await handshake_refused(f"wss://{mtls}/ocpp/mtls16", subprotocols=["ocpp1.6"],
                                   ssl=rogue.client_context("mtls16", trust)) == 400
    # Another station's certificate: refused by the CSMS (403) and counted like a wrong password:
    # after AUTH_FAILURE_LIMIT (3) of them the address is locked out, its own certificate included.
    other = station_pki.client_context("mtls201", trust)
    for _ in range(3):
        assert await handshake_refused(f"wss://{mtls}/ocpp/mtls16", subprotocols=["ocpp1.6"], ssl=other) == 403
    assert not await Station.objects.filter(is_online=True).aexists()
    assert await handshake_refused(f"wss://{mtls}/ocpp/mtls16", subprotocols=["ocpp1.6"],
                                   ssl=station_pki.client_context("mtls16", trust)) == 429


@pytest.mark.django_db(transaction=True)
async def test_certificate_headers_a_client_sends_on_port_80_are_dropped(nginx_mtls):
    """On port 80 nginx has no client certificate: its empty $ssl_client_verify drops the header,
    the client's own included. Plain ws:// allowed here (OCPP_REQUIRE_TLS=false), so that the
    CSMS would read the headers if they got through."""
    plain, _, _ = nginx_mtls({"OCPP_REQUIRE_TLS": "false"})
    await Station.objects.acreate(pk="mtls16")  # no password
    await Station.objects.acreate(pk="mtls201")
    await call_service(services.set_station_password, "mtls201", PASSWORD)
    for station_id in ("mtls16", "mtls201"):
        claimed = {"X-SSL-Client-Verify": "SUCCESS", "X-SSL-Client-S-DN": f"CN={station_id}"}
        assert await handshake_refused(f"ws://{plain}/ocpp/{station_id}", subprotocols=["ocpp1.6"],
                                       additional_headers=claimed) == 403
    # Beside the right password, another station's claimed certificate is not seen: in.
    claimed = {"X-SSL-Client-Verify": "SUCCESS", "X-SSL-Client-S-DN": "CN=mtls16"}
    ws = await websockets.connect(f"ws://{plain}/ocpp/mtls201", subprotocols=["ocpp1.6"],
                                  additional_headers={**claimed, **basic_auth_header("mtls201", PASSWORD)})
    await ws.close()
    assert not await Station.objects.filter(pk="mtls16", is_online=True).aexists()


def test_systemd_units_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not available here")
    env_file = tmp_path / "csms.env"
    env_file.write_text("CSMS_BIND_ADDRESS=127.0.0.1\n")
    units = []
    for unit in sorted((DEPLOY / "systemd").iterdir()):
        text = unit.read_text().replace("/opt/csms", str(ROOT)).replace("/etc/csms/csms.env", str(env_file))
        (tmp_path / unit.name).write_text(text)
        units.append(unit.name)
    assert {"csms@.service", "csms.target", "csms-migrate.service", "csms-prune.service", "csms-prune.timer"} <= set(units)
    paths = [str(tmp_path / ("csms@8001.service" if name == "csms@.service" else name)) for name in units]
    done = subprocess.run([analyze, "verify", *paths], capture_output=True, text=True, cwd=tmp_path)
    problems = [line for line in done.stderr.splitlines() if "csms" in line]
    assert done.returncode == 0 and problems == [], done.stderr


def production_env(example: Path) -> dict[str, str]:
    values = {}
    for line in example.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


@pytest.mark.django_db(transaction=True)
def test_the_environment_file_starts_production_mode(tmp_path):
    example = production_env(DEPLOY / "csms.env.example")
    run = [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"]
    base = {"PATH": os.environ["PATH"], "LOG_DIR": str(tmp_path / "logs"), "STATIC_ROOT": str(tmp_path / "static")}
    # As shipped, it refuses to start: the secret is a placeholder.
    refused = subprocess.run(run, cwd=ROOT, env={**example, **base}, capture_output=True, text=True)
    assert refused.returncode != 0 and "DJANGO_SECRET_KEY" in refused.stderr
    filled = {**example, "DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "METRICS_TOKEN": secrets.token_urlsafe(20),
              "DATABASE_URL": server_database_url(), **base}
    done = subprocess.run(run, cwd=ROOT, env=filled, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout

    # csms-manage runs a command as the service user with that file (runuser needs root).
    if os.geteuid() != 0:
        return
    env_file = tmp_path / "csms.env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in filled.items() if name != "PATH"))
    done = subprocess.run([str(DEPLOY / "csms-manage"), "check", "--deploy", "--fail-level", "WARNING"],
                          env={**os.environ, "CSMS_HOME": str(ROOT), "CSMS_ENV_FILE": str(env_file),
                               "CSMS_USER": "root"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_deployment_guide_and_deploy_folder_agree():
    guide = (ROOT / "docs" / "deployment.md").read_text()
    named = {name for name in re.findall(r"deploy/[\w./@-]+[\w@]", guide) if not (ROOT / name).is_dir()}
    shipped = {str(path.relative_to(ROOT)) for path in DEPLOY.rglob("*") if path.is_file()}
    assert named - shipped == set(), "the guide names files that are not in deploy/"
    assert shipped - named == set(), "deploy/ has files the guide does not show"


def test_every_setting_is_in_the_readme():
    code = (ROOT / "csms" / "settings.py").read_text()
    read = set(re.findall(r'env_\w+\(\s*"([A-Z_]+)"', code)) - {"CSMS_TEST_SQLITE"}
    makefile = set(re.findall(r"^([A-Z_]+) \?=", (ROOT / "Makefile").read_text(), re.M))
    read |= makefile & {"HOST"}  # read by `make run`, not by the settings
    table = set(re.findall(r"^\| `([A-Z_]+)` \|", (ROOT / "README.md").read_text(), re.M))
    assert read - table == set(), "settings missing from the README's table"
    assert table - read == set(), "the README lists settings the code does not read"
