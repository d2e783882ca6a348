"""Every event kind the code emits is declared in csms.event_kinds, with the fields it carries.

``emit`` checks nothing at run time (it is on the OCPP hot path), so this test
reads the sources instead: each call that names a kind (``emit`` and the
services that pass a kind through to it) must name a declared one, and a
payload written as a dict literal must have the declared fields.
"""

from __future__ import annotations

import ast
from pathlib import Path

from django.utils import timezone

from csms.event_kinds import DIRECT_KINDS, OWN_KINDS, PUBLIC_KINDS, STATE_KINDS, EventKind, Trait
from mobileapi.subscriptions import KNOWN_EVENTS

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("csms", "stations", "mobileapi")

# The functions that take a kind: the position of the kind and of the payload (None: built inside).
TAKES_KIND: dict[str, tuple[int, int | None]] = {
    "emit": (0, 2),
    "record_command": (0, 2),
    "record_firmware_status": (1, None),
}


def source_files() -> list[Path]:
    return [path for package in SOURCES for path in (ROOT / package).rglob("*.py") if "migrations" not in path.parts]


def argument(call: ast.Call, position: int | None, name: str) -> ast.expr | None:
    if position is not None and len(call.args) > position:
        return call.args[position]
    return next((keyword.value for keyword in call.keywords if keyword.arg == name), None)


def called_name(function: ast.expr) -> str | None:
    if isinstance(function, ast.Name):
        return function.id
    if isinstance(function, ast.Attribute):
        return function.attr
    return None


class KindCalls(ast.NodeVisitor):
    """Each call that names an event kind: (where, the kind or None, its payload's keys or None)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.functions: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
        self.found: list[tuple[str, str | None, set[str] | None]] = []
        self.problems: list[str] = []

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.functions.append(node)
        self.generic_visit(node)
        self.functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Call(self, node: ast.Call) -> None:
        name, call = called_name(node.func), node
        if name not in TAKES_KIND and node.args:  # handed to a runner: call_service(services.record_command, ...)
            name, call = called_name(node.args[0]), ast.Call(node.func, node.args[1:], node.keywords)
        if name in TAKES_KIND:
            kind_at, data_at = TAKES_KIND[name]
            where = f"{self.path.relative_to(ROOT)}:{node.lineno}"
            kind = self.kind(argument(call, kind_at, "kind"), where)
            data = argument(call, data_at, "data") if data_at is not None else None
            self.found.append((where, kind, self.keys(data) if data is not None else None))
        self.generic_visit(node)

    def kind(self, node: ast.expr | None, where: str) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "EventKind":
            return EventKind[node.attr].value if node.attr in EventKind.__members__ else f"EventKind.{node.attr}"
        function = self.functions[-1] if self.functions else None
        passed_through = (
            isinstance(node, ast.Name) and function is not None and function.name in TAKES_KIND
            and node.id in {arg.arg for arg in function.args.args}
        )
        if not passed_through:
            self.problems.append(f"{where}: the kind is neither a literal nor EventKind.X (a new pass-through "
                                 "function? add it to TAKES_KIND)")
        return None

    def keys(self, node: ast.expr) -> set[str] | None:
        """The payload's keys when the source shows them all (a dict literal, or a name bound to one)."""
        if isinstance(node, ast.Name):
            return self.bound_keys(node.id)
        if not isinstance(node, ast.Dict):
            return None
        keys: set[str] = set()
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:  # **spread
                spread = self.keys(value)
                if spread is None:
                    return None
                keys |= spread
            elif isinstance(key, ast.Constant) and isinstance(key.value, str):
                keys.add(key.value)
            else:
                return None
        return keys

    def bound_keys(self, name: str) -> set[str] | None:
        if not self.functions:
            return None
        keys: set[str] | None = None
        for node in ast.walk(self.functions[-1]):
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                    keys = self.keys(node.value) if isinstance(node.value, ast.Dict) else None
                    if keys is None:
                        return None
            elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
                if isinstance(node.value, ast.Name) and node.value.id == name and keys is not None:
                    if not (isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)):
                        return None
                    keys.add(node.slice.value)
        return keys


def kind_calls() -> tuple[list[tuple[str, str | None, set[str] | None]], list[str]]:
    found, problems = [], []
    for path in source_files():
        visitor = KindCalls(path)
        visitor.visit(ast.parse(path.read_text(), str(path)))
        found += visitor.found
        problems += visitor.problems
    return found, problems


def test_every_emitted_kind_is_declared():
    found, problems = kind_calls()
    assert not problems, problems
    declared = {kind.value for kind in EventKind}
    named = {kind for _, kind, _ in found if kind is not None}
    assert len(named) >= 15, named  # the scan sees the emit calls (it would pass vacuously otherwise)
    undeclared = [(where, kind) for where, kind, _ in found if kind is not None and kind not in declared]
    assert not undeclared, f"declare these in csms/event_kinds.py: {undeclared}"


def test_payloads_written_out_carry_the_declared_fields():
    found, _ = kind_calls()
    checked = 0
    for where, kind, keys in found:
        if kind is None or keys is None:
            continue
        payload = EventKind(kind).payload
        allowed = payload.__required_keys__ | payload.__optional_keys__
        assert keys <= allowed, f"{where}: {kind} carries undeclared {sorted(keys - allowed)}"
        assert payload.__required_keys__ <= keys, f"{where}: {kind} lacks {sorted(payload.__required_keys__ - keys)}"
        checked += 1
    assert checked >= 10


def test_the_sets_the_mobile_api_uses_come_from_the_declarations():
    assert PUBLIC_KINDS == {
        "station.connected", "station.disconnected", "connector.status.changed", "transaction.started",
        "transaction.stopped", "meter.update", "remote.start.result", "remote.stop.result",
    }
    assert STATE_KINDS == {
        "station.connected", "station.disconnected", "station.registration.changed", "connector.status.changed",
        "transaction.started", "transaction.stopped",
    }
    assert OWN_KINDS == {"remote.start.result", "remote.stop.result", "transaction.started", "transaction.stopped"}
    assert OWN_KINDS <= PUBLIC_KINDS and DIRECT_KINDS == {"session.expired"}
    assert KNOWN_EVENTS == PUBLIC_KINDS | {"meter.values.delta", "session.expired"}
    assert all(type(kind) is str for kind in PUBLIC_KINDS | STATE_KINDS | OWN_KINDS)  # plain strings for the ORM


def test_a_kind_is_a_plain_string_with_a_typed_payload():
    for kind in EventKind:
        assert isinstance(kind, str) and kind == kind.value and EventKind(kind.value) is kind
        assert hasattr(kind.payload, "__required_keys__"), kind  # a TypedDict
        assert isinstance(kind.traits, Trait)
    assert f"{EventKind.METER_UPDATE}" == "meter.update" and {"meter.update": 1}[EventKind.METER_UPDATE] == 1


def test_a_charging_session_writes_the_declared_payloads(db):
    """At run time too: a session through the services (no socket), each row's fields as declared."""
    from csms.models import Event
    from stations import services
    from stations.models import Station

    Station.objects.create(pk="ek1", registration_status="Accepted")
    services.station_connected("ek1", "p1!ek1")
    services.update_connector_status("ek1", 1, "Charging")
    transaction_id, _ = services.start_transaction("ek1", 1, "TAG-1", 1000, None)
    services.record_meter_values("ek1", 1, transaction_id, [{
        "timestamp": timezone.now().isoformat(),
        "sampled_value": [{"value": "1500", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}],
    }])
    services.stop_transaction("ek1", transaction_id, 2000, None, "Local")
    services.station_disconnected("ek1", "p1!ek1")
    rows = list(Event.objects.order_by("seq").values_list("kind", "data"))
    assert {kind for kind, _ in rows} >= {"station.connected", "connector.status.changed", "transaction.started",
                                         "meter.update", "transaction.stopped", "station.disconnected"}
    for kind, data in rows:
        payload = EventKind(kind).payload
        assert payload.__required_keys__ <= data.keys() <= payload.__required_keys__ | payload.__optional_keys__, kind
