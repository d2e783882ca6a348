"""python manage.py import_network FILE.csv

Stations and tokens in bulk, from one CSV file with a header row and a ``kind`` column:

    kind,id,name,accepted,password,type,status,group,expiry
    station,fora072,Car park level 2,yes,,,,,
    station,fora073,,,a-long-password-for-fora073,,,,
    token,04A2B3C4D5,,,,ISO14443,Accepted,FLEET-1,2027-01-31T00:00:00Z

``kind`` and ``id`` are required; the other columns may be left out or empty, which leaves
that field as it is (for a new row: as ``station add`` / ``idtag add`` would set it). A
station takes ``name``, ``accepted`` (yes/no) and ``password``; a token takes ``type``,
``status``, ``group`` and ``expiry``. Each row goes through the same service as the
``station`` and ``idtag`` commands, all of them in one transaction: one bad row and nothing
is imported, with every problem named by its line. Importing the same file again changes
nothing and says so.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from stations import services
from stations.errors import DomainError
from stations.management.provisioning import actor, report

COLUMNS = ("kind", "id", "name", "accepted", "password", "type", "status", "group", "expiry")
KIND_COLUMNS = {"station": {"name", "accepted", "password"}, "token": {"type", "status", "group", "expiry"}}
YES, NO = {"yes", "true", "1"}, {"no", "false", "0", ""}


@dataclass(frozen=True)
class Row:
    line: int
    kind: str
    cells: dict[str, str]

    @property
    def key(self) -> str:
        return self.cells["id"]


class Rollback(Exception):
    """Leaves the import's transaction, undoing every row, once a row was refused."""


class Command(BaseCommand):
    help = "Import stations and tokens from a CSV file (kind,id,name,accepted,password,type,status,group,expiry)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="CSV file, UTF-8, with a header row")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        try:
            text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is not part of "kind"
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"cannot read {path}: {error}") from None
        rows, errors = read_rows(text.splitlines())
        results = apply(rows, errors)
        if errors:
            lines = [f"line {number}: {problem}" for number, problem in sorted(errors)]
            raise CommandError(f"{path}: nothing imported, {len(errors)} problem(s):\n" + "\n".join(lines))
        self._summary(path, results)

    def _summary(self, path: Path, results: list[tuple[str, services.Provisioned]]) -> None:
        changed = [(noun, result) for noun, result in results if result.changed]
        for noun, result in changed:
            for line in report(noun, result):
                self.stdout.write(line)
        if not changed:
            self.stdout.write(f"{path}: nothing changed, its {len(results)} row(s) match the database")
            return
        created = sum(result.created for _, result in changed)
        self.stdout.write(f"{path}: {created} created, {len(changed) - created} updated, "
                          f"{len(results) - len(changed)} unchanged")


def read_rows(lines: list[str]) -> tuple[list[Row], list[tuple[int, str]]]:
    """The file's rows (blank lines and lines starting with # skipped), and the problems of the others
    (by line)."""
    reader = csv.reader(lines)
    header: list[str] = []
    rows: list[Row] = []
    errors: list[tuple[int, str]] = []
    seen: dict[tuple[str, str], int] = {}
    end = 0
    for cells in reader:
        number, end = end + 1, reader.line_num  # a quoted cell may span lines: a row starts after the last
        if not "".join(cells).strip() or cells[0].lstrip().startswith("#"):
            continue
        if not header:
            header = [name.strip().lower() for name in cells]
            if problem := _header_problem(header):
                return [], [(number, problem)]
            continue
        row, problem = _row(number, header, cells)
        if row is not None and (row.kind, row.key) in seen:
            problem = f"{row.kind} {row.key} is already on line {seen[row.kind, row.key]}"
        if row is None or problem:
            errors.append((number, problem))
        else:
            seen[row.kind, row.key] = number
            rows.append(row)
    return rows, errors if header else [(1, "the file is empty: it needs a header row (kind,id,...) and rows")]


def _header_problem(header: list[str]) -> str:
    if "kind" in header and "id" in header and set(header) <= set(COLUMNS) and len(set(header)) == len(header):
        return ""
    return (f"the header needs the columns kind and id and may have {', '.join(COLUMNS[2:])}, each once; "
            f"it has {','.join(header)}")


def _row(number: int, header: list[str], cells: list[str]) -> tuple[Row | None, str]:
    if len(cells) != len(header):
        return None, f"{len(cells)} cells where the header has {len(header)}"
    values = {name: cell.strip() for name, cell in zip(header, cells, strict=True)}
    kind = values.pop("kind").lower()
    if kind not in KIND_COLUMNS:
        return None, f"kind {kind!r} is neither station nor token"
    if not values["id"]:
        return None, "the id is empty"
    foreign = sorted(name for name, cell in values.items() if cell and name not in KIND_COLUMNS[kind] | {"id"})
    if foreign:
        return None, f"a {kind} takes no {', '.join(foreign)} (only {', '.join(sorted(KIND_COLUMNS[kind]))})"
    if kind == "station" and values.get("accepted", "").lower() not in YES | NO:
        return None, f"accepted {values['accepted']!r} is neither yes nor no"
    return Row(number, kind, {name: cell for name, cell in values.items() if cell}), ""


def apply(rows: list[Row], errors: list[tuple[int, str]]) -> list[tuple[str, services.Provisioned]]:
    """Every row through its service in one transaction, undone as a whole if any row is refused or
    ``errors`` already has a problem (so that one run names them all)."""
    results: list[tuple[str, services.Provisioned]] = []
    try:
        with transaction.atomic():
            for row in rows:
                try:
                    with transaction.atomic():  # a refusal after a write leaves the others' rows usable
                        results.append((row.kind, _APPLY[row.kind](row.cells)))
                except DomainError as error:
                    errors.append((row.line, f"{row.kind} {row.key}: {error}"))
            if errors:
                raise Rollback
    except Rollback:
        return []
    return results


def _station(cells: dict[str, str]) -> services.Provisioned:
    return services.provision_station(
        cells["id"], name=cells.get("name"), accepted=cells.get("accepted", "").lower() in YES,
        password=cells.get("password"), actor=actor("import_network"))


def _token(cells: dict[str, str]) -> services.Provisioned:
    return services.provision_token(
        cells["id"], type=cells.get("type"), status=cells.get("status"), group=cells.get("group"),
        expiry=cells.get("expiry"))


_APPLY: dict[str, Callable[[dict[str, str]], services.Provisioned]] = {"station": _station, "token": _token}
