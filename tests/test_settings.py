"""Production mode refuses unsafe settings; development needs none."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

GOOD_KEY = "k" * 50


def check(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CSMS_", "ALLOWED_HOSTS"))}
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**clean, **env},
    )


@pytest.mark.parametrize(
    "env, complaint",
    [
        ({"CSMS_ENV": "production", "DJANGO_SECRET_KEY": GOOD_KEY, "DJANGO_DEBUG": "true"}, "refuses DJANGO_DEBUG"),
        ({"CSMS_ENV": "production"}, "needs DJANGO_SECRET_KEY"),
        ({"CSMS_ENV": "production", "DJANGO_SECRET_KEY": "django-insecure-" + "x" * 40}, "needs DJANGO_SECRET_KEY"),
        ({"CSMS_ENV": "production", "DJANGO_SECRET_KEY": "short"}, "needs DJANGO_SECRET_KEY"),
        ({"CSMS_ENV": "staging"}, "CSMS_ENV='staging'"),
        ({"CSMS_ENV": "production", "DJANGO_SECRET_KEY": GOOD_KEY}, "needs ALLOWED_HOSTS"),
        ({"CSMS_ENV": "production", "DJANGO_SECRET_KEY": GOOD_KEY, "ALLOWED_HOSTS": "csms.example.com",
          "CSMS_PROCESSES": "4", "REDIS_URL": ""}, "CSMS_PROCESSES=4 needs REDIS_URL"),
        ({"DJANGO_DEBUG": "maybe"}, "is not a boolean"),
        # A live process a little late must not be declared dead by the others.
        ({"OCPP_PRESENCE_SWEEP_SECONDS": "10", "OCPP_PROCESS_TIMEOUT": "15"}, "at least twice"),
    ],
)
def test_production_refuses_unsafe_settings(env, complaint):
    done = check(**env)
    assert done.returncode != 0 and complaint in done.stderr, done.stderr[-500:]


def test_production_starts_with_safe_settings():
    done = check(CSMS_ENV="production", DJANGO_SECRET_KEY=GOOD_KEY, ALLOWED_HOSTS="csms.example.com")
    assert done.returncode == 0, done.stderr[-500:]
    done = check(CSMS_ENV="production", DJANGO_SECRET_KEY=GOOD_KEY, ALLOWED_HOSTS="csms.example.com",
                 CSMS_PROCESSES="4", REDIS_URL="redis://127.0.0.1:6379/0")
    assert done.returncode == 0, done.stderr[-500:]


def test_production_serves_collected_static_files_itself(daphne_process, tmp_path):
    """No nginx needed for the admin's CSS: WhiteNoise serves the collected, hashed files."""
    import urllib.request

    env = {"CSMS_ENV": "production", "DJANGO_SECRET_KEY": GOOD_KEY, "ALLOWED_HOSTS": "127.0.0.1",
           "STATIC_ROOT": str(tmp_path / "static"), "DJANGO_DEBUG": "false"}
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CSMS_"))}
    collected = subprocess.run([sys.executable, "manage.py", "collectstatic", "--no-input", "-v0"], cwd=ROOT,
                               env={**clean, **env}, capture_output=True, text=True, timeout=120)
    assert collected.returncode == 0, collected.stderr[-500:]
    url, _ = daphne_process(env)
    base = url.replace("ws://", "http://")
    login = urllib.request.urlopen(f"{base}/admin/login/", timeout=10).read().decode()
    css = re.search(r'href="(/static/admin/css/base\.[0-9a-f]+\.css)"', login)
    assert css, "the admin links its hashed stylesheet"
    response = urllib.request.urlopen(base + css.group(1), timeout=10)
    assert response.status == 200 and b"body" in response.read()
    assert "max-age=315360000" in response.headers["Cache-Control"]  # immutable, hashed name


def test_development_needs_nothing():
    assert check().returncode == 0
