"""CSMS settings, read from the environment.

Every variable is listed with its default in README.md ("Settings"). Two modes:
development (the default: zero setup, SQLite, in-memory channel layer) and
production (``CSMS_ENV=production``), which refuses to start on unsafe values.
"""

from __future__ import annotations

import os
import secrets
import warnings
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use true/false)")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: set[str]) -> str:
    value = os.environ.get(name) or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r}: expected one of {sorted(choices)}")
    return value


# --- Mode -------------------------------------------------------------------

CSMS_ENV = env_choice("CSMS_ENV", "development", {"development", "production"})
PRODUCTION = CSMS_ENV == "production"
DEBUG = env_bool("DJANGO_DEBUG", not PRODUCTION)
LOCAL_DIR = BASE_DIR / ".local"  # development-only state: secret key, credentials


def dev_secret_key() -> str:
    """A per-checkout random key kept in .local/ (git-ignored), never in the repo."""
    path = LOCAL_DIR / "secret_key"
    if not path.exists():
        LOCAL_DIR.mkdir(exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env_str("DJANGO_SECRET_KEY") or ("" if PRODUCTION else dev_secret_key())
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["*"])

# How many server processes the deployment runs (all hosts together). More
# than one needs a shared channel layer (REDIS_URL): the in-memory one cannot
# reach a charger or a mobile client held by another process.
CSMS_PROCESSES = env_int("CSMS_PROCESSES", 1)

if PRODUCTION:
    if DEBUG:
        raise ImproperlyConfigured("CSMS_ENV=production refuses DJANGO_DEBUG=true")
    if len(SECRET_KEY) < 40 or SECRET_KEY.startswith("django-insecure"):
        raise ImproperlyConfigured(
            "CSMS_ENV=production needs DJANGO_SECRET_KEY: at least 40 random characters"
        )
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("CSMS_ENV=production needs ALLOWED_HOSTS (comma-separated host names)")
    if CSMS_PROCESSES > 1 and not env_str("REDIS_URL"):
        raise ImproperlyConfigured(
            f"CSMS_PROCESSES={CSMS_PROCESSES} needs REDIS_URL: the in-memory channel layer serves one process only"
        )

# --- Applications -------------------------------------------------------------

INSTALLED_APPS = [
    "daphne",
    "csms.apps.CsmsAdminConfig",  # django.contrib.admin with the dashboard
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "csms.apps.CsmsConfig",
    "stations",
    "mobileapi",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # The admin's static files, served by the ASGI app itself (no separate web server needed).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "csms.urls"
ASGI_APPLICATION = "csms.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
# Persistent connections: service calls run in one ORM thread per process, so
# this keeps one connection open instead of opening one per call (a TCP
# connection and login each time on PostgreSQL). Health checks drop dead ones.
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 600), conn_health_checks=True
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Measured: defaults gave "database is locked" on half of concurrent
    # read-then-write transactions; IMMEDIATE + WAL + synchronous=NORMAL gave none.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
    }
    # A file, not memory, so that server processes started by tests share it.
    DATABASES["default"]["TEST"] = {
        "NAME": env_str("CSMS_TEST_SQLITE", str(BASE_DIR / "test-db.sqlite3"))
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channel layer ------------------------------------------------------------

REDIS_URL = env_str("REDIS_URL")
# Room for push bursts: a full channel makes group_send drop silently.
CHANNEL_CAPACITY = env_int("CHANNEL_CAPACITY", 1000)
# Each process's push hub reads every event once: give its channel room for bursts.
HUB_CAPACITY = env_int("HUB_CAPACITY", 100_000)


# How long a channel-layer operation waits for a Redis that stopped answering
# (connecting, and retrying a lost connection) before it fails; a remote
# command then answers 503. Sockets stay open through an outage whatever its length.
REDIS_RETRY_SECONDS = env_int("REDIS_RETRY_SECONDS", 2)


def redis_channel_layer(url: str, prefix: str = "csms") -> dict:
    return {
        # channels-redis, made to survive a Redis restart (csms/layers.py).
        "BACKEND": "csms.layers.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 times reads out after 5 s (idle consumers die) and
            # caps the pool at 100 connections: lift both. No read timeout at
            # all: with one, a cancelled blocking read sometimes never ended
            # (a consumer that cannot close); the layer bounds its sends
            # itself (retry_seconds). Connecting is bounded: an unreachable
            # host fails instead of waiting for the system's TCP timeout.
            "hosts": [
                {
                    "address": url,
                    "socket_timeout": None,
                    "socket_connect_timeout": REDIS_RETRY_SECONDS,
                    "max_connections": env_int("REDIS_MAX_CONNECTIONS", 10_000),
                }
            ],
            "capacity": CHANNEL_CAPACITY,
            "channel_capacity": {"*!hub*": HUB_CAPACITY},
            "prefix": prefix,
            "retry_seconds": REDIS_RETRY_SECONDS,
        },
    }


if REDIS_URL:
    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL, env_str("CHANNEL_PREFIX", "csms"))}
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "csms.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": CHANNEL_CAPACITY, "channel_capacity": {"*!hub*": HUB_CAPACITY}},
        }
    }

# --- Auth, i18n, static ---------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
FORMAT_MODULE_PATH = ["csms.formats"]
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
# Production serves compressed, cache-busted files collected by `manage.py
# collectstatic`; development serves them from the apps directly.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION
if not PRODUCTION:  # nothing collected in development: the finders serve the files
    warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)

# Cookies only over HTTPS in production (TLS at nginx or at daphne).
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", PRODUCTION)
SESSION_COOKIE_HTTPONLY = True
# Origins allowed to POST to the admin, e.g. https://csms.example.com (needed behind TLS).
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Behind nginx: trust its X-Forwarded-Proto to know the request came over TLS
# (HTTP for Django, WebSockets for csms.tls). Only with the server's port
# reachable from nginx alone (bound to 127.0.0.1), or clients could claim TLS.
BEHIND_PROXY = env_bool("BEHIND_PROXY", False)
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True
    # nginx redirects to HTTPS and sends HSTS (deploy/nginx/csms.conf). The
    # processes serve plain HTTP to nginx and to Prometheus, so they must not
    # redirect or send HSTS themselves.
    SILENCED_SYSTEM_CHECKS = ["security.W004", "security.W008"]
# Security profile 3: trust the proxy's X-SSL-Client-Verify / X-SSL-Client-S-DN
# (the client certificate it verified; csms/tls.py). Only with BEHIND_PROXY and a
# proxy that overwrites both headers on every request it forwards (as
# deploy/nginx/csms-proxy.conf does on every server block), or any client could
# claim a certificate and log in as any station without a password.
OCPP_CLIENT_CERT_HEADERS = env_bool("OCPP_CLIENT_CERT_HEADERS", False)
# Ports on which the server process terminates TLS itself (daphne's
# "-e ssl:PORT:privateKey=...:certKey=..." endpoint). Daphne does not tell the
# application that a WebSocket came over TLS (django/daphne#538), so the port
# it arrived on does.
TLS_PORTS = {int(port) for port in env_list("TLS_PORTS", [])}
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Failed authentications (csms/lockout.py) ----------------------------------------

# Per client address and per process: after AUTH_FAILURE_LIMIT wrong API keys
# (mobile auth on both endpoints and /api/ together) or wrong station passwords
# (OCPP basic auth) within AUTH_FAILURE_WINDOW seconds, the address is refused
# for AUTH_LOCKOUT_SECONDS, twice as long at each further lockout up to
# AUTH_LOCKOUT_MAX_SECONDS. AUTH_FAILURE_LIMIT=0 turns the lockout off. Generous
# by default: many phones can share one carrier address.
AUTH_FAILURE_LIMIT = env_int("AUTH_FAILURE_LIMIT", 10)
AUTH_FAILURE_WINDOW = env_int("AUTH_FAILURE_WINDOW", 60)
AUTH_LOCKOUT_SECONDS = env_int("AUTH_LOCKOUT_SECONDS", 60)
AUTH_LOCKOUT_MAX_SECONDS = env_int("AUTH_LOCKOUT_MAX_SECONDS", 900)
# Addresses remembered per budget (bounded memory; the oldest are forgotten first).
AUTH_LOCKOUT_MAX_ADDRESSES = env_int("AUTH_LOCKOUT_MAX_ADDRESSES", 10_000)

# --- Metrics ----------------------------------------------------------------------

# Bearer token for /metrics. Unset: open in development, off (404) in production.
METRICS_TOKEN = env_str("METRICS_TOKEN")

# --- Data retention (manage.py prune_data) -------------------------------------

# Days of meter samples and events to keep; 0 keeps them forever. Transactions
# are never pruned (they are billing records).
RETENTION_METER_SAMPLE_DAYS = env_int("RETENTION_METER_SAMPLE_DAYS", 90)
RETENTION_EVENT_DAYS = env_int("RETENTION_EVENT_DAYS", 365)

# --- Server -------------------------------------------------------------------

PORT = env_int("PORT", 8081)
# WebSocket handshakes (chargers and apps) in flight per process beyond which
# a new one is refused with HTTP 503 and a Retry-After (after at most
# WS_HANDSHAKE_QUEUE_MS waiting for a slot), rather than queued past the
# server's handshake timeout (daphne drops a handshake after
# 5 s). 0: no limit. Sizing: docs/operations.md, "Connection storms".
WS_MAX_PENDING_HANDSHAKES = env_int("WS_MAX_PENDING_HANDSHAKES", 1000)
# That 503's Retry-After, in seconds: spread over [this, twice this] so that
# clients obeying it exactly do not all come back at the same moment.
WS_HANDSHAKE_RETRY_AFTER = env_int("WS_HANDSHAKE_RETRY_AFTER", 5)
# Milliseconds a handshake beyond that limit waits for a slot (first come, first
# served) before its 503; 0: refused at once. Keep it well under the server's
# handshake timeout (daphne: 5 s), which the wait counts against.
WS_HANDSHAKE_QUEUE_MS = env_int("WS_HANDSHAKE_QUEUE_MS", 2000)
# Server protections under daphne (csms/daphne_support.py). Bytes a WebSocket
# may have queued unsent (a client that does not read) before the next send
# closes it (code 4005, the connection dropped); 0: no bound.
WEBSOCKET_SEND_BUFFER_BYTES = env_int("WEBSOCKET_SEND_BUFFER_BYTES", 4 * 1024 * 1024)
# Seconds a new connection has to send its complete request headers (an HTTP
# request or a WebSocket upgrade) before it is dropped; 0: no deadline.
HTTP_HEADER_TIMEOUT = env_int("HTTP_HEADER_TIMEOUT", 10)
# Listen backlog of the sockets daphne opens for -b/-p and -u (Twisted's is
# 50: a reconnect storm overflows it); capped by net.core.somaxconn; 0: daphne's.
LISTEN_BACKLOG = env_int("LISTEN_BACKLOG", 1024)

# --- OCPP ---------------------------------------------------------------------

# Interval (s) the CSMS gives chargers in BootNotification.conf.
OCPP_HEARTBEAT_INTERVAL = env_int("OCPP_HEARTBEAT_INTERVAL", 300)
# What to do with a station id that is not in the database:
#   reject  - refuse the WebSocket handshake (HTTP 403)
#   pending - register it with status Pending until staff accept it
#   accept  - register it as Accepted
OCPP_UNKNOWN_STATIONS = env_choice(
    "OCPP_UNKNOWN_STATIONS", "reject" if PRODUCTION else "accept", {"reject", "pending", "accept"}
)
# Security profile 1: require HTTP Basic auth from every station. A station
# that has a password set must always present it, whatever this says.
OCPP_REQUIRE_AUTH = env_bool("OCPP_REQUIRE_AUTH", PRODUCTION)
# Security profile 2 (with OCPP_REQUIRE_AUTH): refuse chargers not connected
# over TLS (wss://, at daphne's TLS endpoint or at nginx; see csms/tls.py).
OCPP_REQUIRE_TLS = env_bool("OCPP_REQUIRE_TLS", False)
# Accept idTags that are not in the IdTag table (demo and first tries).
OCPP_ACCEPT_UNKNOWN_IDTAGS = env_bool("OCPP_ACCEPT_UNKNOWN_IDTAGS", not PRODUCTION)
# The OCPP versions chargers may speak, most preferred first (stations/ocpp/): a charger offering
# both gets 2.0.1 unless this says 1.6 first.
OCPP_VERSIONS = env_list("OCPP_VERSIONS", ["2.0.1", "1.6"])
# Which 2.0.1 stations are asked for their device model (GetBaseReport FullInventory) once their boot is
# answered, unless they reported one before: "pending" ones (B02: what the operator decides on),
# "always" (Accepted ones too), or "never".
OCPP_DEVICE_MODEL_ON_BOOT = env_choice("OCPP_DEVICE_MODEL_ON_BOOT", "pending", {"pending", "always", "never"})
# The most device model attributes (DeviceVariable rows) kept per 2.0.1 station: a report's attributes
# beyond it are skipped (counted in station.device_model.reported's "skipped").
OCPP_DEVICE_MODEL_MAX_ATTRIBUTES = env_int("OCPP_DEVICE_MODEL_MAX_ATTRIBUTES", 20000)
# Seconds to wait for a charger's answer to a CSMS-initiated command.
OCPP_COMMAND_TIMEOUT = env_int("OCPP_COMMAND_TIMEOUT", 30)
# Heartbeats and last-activity are kept in memory and written this often.
OCPP_ACTIVITY_FLUSH_SECONDS = env_int("OCPP_ACTIVITY_FLUSH_SECONDS", 5)
# Group commit (csms/groupcommit.py): the writes of the charger messages that
# arrived while the previous batch was written go in one transaction, each
# answered after its commit. At most this many messages per batch.
OCPP_GROUP_COMMIT_MAX = env_int("OCPP_GROUP_COMMIT_MAX", 200)
if OCPP_GROUP_COMMIT_MAX < 1:
    raise ImproperlyConfigured("OCPP_GROUP_COMMIT_MAX must be at least 1")

# Presence (stations/presence.py). Every OCPP_PRESENCE_SWEEP_SECONDS each
# process vouches for itself in the database, marks offline the stations the
# database says it holds but whose socket it does not have (a handshake killed
# midway), and declares dead the processes that have not vouched for
# themselves for OCPP_PROCESS_TIMEOUT seconds, marking their stations offline.
# A killed process's stations are thus offline within timeout + sweep seconds
# (40 s by default), well inside the heartbeat window.
OCPP_PRESENCE_SWEEP_SECONDS = env_int("OCPP_PRESENCE_SWEEP_SECONDS", 10)
OCPP_PROCESS_TIMEOUT = env_int("OCPP_PROCESS_TIMEOUT", 30)
if OCPP_PROCESS_TIMEOUT < 2 * OCPP_PRESENCE_SWEEP_SECONDS:
    raise ImproperlyConfigured(
        "OCPP_PROCESS_TIMEOUT must be at least twice OCPP_PRESENCE_SWEEP_SECONDS, "
        "or a live process that is a little late would be declared dead"
    )
# How long a RemoteStartTransaction waits for the charger's StartTransaction.
OCPP_REMOTE_START_WINDOW = env_int("OCPP_REMOTE_START_WINDOW", 300)
# Vendors whose DataTransfer messages are acknowledged as Accepted.
OCPP_DATA_TRANSFER_VENDORS = env_list("OCPP_DATA_TRANSFER_VENDORS", [])
# Plausibility (stations/values.py, docs/ocpp.md "Plausibility and value limits").
# A charger's timestamp is believed from this many days before the CSMS received
# the message (queued messages of a charger that was offline) ...
OCPP_TIMESTAMP_MAX_AGE_DAYS = env_int("OCPP_TIMESTAMP_MAX_AGE_DAYS", 90)
# ... to this many seconds after it (clock drift). Outside: the charger's clock is
# wrong; transactions are timed by the receive time, meter samples dropped.
OCPP_TIMESTAMP_MAX_AHEAD_SECONDS = env_int("OCPP_TIMESTAMP_MAX_AHEAD_SECONDS", 900)
# The most power one connector delivers: a register that implies more energy than
# this for the session's length (at least an hour) is not believed.
OCPP_MAX_POWER_KW = env_int("OCPP_MAX_POWER_KW", 1000)

# --- Process tuning (see csms/runtime.py and bench/RESULTS.md) --------------------

# Python's collector thresholds, "gen0,gen1,gen2". Measured with 4,000 chargers:
# Python's 700,10,10 gave heartbeat p99 248 ms, 50000,50,1000 gave 33 ms at the
# same memory (bench/RESULTS.md). Empty: Python's defaults.
GC_THRESHOLD = tuple(int(n) for n in env_list("CSMS_GC_THRESHOLD", ["50000", "50", "1000"]))
# Freeze the objects loaded at start-up out of the collector's reach.
GC_FREEZE = env_bool("CSMS_GC_FREEZE", True)

# --- Logging ------------------------------------------------------------------

LOG_DIR = Path(env_str("LOG_DIR", str(BASE_DIR / "logs")))
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
# Longest log message (characters; a traceback gets twice that): a client's
# payload quoted in a line cannot grow the log without bound.
LOG_MAX_RECORD = env_int("LOG_MAX_RECORD", 4000)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "line": {"()": "csms.logs.LineFormatter", "format": "%(asctime)s %(levelname)s %(process)d %(name)s %(message)s"},
    },
    "filters": {"bounded": {"()": "csms.logs.BoundedRecords", "limit": LOG_MAX_RECORD}},
    "handlers": {
        "stdout": {"class": "logging.StreamHandler", "formatter": "line", "filters": ["bounded"]},
        "daily": {
            "class": "csms.logs.DailyFileHandler",
            "directory": str(LOG_DIR),
            "formatter": "line",
            "filters": ["bounded"],
        },
    },
    "root": {"handlers": ["stdout", "daily"], "level": LOG_LEVEL},
    "loggers": {
        # The ocpp library logs every frame at INFO; we log one line per
        # message ourselves ([OCPP:<Action>]).
        "ocpp": {"level": "WARNING"},
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}

# --- Mobile API -----------------------------------------------------------------

# Rate limits per connection, "<messages>/<seconds>" (token bucket).
MOBILE_WS_RATE_LIMIT = env_str("MOBILE_WS_RATE_LIMIT", "10/1")
MOBILE_CLIENT_RATE_LIMIT = env_str("MOBILE_CLIENT_RATE_LIMIT", "50/10")
MOBILE_WS_MAX_MESSAGE_BYTES = env_int("MOBILE_WS_MAX_MESSAGE_BYTES", 1024 * 1024)
MOBILE_CLIENT_MAX_MESSAGE_BYTES = env_int("MOBILE_CLIENT_MAX_MESSAGE_BYTES", 32 * 1024)
# Subscriptions one connection may hold at once (each is checked for every push).
MOBILE_MAX_SUBSCRIPTIONS = env_int("MOBILE_MAX_SUBSCRIPTIONS", 100)
# An authenticated session lasts this long, then session.expired asks for auth again.
MOBILE_SESSION_TTL = env_int("MOBILE_SESSION_TTL", 24 * 3600)
# A connection that sends nothing for this long is closed.
MOBILE_IDLE_TIMEOUT = env_int("MOBILE_IDLE_TIMEOUT", 60)
# How often each process's push hub renews its membership of events.all (a
# group membership expires after a day).
MOBILE_HUB_RENEW_SECONDS = env_int("MOBILE_HUB_RENEW_SECONDS", 3600)
# getStations is served from a per-process snapshot, renewed on every station
# or connector event and at least this often (seconds; lastActivity moves silently).
MOBILE_SNAPSHOT_MAX_AGE = env_int("MOBILE_SNAPSHOT_MAX_AGE", 5)
# How often each process checks its sessions (expiry, idle, deactivated keys).
MOBILE_SESSION_CHECK_SECONDS = env_int("MOBILE_SESSION_CHECK_SECONDS", 2)
# Support's view of the sessions (admin "Mobile sessions"): a session's last
# message time and liveness are written at most this often (seconds), and
# ended sessions are kept this many days.
MOBILE_SESSION_RECORD_SECONDS = env_int("MOBILE_SESSION_RECORD_SECONDS", 10)
MOBILE_SESSION_HISTORY_DAYS = env_int("MOBILE_SESSION_HISTORY_DAYS", 30)
# Refuse mobile connections not made over TLS: an API key must not cross the
# network in the clear.
MOBILE_REQUIRE_TLS = env_bool("MOBILE_REQUIRE_TLS", PRODUCTION)
# The test key of the customer's documents, created by `make run` in development.
DOCUMENTED_TEST_API_KEY = "test-mobile-key-123"
MOBILE_DEV_API_KEY = "" if PRODUCTION else env_str("MOBILE_DEV_API_KEY", DOCUMENTED_TEST_API_KEY)
# A database first set up in development keeps that key: production refuses it
# at authentication (and warns at start while it is in the database), with any
# other key MOBILE_DEV_API_KEY names. See csms/checks.py.
MOBILE_REFUSED_KEYS = (
    frozenset(filter(None, {DOCUMENTED_TEST_API_KEY, env_str("MOBILE_DEV_API_KEY")})) if PRODUCTION else frozenset()
)
