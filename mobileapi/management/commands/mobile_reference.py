"""python manage.py mobile_reference [--check]: regenerate docs/mobile-api.md §4 from the registry and transcripts."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mobileapi import reference


class Command(BaseCommand):
    help = ("Rewrite the generated per-action reference in docs/mobile-api.md (between its BEGIN/END markers) "
            "from the action registry and the golden transcripts in tests/transcripts/.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--check", action="store_true", help="Change nothing; exit 1 if the reference is stale")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["check"]:
            if reference.current() != reference.render():
                raise CommandError(f"{reference.DOC} is out of date: run python manage.py mobile_reference")
            self.stdout.write("The reference is up to date.")
            return
        try:
            changed = reference.write()
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"{'Rewrote' if changed else 'Unchanged:'} {reference.DOC}")
