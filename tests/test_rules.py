"""Pure decisions: derived station status, cost, idTag info, boot policy, meter summaries."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from stations import rules
from stations.ocpp.v16.authorization import id_tag_info

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "online, statuses, expected",
    [
        (False, ["Available", "Available"], "Offline"),
        (True, ["Available", "Available"], "Available"),
        (True, ["Available", "Charging"], "Charging"),
        (True, ["Faulted", "SuspendedEV"], "Charging"),
        (True, ["Available", "Faulted"], "PartiallyAvailable"),
        (True, ["Preparing", "Available"], "PartiallyAvailable"),
        (True, ["Faulted", "Unavailable"], "Unavailable"),
        (True, [], "Unavailable"),
    ],
)
def test_station_status(online, statuses, expected):
    assert rules.station_status(online, statuses) == expected


def test_cost_of_the_documents_example():
    # seeds: 15500 Wh at 0.10 per kWh is 1.55
    assert rules.compute_cost(15500, 3600, price_per_kwh=Decimal("0.10")) == Decimal("1.55")


def test_cost_with_time_and_session_fees_rounds_half_up():
    cost = rules.compute_cost(
        1000, 90, price_per_kwh=Decimal("0.30"), price_per_minute=Decimal("0.01"), session_fee=Decimal("0.50")
    )
    assert cost == Decimal("0.82")  # 0.30 + 0.015 + 0.50 = 0.815 -> 0.82


def test_cost_never_negative():
    assert rules.compute_cost(-5, -1, price_per_kwh=Decimal("1")) == Decimal("0.00")


def test_id_tag_info_unknown_follows_policy():
    assert id_tag_info(rules.authorization(None, accept_unknown=True, now=NOW)) == {"status": "Accepted"}
    assert id_tag_info(rules.authorization(None, accept_unknown=False, now=NOW)) == {"status": "Invalid"}


def test_id_tag_info_expired_and_parent():
    expired = rules.TagRecord("Accepted", NOW - dt.timedelta(days=1), "FLEET")
    assert id_tag_info(rules.authorization(expired, accept_unknown=True, now=NOW)) == {
        "status": "Expired",
        "expiryDate": (NOW - dt.timedelta(days=1)).isoformat(),
        "parentIdTag": "FLEET",
    }
    blocked = rules.TagRecord("Blocked", None, None)
    assert id_tag_info(rules.authorization(blocked, accept_unknown=True, now=NOW)) == {"status": "Blocked"}


@pytest.mark.parametrize(
    "known, status, policy, expected",
    [
        (True, "Accepted", "reject", "Accepted"),
        (True, "Pending", "accept", "Pending"),
        (False, None, "accept", "Accepted"),
        (False, None, "pending", "Pending"),
        (False, None, "reject", None),
    ],
)
def test_boot_status(known, status, policy, expected):
    assert rules.boot_status(known, status, policy) == expected


def test_summarize_converts_units_and_phases():
    summary = rules.summarize_sampled_values(
        [
            {"value": "15.5", "measurand": "Energy.Active.Import.Register", "unit": "kWh"},
            {"value": "3.7", "measurand": "Power.Active.Import", "unit": "kW", "phase": "L1"},
            {"value": "3.7", "measurand": "Power.Active.Import", "unit": "kW", "phase": "L2"},
            {"value": "16", "measurand": "Current.Import", "unit": "A", "phase": "L1"},
            {"value": "18", "measurand": "Current.Import", "unit": "A", "phase": "L2"},
            {"value": "230", "measurand": "Voltage", "unit": "V"},
            {"value": "80", "measurand": "SoC", "unit": "Percent"},
            {"value": "xyz", "measurand": "Power.Active.Import"},
            {"value": "1", "measurand": "Temperature", "unit": "Celsius"},
        ]
    )
    assert summary == {"energy_wh": 15500.0, "power_w": 7400.0, "current_a": 17.0, "voltage_v": 230.0, "soc": 80.0}


def test_summarize_default_measurand_is_energy_in_wh():
    assert rules.summarize_sampled_values([{"value": "1234"}]) == {"energy_wh": 1234.0}
