"""The one write path for the charging domain, one module per handler family.

The OCPP consumer, the mobile API, the admin and management commands all call
these functions; nothing else writes stations, connectors, transactions or
meter samples. They are synchronous and run in the ORM thread: async callers
use ``csms.events.call_service``, which also pushes the events they record
once their transaction commits, and the OCPP consumer ``csms.groupcommit.call``,
which runs the calls of many charger messages in one transaction (a function
with a ``many`` attribute takes all of a batch's calls of it at once).

Every value a charger sends passes through ``stations.values`` before it is
stored: integers must fit their column, numbers must be finite, times must be
plausible. What happens otherwise is decided per message and listed in
docs/ocpp.md, "Plausibility and value limits"; each message logs what it did
not take in one line.

``from stations import services; services.start_transaction(...)`` is the
public surface; the family modules are where each function lives.
"""

from __future__ import annotations

from stations.errors import Conflict, DomainError, InvalidValue, NotFound
from stations.services._common import iso
from stations.services.authorization import authorize, provision_token, remove_token
from stations.services.connections import (
    ConnectDecision,
    check_station_connect,
    check_station_password,
    hash_station_password,
    set_station_password,
    station_connected,
    station_disconnected,
    stations_on_channels,
)
from stations.services.metering import record_meter_values
from stations.services.processes import flush_activity, release_dead_processes, vouch_for_process
from stations.services.provisioning import (
    BootInfo,
    Provisioned,
    provision_station,
    record_boot,
    record_command,
    record_data_transfer,
    record_firmware_status,
    registration_status,
    remove_station,
    set_registration_status,
    update_connector_status,
)
from stations.services.tariffs import save_tariff, tariff_for
from stations.services.transactions import (
    forget_remote_start,
    prepare_remote_start,
    prepare_remote_stop,
    start_transaction,
    stop_transaction,
)

__all__ = [
    "BootInfo",
    "Conflict",
    "ConnectDecision",
    "DomainError",
    "InvalidValue",
    "NotFound",
    "Provisioned",
    "authorize",
    "check_station_connect",
    "check_station_password",
    "flush_activity",
    "forget_remote_start",
    "hash_station_password",
    "iso",
    "prepare_remote_start",
    "prepare_remote_stop",
    "provision_station",
    "provision_token",
    "record_boot",
    "record_command",
    "record_data_transfer",
    "record_firmware_status",
    "record_meter_values",
    "registration_status",
    "release_dead_processes",
    "remove_station",
    "remove_token",
    "save_tariff",
    "set_registration_status",
    "set_station_password",
    "start_transaction",
    "station_connected",
    "station_disconnected",
    "stations_on_channels",
    "stop_transaction",
    "tariff_for",
    "update_connector_status",
    "vouch_for_process",
]
