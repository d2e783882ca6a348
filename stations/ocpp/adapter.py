"""What the consumer and the command transport need from one OCPP version.

An adapter is a value, not a base class: the version's ChargePoint does the
per-message work itself (the hot path has no indirection through here), and
the rest are tables read once per connection or per command.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from stations.errors import InvalidValue

# A neutral command's payload for one version: the command's checked parameters in,
# its payload (camelCase, as on the wire) out.
Builder = Callable[[Mapping[str, Any]], dict[str, Any]]
# A configuration as get_configuration's answer gives it: rows {key, value, readonly}, and unknown keys.
Configuration = tuple[list[dict[str, Any]], list[str]]


class ChargePoint(Protocol):
    """The central-system side of one charger's connection, as the consumer uses it."""

    registration_status: str

    def __init__(self, station_id: str, connection: Any, registration_status: str) -> None: ...

    async def handle_frame(self, frame: list, text: str) -> None:
        """Route one CALL/CALLRESULT/CALLERROR the consumer has parsed and checked."""

    def expects_result(self, unique_id: str) -> bool:
        """Whether a CALLRESULT/CALLERROR with this id answers the call in flight."""

    def call(self, payload: Any, suppress: bool = True) -> Awaitable[Any]: ...

    @staticmethod
    def build_call(action: str, payload: dict[str, Any]) -> Any:
        """The library's request object of a CSMS-initiated action (camelCase payload)."""

    @classmethod
    async def check_command(cls, action: str, payload: dict[str, Any]) -> None:
        """Raise ValueError if the version's schema refuses this command payload."""

    @staticmethod
    def answer_payload(result: Any) -> dict[str, Any]:
        """A call result as the camelCase dict the charger sent."""


@dataclass(frozen=True)
class Adapter:
    version: str  # what Station.ocpp_version records: "1.6"
    subprotocol: str  # the WebSocket subprotocol: "ocpp1.6"
    charge_point: type[ChargePoint]
    # Charger-initiated action names (metric labels stay bounded to these) and the
    # ones refused while the station is not accepted.
    charger_actions: frozenset[str]
    needs_acceptance: frozenset[str]
    # CSMS-initiated actions it sends, by their own names (station_command's raw form).
    csms_actions: frozenset[str]
    # Per registered command (stations/commands/registry.py): its action name and payload builder.
    commands: Mapping[str, tuple[str, Builder]]
    # What a Rejected station may still send (None: what a Pending one may).
    while_rejected: frozenset[str] | None = None
    # The longest token the version can carry (2.0.1's idToken: CiString36; the token column's width).
    token_max_length: int = 36
    # The library's error codes (OCPP 2.0.1 spellings) as this version spells them.
    error_codes: Mapping[str, str] = field(default_factory=dict)
    # A charger's answer as a command's event records it (a summary where the answer is large).
    recorded_answer: Callable[[str, dict[str, Any]], dict[str, Any]] = lambda action, answer: answer
    # get_configuration's answer read as a Configuration.
    configuration: Callable[[dict[str, Any]], Configuration] = lambda answer: ([], [])
    # Raise InvalidValue for an action an operator may not send as it is (its name and camelCase payload).
    check_raw: Callable[[str, dict[str, Any]], None] = lambda action, payload: None

    def check_token(self, token: str) -> None:
        """Refuse (400) a token this version cannot carry, before anything is asked of the charger."""
        if len(token) > self.token_max_length:
            raise InvalidValue(f"idTag must be at most {self.token_max_length} characters for an OCPP "
                               f"{self.version} station")

    def error_code(self, code: str) -> str:
        return self.error_codes.get(code, code)

    def action_of(self, command: str) -> str:
        return self.commands[command][0]

    def build(self, command: str, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        action, builder = self.commands[command]
        return action, builder(params)
