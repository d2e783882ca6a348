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
import os
import re
import secrets
import shutil
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
                 upstreams: list[int] | None = None) -> Path:
    """deploy/nginx/ as installed on a host, under ``folder``, with this run's certificate,
    ports and upstream processes; returns the main nginx.conf that includes it."""
    proxy = folder / "csms-proxy.conf"
    shutil.copy(DEPLOY / "nginx" / "csms-proxy.conf", proxy)
    site = (DEPLOY / "nginx" / "csms.conf").read_text()
    site = site.replace("/etc/nginx/snippets/csms-proxy.conf", str(proxy))
    site = site.replace("/etc/ssl/csms/fullchain.pem", str(cert)).replace("/etc/ssl/csms/privkey.pem", str(key))
    site = re.sub(r"\n\s*listen \[::\]:\d+[^;]*;", "", site)  # IPv6 may be off in a sandbox
    site = site.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    site = site.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")
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
    main = nginx_config(tmp_path, *tls_certificate, http_port=http_port, https_port=https_port, upstreams=ports)
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
