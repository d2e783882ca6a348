"""The generated per-action reference (docs/mobile-api.md §4) matches the registry and the transcripts.

The block between the BEGIN/END markers of docs/mobile-api.md is
``mobileapi.reference.render()``: each action's scope, authentication,
parameters (from its JSON schema), result, dialects and errors (from its
``@action``), and its examples (the golden transcripts of
tests/test_transcripts.py). Changing an action's schema, scope or metadata, or
re-recording a transcript, without regenerating fails here.
"""

from __future__ import annotations

import difflib

from mobileapi import reference
from mobileapi.registry import ACTIONS

FIX = "run: .venv/bin/python manage.py mobile_reference (then review and commit docs/mobile-api.md)"


def test_the_checked_in_reference_is_the_generated_one():
    expected, actual = reference.render(), reference.current()
    assert actual, f"{reference.DOC} has no generated block ({reference.BEGIN!r} ... {reference.END!r})"
    if actual != expected:
        diff = "\n".join(list(difflib.unified_diff(actual.splitlines(), expected.splitlines(), "checked in",
                                                   "generated", lineterm=""))[:60])
        raise AssertionError(f"docs/mobile-api.md §4 is out of date; {FIX}\n{diff}")


def test_every_action_is_documented_with_an_example():
    block = reference.render()
    for name, spec in ACTIONS.items():
        assert spec.summary, f"@action({name!r}) has no summary"
        assert f"`{name}`" in block
    assert "(No example" not in block, "an action has no documented transcript step"


def test_the_reference_shows_what_the_schema_says():
    """The parameters table is the schema: a limit changed in the registry changes the document."""
    block = reference.render()
    assert "| `limit` | integer | no | 1–100 | `20` |" in block  # getMySessions
    assert "| `connectorId` | integer | yes | ≥ 1 | – |" in block
    assert "| 403 | Missing scope write:charging |" in block
    assert "Needs: nothing (it is how a connection authenticates)." in block


def test_the_check_command_fails_on_a_stale_reference(tmp_path, monkeypatch):
    from django.core.management import CommandError, call_command

    doc = tmp_path / "mobile-api.md"
    doc.write_text(f"# x\n\n{reference.BEGIN}\nstale\n{reference.END}\n\nprose\n")
    monkeypatch.setattr(reference, "DOC", doc)
    try:
        call_command("mobile_reference", "--check")
    except CommandError as error:
        assert "mobile_reference" in str(error)
    else:
        raise AssertionError("--check passed on a stale reference")
    call_command("mobile_reference")
    assert doc.read_text() == f"# x\n\n{reference.render()}\n\nprose\n"
    call_command("mobile_reference", "--check")


def test_a_registry_change_without_regenerating_is_caught(monkeypatch):
    """What the check test guards against: a limit changed in @action changes the generated block."""
    import dataclasses

    from mobileapi.registry import Validator

    spec = ACTIONS["getMySessions"]
    schema = {**spec.validator.schema, "properties": {"limit": {**spec.validator.schema["properties"]["limit"],
                                                                "maximum": 50}}}
    monkeypatch.setitem(ACTIONS, "getMySessions", dataclasses.replace(spec, validator=Validator(schema)))
    block = reference.render()
    assert block != reference.current()
    assert "| `limit` | integer | no | 1–50 | `20` |" in block
