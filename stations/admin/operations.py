"""What staff can do to a charger from its admin page.

Each operation is a registered charger command (stations/commands/registry.py)
with a form made from its parameters, plus the station's registration (a
database change). The admin view validates the form, runs the operation and
shows, in one line, what the charger answered; errors (offline, timeout,
CALLERROR, refused preconditions) come back as the services raise them.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.core.exceptions import PermissionDenied

from csms.events import call_service
from stations import commands, rules, services
from stations import ocpp as adapters
from stations.actors import Actor
from stations.commands.registry import REGISTRY, Command, Param
from stations.models import Connector, RegistrationStatus, Station, Transaction


def actor_of(user: Any) -> str:
    return Actor.user(user).event_actor


def _connector_choices(station: Station, *, include_station: bool = False) -> list[tuple[int, str]]:
    numbers = (Connector.objects.filter(station=station, number__gt=0).order_by("number")
               .values_list("number", flat=True).distinct())
    choices = [(n, f"Connector {n}") for n in numbers]
    return [(0, "Whole station (0)"), *choices] if include_station else choices


def _field(param: Param, station: Station) -> forms.Field:
    """The form field of a command parameter, offering the station's own connectors or transactions."""
    label = param.label or None
    if param.refers_to:
        if param.refers_to == "connector":
            choices: list[tuple[Any, str]] = _connector_choices(station, include_station=param.minimum == 0)
        else:
            choices = []  # a transaction: the operation's form offers the active ones
        if not param.required:
            choices = [("", "Whole station" if param.name == "evse" else "All connectors"), *choices]
        return forms.TypedChoiceField(label=label, coerce=int, choices=choices, required=param.required,
                                      empty_value=None)
    if param.choices:
        return forms.ChoiceField(label=label, choices=[(choice, choice) for choice in param.choices],
                                 required=param.required, initial=param.default)
    if param.type is int:
        return forms.IntegerField(label=label, min_value=param.minimum, max_value=param.maximum,
                                  required=param.required)
    return forms.CharField(label=label, max_length=param.max_length, required=param.required)


# What each version's stations are offered of a command's parameters: the choices it can say (its adapter maps
# or refuses the others) and the parameters it has no use for (1.6: each connector is its own EVSE).
_CHOICES: dict[str, dict[tuple[str, str], tuple[str, ...]]] = {
    "1.6": {("reset", "type"): ("Soft", "Hard"),
            ("trigger_message", "message"): ("StatusNotification", "BootNotification", "Heartbeat", "MeterValues",
                                             "FirmwareStatusNotification")},
    "2.0.1": {("reset", "type"): ("OnIdle", "Immediate")},
}
_UNUSED: dict[str, frozenset[str]] = {"1.6": frozenset({"evse", "connector_id"})}


def offered(command: Command, station: Station) -> bool:
    """Whether the station's OCPP version has the command (1.6 has no device-model commands)."""
    return command.name in adapters.for_version(station.ocpp_version).commands


class StationForm(forms.Form):
    """An operation's form; ``unavailable`` says why it cannot work now (the panel disables it)."""

    needs_online = True
    command: Command | None = None  # the registered command whose parameters are its fields

    def __init__(self, station: Station, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.station = station
        self.unavailable = ""
        version = adapters.for_version(station.ocpp_version).version
        name = self.command.name if self.command else ""
        for param in self.command.params if self.command else ():
            if param.name in _UNUSED.get(version, ()):
                continue
            self.fields[param.name] = field = _field(param, station)
            choices = _CHOICES.get(version, {}).get((name, param.name))
            if choices and isinstance(field, forms.ChoiceField):
                field.choices = [(choice, choice) for choice in choices]
                field.initial = param.default if param.default in choices else None
        self.setup()
        if self.command is not None and not offered(self.command, station):
            self.unavailable = f"An OCPP {station.ocpp_version} station has no {self.command.title.lower()}."
        if self.needs_online and not station.is_online:
            self.unavailable = "The charger is offline: it cannot be sent commands until it reconnects."

    def setup(self) -> None:
        pass

    def params(self) -> dict[str, Any]:
        """The cleaned fields as the command's parameters (checked by the registry: InvalidValue)."""
        assert self.command is not None
        given = {param.wire: self.cleaned_data.get(param.name) for param in self.command.params}
        # A blank optional field is a parameter left out.
        return self.command.validate({name: value for name, value in given.items() if value not in ("", None)})


@functools.cache
def form_of(command: Command) -> type[StationForm]:
    return type(f"{command.name.title().replace('_', '')}Form", (StationForm,), {"command": command})


class RemoteStartForm(form_of(REGISTRY["remote_start"])):  # type: ignore[misc]
    def setup(self) -> None:
        # Only connectors a start can work on (services.prepare_remote_start refuses the others).
        connectors = list(Connector.objects.filter(station=self.station, number__gt=0)
                          .select_related("current_transaction").order_by("number"))
        # A 2.0.1 transaction without a token yet (the cable plugged in first) is what a start authorizes.
        free = [c for c in connectors if not (c.current_transaction and c.current_transaction.id_tag)
                and c.status not in rules.BUSY_STATUSES]
        # One choice per EVSE (a 2.0.1 EVSE may have several connectors; the start names the EVSE).
        choices: dict[int, tuple[int, str]] = {}
        for c in free:
            choices.setdefault(c.number, (c.number, f"Connector {c.number} ({c.status})"))
        self.fields["connector"].choices = list(choices.values())
        if self.station.registration_status != RegistrationStatus.ACCEPTED:
            self.unavailable = f"The station is not accepted ({self.station.registration_status}): accept it first."
        elif not free:
            busy = ", ".join(f"{c.number} {c.status}" for c in connectors) or "none known yet"
            self.unavailable = f"No connector is free to start on (connectors: {busy})."


class RemoteStopForm(form_of(REGISTRY["remote_stop"])):  # type: ignore[misc]
    def setup(self) -> None:
        active = (Transaction.objects.filter(station=self.station, stopped_at__isnull=True)
                  .select_related("connector").order_by("connector__number"))
        # No preselection: stopping someone's charge is chosen, never defaulted to the newest.
        self.fields["transaction"].choices = [("", "Choose a transaction…")] + [
            (tx.pk, f"#{tx.pk} on connector {tx.connector.number} ({tx.id_tag})") for tx in active
        ]
        self.fields["transaction"].required = True
        if len(self.fields["transaction"].choices) == 1:
            self.unavailable = "No transaction is active on this station."


ChangeConfigurationForm = form_of(REGISTRY["change_configuration"])


class RegistrationForm(StationForm):
    needs_online = False  # a database change; an online charger is also asked to boot again
    status = forms.ChoiceField(choices=[(RegistrationStatus.ACCEPTED, "Accept"), (RegistrationStatus.REJECTED, "Reject")])


Run = Callable[[Station, StationForm, Any], Awaitable[str]]


def _allowed(command: Command, user: Any) -> None:
    if not user.has_perm(command.permission):
        raise PermissionDenied


async def _remote_start(station: Station, form: StationForm, user: Any) -> str:
    params = form.params()
    status = await commands.remote_start(
        station.pk, params["connector"], params["id_tag"], requested_by=Actor.user(user)
    )
    action = commands.action_of("remote_start", station.ocpp_version)
    return f"{action} on connector {params['connector']}: the charger answered {status}"


async def _remote_stop(station: Station, form: StationForm, user: Any) -> str:
    params = form.params()
    status, transaction_id, _ = await commands.remote_stop(transaction_id=params["transaction"], actor=actor_of(user))
    action = commands.action_of("remote_stop", station.ocpp_version)
    return f"{action} of transaction {transaction_id}: the charger answered {status}"


async def _command(station: Station, form: StationForm, user: Any) -> str:
    assert form.command is not None
    answer = await commands.operate(station.pk, form.command.name, form.params(), actor=actor_of(user))
    action = commands.action_of(form.command.name, station.ocpp_version)
    return f"{action}: the charger answered {answer.get('status', answer)}"


async def _registration(station: Station, form: StationForm, user: Any) -> str:
    status = form.cleaned_data["status"]
    await call_service(services.set_registration_status, station.pk, status, actor=actor_of(user))
    text = f"Registration status set to {status}"
    if status == RegistrationStatus.ACCEPTED and station.is_online:
        # An accepted charger learns it at its next BootNotification: ask for one now.
        try:
            answer = await commands.operate(station.pk, "trigger_message", {"message": "BootNotification"},
                                            actor=actor_of(user))
            action = commands.action_of("trigger_message", station.ocpp_version)
            text += f"; asked the charger to boot again ({action}: {answer.get('status')})"
        except services.DomainError as error:
            text += f"; the charger could not be asked to boot again ({error})"
    return text


@dataclass(frozen=True)
class Operation:
    name: str
    title: str
    form: type[StationForm]
    run: Run
    button: str = "Send"
    do_not_call_in_templates = True  # the panel's template reads its fields

    async def __call__(self, station: Station, form: StationForm, user: Any) -> str:
        if form.command is not None:
            _allowed(form.command, user)
        return await self.run(station, form, user)


# The panel's names of two commands, kept from before the registry (bookmarked URLs, the panel's form ids).
_NAMES = {"change_availability": "availability", "trigger_message": "trigger_status"}
_FORMS: dict[str, type[StationForm]] = {"remote_start": RemoteStartForm, "remote_stop": RemoteStopForm,
                                        "change_configuration": ChangeConfigurationForm}
_RUNS: dict[str, Run] = {"remote_start": _remote_start, "remote_stop": _remote_stop}


def _operation(command: Command) -> Operation:
    return Operation(_NAMES.get(command.name, command.name), command.title,
                     _FORMS.get(command.name) or form_of(command), _RUNS.get(command.name, _command), command.button)


_REGISTRATION = Operation("registration", "Registration", RegistrationForm, _registration, "Set")
# The configuration's commands have their own page.
_OWN_PAGE = frozenset({"get_configuration", "change_configuration"})


def operations() -> dict[str, Operation]:
    """Every operation by its name in the admin's URLs: each registered command's, and the registration."""
    return {op.name: op for op in (*map(_operation, REGISTRY.values()), _REGISTRATION)}


def panel(station: Station | None = None) -> list[Operation]:
    """What the "Act on the charger" panel offers, in the registry's order: for a station, the commands its
    OCPP version has (a 2.0.1 station's device-model commands too)."""
    return [_operation(command) for name, command in REGISTRY.items()
            if name not in _OWN_PAGE and (station is None or offered(command, station))]
