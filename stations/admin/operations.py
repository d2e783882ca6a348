"""What staff can do to a charger from its admin page.

Each operation is a small form and a coroutine that calls the remote-command
service (or a station service) and says, in one line, what the charger
answered. The admin view validates the form, runs the operation and shows
that line as a message; errors (offline, timeout, CALLERROR, refused
preconditions) come back as the services raise them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django import forms

from csms.events import call_service
from stations import commands, rules, services
from stations.actors import Actor
from stations.models import Connector, RegistrationStatus, Station, Transaction


def actor_of(user: Any) -> str:
    return Actor.user(user).event_actor


def _connector_choices(station: Station, *, include_station: bool = False) -> list[tuple[int, str]]:
    numbers = Connector.objects.filter(station=station, number__gt=0).values_list("number", flat=True)
    choices = [(n, f"Connector {n}") for n in numbers]
    return [(0, "Whole station (0)"), *choices] if include_station else choices


class StationForm(forms.Form):
    """An operation's form; ``unavailable`` says why it cannot work now (the panel disables it)."""

    needs_online = True

    def __init__(self, station: Station, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.station = station
        self.unavailable = ""
        self.setup()
        if self.needs_online and not station.is_online:
            self.unavailable = "The charger is offline: it cannot be sent commands until it reconnects."

    def setup(self) -> None:
        pass


class RemoteStartForm(StationForm):
    connector = forms.TypedChoiceField(coerce=int)
    id_tag = forms.CharField(label="idTag", max_length=20)

    def setup(self) -> None:
        # Only connectors a start can work on (services.prepare_remote_start refuses the others).
        connectors = list(Connector.objects.filter(station=self.station, number__gt=0).order_by("number"))
        free = [c for c in connectors if not c.current_transaction_id and c.status not in rules.BUSY_STATUSES]
        self.fields["connector"].choices = [(c.number, f"Connector {c.number} ({c.status})") for c in free]
        if self.station.registration_status != RegistrationStatus.ACCEPTED:
            self.unavailable = f"The station is not accepted ({self.station.registration_status}): accept it first."
        elif not free:
            busy = ", ".join(f"{c.number} {c.status}" for c in connectors) or "none known yet"
            self.unavailable = f"No connector is free to start on (connectors: {busy})."


class RemoteStopForm(StationForm):
    transaction = forms.TypedChoiceField(coerce=int)

    def setup(self) -> None:
        active = (Transaction.objects.filter(station=self.station, stopped_at__isnull=True)
                  .select_related("connector").order_by("connector__number"))
        # No preselection: stopping someone's charge is chosen, never defaulted to the newest.
        self.fields["transaction"].choices = [("", "Choose a transaction…")] + [
            (tx.pk, f"#{tx.pk} on connector {tx.connector.number} ({tx.id_tag})") for tx in active
        ]
        if len(self.fields["transaction"].choices) == 1:
            self.unavailable = "No transaction is active on this station."


class ResetForm(StationForm):
    type = forms.ChoiceField(choices=[("Soft", "Soft"), ("Hard", "Hard")])


class UnlockForm(StationForm):
    connector = forms.TypedChoiceField(coerce=int)

    def setup(self) -> None:
        self.fields["connector"].choices = _connector_choices(self.station)


class AvailabilityForm(StationForm):
    connector = forms.TypedChoiceField(coerce=int)
    type = forms.ChoiceField(choices=[("Operative", "Operative"), ("Inoperative", "Inoperative")])

    def setup(self) -> None:
        self.fields["connector"].choices = _connector_choices(self.station, include_station=True)


class TriggerStatusForm(StationForm):
    connector = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)

    def setup(self) -> None:
        self.fields["connector"].choices = [("", "All connectors"), *_connector_choices(self.station)]


class ChangeConfigurationForm(StationForm):
    key = forms.CharField(max_length=50)
    value = forms.CharField(max_length=500, required=False)


class RegistrationForm(StationForm):
    needs_online = False  # a database change; an online charger is also asked to boot again
    status = forms.ChoiceField(choices=[(RegistrationStatus.ACCEPTED, "Accept"), (RegistrationStatus.REJECTED, "Reject")])


async def _remote_start(station: Station, data: dict[str, Any], user: Any) -> str:
    status = await commands.remote_start(
        station.pk, data["connector"], data["id_tag"], requested_by=Actor.user(user)
    )
    return f"RemoteStartTransaction on connector {data['connector']}: the charger answered {status}"


async def _remote_stop(station: Station, data: dict[str, Any], user: Any) -> str:
    status, transaction_id, _ = await commands.remote_stop(transaction_id=data["transaction"], actor=actor_of(user))
    return f"RemoteStopTransaction of transaction {transaction_id}: the charger answered {status}"


def _command(action: str, payload: Callable[[dict[str, Any]], dict[str, Any]]):
    async def run(station: Station, data: dict[str, Any], user: Any) -> str:
        answer = await commands.operate(station.pk, action, payload(data), actor=actor_of(user))
        return f"{action}: the charger answered {answer.get('status', answer)}"

    return run


def _trigger_payload(data: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {"requestedMessage": "StatusNotification"}
    if data["connector"] is not None:
        payload["connectorId"] = data["connector"]
    return payload


async def _registration(station: Station, data: dict[str, Any], user: Any) -> str:
    status = data["status"]
    await call_service(services.set_registration_status, station.pk, status, actor=actor_of(user))
    text = f"Registration status set to {status}"
    if status == RegistrationStatus.ACCEPTED and station.is_online:
        # An accepted charger learns it at its next BootNotification: ask for one now.
        try:
            answer = await commands.operate(
                station.pk, "TriggerMessage", {"requestedMessage": "BootNotification"}, actor=actor_of(user)
            )
            text += f"; asked the charger to boot again (TriggerMessage: {answer.get('status')})"
        except services.DomainError as error:
            text += f"; the charger could not be asked to boot again ({error})"
    return text


@dataclass(frozen=True)
class Operation:
    name: str
    title: str
    form: type[StationForm]
    run: Callable[[Station, dict[str, Any], Any], Awaitable[str]]
    button: str = "Send"


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("remote_start", "Remote start", RemoteStartForm, _remote_start, "Start"),
        Operation("remote_stop", "Remote stop", RemoteStopForm, _remote_stop, "Stop"),
        Operation("reset", "Reset", ResetForm, _command("Reset", lambda d: {"type": d["type"]}), "Reset"),
        Operation("unlock", "Unlock connector", UnlockForm,
                  _command("UnlockConnector", lambda d: {"connectorId": d["connector"]}), "Unlock"),
        Operation("availability", "Change availability", AvailabilityForm,
                  _command("ChangeAvailability", lambda d: {"connectorId": d["connector"], "type": d["type"]}),
                  "Change"),
        Operation("trigger_status", "Trigger status notification", TriggerStatusForm,
                  _command("TriggerMessage", _trigger_payload), "Trigger"),
        Operation("change_configuration", "Change configuration", ChangeConfigurationForm,
                  _command("ChangeConfiguration", lambda d: {"key": d["key"], "value": d["value"]}), "Change"),
        Operation("registration", "Registration", RegistrationForm, _registration, "Set"),
    )
}
# Shown in the "Act on the charger" panel (configuration has its own page).
PANEL = ("remote_start", "remote_stop", "reset", "unlock", "availability", "trigger_status")
