"""Production mode refuses unsafe settings; development needs none."""

from __future__ import annotations

import os
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
        ({"DJANGO_DEBUG": "maybe"}, "is not a boolean"),
    ],
)
def test_production_refuses_unsafe_settings(env, complaint):
    done = check(**env)
    assert done.returncode != 0 and complaint in done.stderr, done.stderr[-500:]


def test_production_starts_with_safe_settings():
    done = check(CSMS_ENV="production", DJANGO_SECRET_KEY=GOOD_KEY, ALLOWED_HOSTS="csms.example.com")
    assert done.returncode == 0, done.stderr[-500:]


def test_development_needs_nothing():
    assert check().returncode == 0
