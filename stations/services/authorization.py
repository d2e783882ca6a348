"""May a token charge: the IdTag table and the unknown-token policy; tokens as an operator
provisions them (``manage.py idtag``, ``import_network``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from csms.events import atomic
from stations import rules, values
from stations.errors import InvalidValue
from stations.models import IdTag, IdTagStatus, TokenType
from stations.services._common import iso
from stations.services.provisioning import Provisioned


def authorize(token: str, token_type: str | None = None) -> rules.Authorization:
    """May ``token`` charge: its row in the IdTag table, or the unknown-token policy.

    ``token_type`` is 2.0.1's idToken type (1.6 has none: None). A token of type NoAuthorization
    needs no authorization (2.0.1 C01); a row of another type than the one presented is not this
    token (2.0.1 identifies a token by value and type) and makes it Invalid.
    """
    if token_type == TokenType.NO_AUTHORIZATION:
        return {"status": "Accepted", "expires_at": None, "group_id": None}
    row = IdTag.objects.filter(id_tag=token).only("status", "expiry_date", "group_id", "type").first()
    if row is not None and token_type is not None and row.type != token_type:
        # Not this token, and no other can be provisioned with its value (IdTag is unique by value): Invalid,
        # whatever the unknown-token policy says (a Blocked card re-sent as a key code stays refused).
        return {"status": "Invalid", "expires_at": None, "group_id": None}
    record = None
    if row is not None:
        record = rules.TagRecord(row.status, row.expiry_date, row.group_id)
    return rules.authorization(record, accept_unknown=settings.OCPP_ACCEPT_UNKNOWN_IDTAGS, now=timezone.now())


# --- Tokens as an operator provisions them (manage.py idtag, import_network) --------------

def provision_token(
    value: str, *, type: str | None = None, status: str | None = None, group: str | None = None,
    expiry: str | None = None,
) -> Provisioned:
    """Create or update a token; what is not given (None) stays as it is, so the same call twice changes
    nothing. ``group`` and ``expiry`` given empty clear them; ``expiry`` is ISO 8601 (UTC unless it says)."""
    fields = _token_fields(value, type, status, group, expiry)
    with atomic():
        token = IdTag.objects.select_for_update().filter(id_tag=value).first()
        if token is None:
            token = IdTag.objects.create(id_tag=value, **fields)
            return Provisioned(value, True, _token_summary(token))
        changed = {name: new for name, new in fields.items() if getattr(token, name) != new}
        if changed:
            IdTag.objects.filter(pk=token.pk).update(**changed)
    return Provisioned(value, False, tuple(
        f"{_LABELS[name]} {_shown(getattr(token, name))} -> {_shown(new)}" for name, new in changed.items()))


_LABELS = {"type": "type", "status": "status", "group_id": "group", "expiry_date": "expiry"}


def _token_fields(value: str, type: str | None, status: str | None, group: str | None,
                  expiry: str | None) -> dict[str, Any]:
    """The columns given, checked: a refusal names the value and what it may be."""
    _check_token_text("token", "id_tag", value, allow_empty=False)
    fields: dict[str, Any] = {}
    if type is not None:
        fields["type"] = _choice("type", type, TokenType)
    if status is not None:
        fields["status"] = _choice("status", status, IdTagStatus)
    if group is not None:
        fields["group_id"] = _check_token_text("group", "group_id", group, allow_empty=True)
    if expiry is not None:
        fields["expiry_date"] = _expiry(expiry)
    return fields


def _check_token_text(what: str, field: str, text: str, *, allow_empty: bool) -> str:
    """A token's value as chargers send it: printable ASCII (OCPP's CiString) that its column holds."""
    if not text and allow_empty:
        return text
    if not text or not (text.isascii() and text.isprintable()) or text != text.strip():
        raise InvalidValue(f"{what} {text!r} must be printable ASCII characters, without spaces around them")
    return values.column_text(IdTag, field, text, what)


def _choice(what: str, value: str, choices: type[models.TextChoices]) -> str:
    if value not in choices.values:
        raise InvalidValue(f"{what} {value!r} is not one of {', '.join(choices.values)}")
    return value


def _expiry(text: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidValue(f"expiry {text!r} is not an ISO 8601 date or time, e.g. 2027-01-31T00:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, dt.datetime):
        return iso(value) or ""
    return repr(value) if value == "" else str(value)


def _token_summary(token: IdTag) -> tuple[str, ...]:
    summary = [f"type {token.type}", f"status {token.status}"]
    if token.group_id:
        summary.append(f"group {token.group_id}")
    if token.expiry_date:
        summary.append(f"expiry {_shown(token.expiry_date)}")
    return tuple(summary)


def remove_token(value: str) -> bool:
    """Delete a token (its API-key bindings with it); False: there was none. Transactions keep its value."""
    deleted, _ = IdTag.objects.filter(id_tag=value).delete()
    return bool(deleted)
