# make run  - set up and serve the CSMS (SQLite + in-memory channel layer) on :$(PORT)
# make demo - the same plus simulated chargers fora072 (OCPP 1.6, connectors 1-4) and fora201 (OCPP 2.0.1, EVSEs 1-2)
# make test - set up and run the whole test suite
# make test-fast - only the fast tier (tests/fast: the services without sockets, in seconds)
# make typecheck - only mypy (django-stubs; config in pyproject.toml), which make test runs after ruff
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8081
# Loopback in development (DEBUG on, the public test key, unknown stations accepted);
# HOST=0.0.0.0 to reach it from a phone or charger on the LAN.
HOST ?= 127.0.0.1
# daphne cuts frames over its own limit (1 MiB by default) before the app can
# answer 413: keep it above the mobile API's limits (1 MiB on /ws).
DAPHNE_ARGS ?= --websocket-max-message-size 4194304 --websocket-max-frame-size 4194304
# TLS at daphne itself (wss:// and https:// on TLS_PORT, beside plain :PORT):
#   make dev-cert && make run TLS_CERT=.local/tls/cert.pem TLS_KEY=.local/tls/key.pem
TLS_PORT ?= 8443
ifdef TLS_CERT
DAPHNE_ARGS += -e ssl:$(TLS_PORT):interface=$(HOST):privateKey=$(TLS_KEY):certKey=$(TLS_CERT)
# daphne does not tell the app a WebSocket came over TLS; the port does (csms/tls.py).
export TLS_PORTS = $(TLS_PORT)
endif

.PHONY: run demo test test-fast typecheck setup setup-test system-packages dev-cert clean

$(VENV)/.runtime: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

setup: $(VENV)/.runtime
	$(BIN)/python manage.py migrate --no-input -v0
	$(BIN)/python manage.py bootstrap_dev

# Debian packages the suite drives: Chromium for the admin's browser tests
# (never a downloaded browser), nginx for the deployment's config.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-packages:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian's$$missing for the tests"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

setup-test: $(VENV)/.dev system-packages

run: setup
	$(BIN)/daphne $(DAPHNE_ARGS) -b $(HOST) -p $(PORT) csms.asgi:application

demo: setup
	@echo "Serving on :$(PORT) with simulated chargers fora072 (OCPP 1.6) and fora201 (OCPP 2.0.1) (Ctrl-C stops all)"
	OCPP_DEVICE_MODEL_ON_BOOT=always $(BIN)/daphne $(DAPHNE_ARGS) -b $(HOST) -p $(PORT) csms.asgi:application & DAPHNE=$$!; SIM201=; \
	trap 'kill $$DAPHNE $$SIM201 2>/dev/null' EXIT INT TERM; \
	sleep 2; $(BIN)/python manage.py simulate_charger fora201 --ocpp 2.0.1 --connectors 2 --auto-charge 60 \
	  --url ws://127.0.0.1:$(PORT)/ocpp & SIM201=$$!; \
	$(BIN)/python manage.py simulate_charger fora072 --connectors 4 --auto-charge 60 --url ws://127.0.0.1:$(PORT)/ocpp

# A self-signed certificate for localhost, for trying wss:// locally (never for production).
dev-cert:
	mkdir -p .local/tls
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
	  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
	  -keyout .local/tls/key.pem -out .local/tls/cert.pem 2>/dev/null
	@echo "wrote .local/tls/cert.pem and key.pem; clients trust it with --ca-file .local/tls/cert.pem"

# What mypy checks (the code it imports too): every function in csms, stations and mobileapi is typed.
MYPY_PATHS := csms stations mobileapi simulator tests/fast tests/test_provisioning_commands.py

test: setup-test
	$(BIN)/ruff check csms stations mobileapi simulator tests bench
	$(BIN)/mypy $(MYPY_PATHS)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

typecheck: $(VENV)/.dev
	$(BIN)/mypy $(MYPY_PATHS)

test-fast: $(VENV)/.dev
	$(BIN)/python -m pytest -q tests/fast $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache test-db.sqlite3* artifacts
