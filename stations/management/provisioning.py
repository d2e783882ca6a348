"""What the provisioning commands (station, idtag, import_network) share: how they name
themselves in the event log, say what a service did and turn its refusals into errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from django.core.management.base import CommandError

from stations.actors import Actor
from stations.errors import DomainError
from stations.services import Provisioned


def actor(command: str) -> str:
    """How the event log names a change made by this management command."""
    return str(Actor.system(command))


def report(noun: str, result: Provisioned) -> list[str]:
    """The lines saying what provisioning one station or token did (a password set now on its own line)."""
    if result.created:
        lines = [f"Created {noun} {result.key}" + (f": {', '.join(result.changes)}" if result.changes else "")]
    elif result.changes:
        lines = [f"Updated {noun} {result.key}: {', '.join(result.changes)}"]
    else:
        lines = [f"{noun.capitalize()} {result.key} unchanged"]
    if result.password:
        lines.append(f"  password (shown once): {result.password}")
    return lines


@contextmanager
def refusals() -> Iterator[None]:
    """A domain refusal as a CommandError: its message, a non-zero exit and no traceback."""
    try:
        yield
    except DomainError as error:
        raise CommandError(str(error)) from None


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], write: Callable[[str], None]) -> None:
    """Columns padded to their widest cell, for the list subcommands."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    for row in (headers, *rows):
        write("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
