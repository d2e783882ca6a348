"""The per-action reference of the mobile API, generated so it cannot drift.

docs/mobile-api.md §4 holds a block between ``BEGIN`` and ``END`` markers that
is this module's output: for each action of the registry (mobileapi/registry.py)
its summary, scope, authentication, parameters (from its JSON schema), result,
dialect differences and errors (from ``@action``), and its examples, taken
from the golden transcripts in tests/transcripts/ that the suite replays on
both endpoints (tests/test_transcripts.py). ``manage.py mobile_reference``
rewrites the block; tests/test_reference.py fails while it is out of date.
Everything outside the block is hand-written prose.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mobileapi.registry import ACTIONS, ActionSpec

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "mobile-api.md"
TRANSCRIPTS = ROOT / "tests" / "transcripts"
BEGIN = "<!-- BEGIN generated reference: python manage.py mobile_reference; do not edit by hand -->"
END = "<!-- END generated reference -->"
ENDPOINTS = ("ws", "mobile-client")
# The order of the sections: the documents' flow. An action not listed follows, by name.
ORDER = ["auth", "ping", "getStations", "getConnectorStatus", "startCharging", "stopCharging", "getMySessions",
         "getRecentTransactions", "getMeterValuesRecent", "subscribe", "unsubscribe", "getEventsRecent",
         "getEventsSince"]
COMPACT = 110  # frames up to this many characters are shown on one line


def _type(schema: dict[str, Any]) -> str:
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}s"
    return " or ".join(kind) if isinstance(kind, list) else kind


def _range(low: Any, high: Any, unit: str = "") -> str:
    unit = f" {unit}" if unit else ""
    if low is not None and high is not None:
        return f"{low}–{high}{unit}"
    if low is not None:
        return f"≥ {low}{unit}"
    return f"≤ {high}{unit}" if high is not None else ""


def _limits(schema: dict[str, Any]) -> str:
    parts = [
        _range(schema.get("minLength"), schema.get("maxLength"), "characters"),
        _range(schema.get("minimum"), schema.get("maximum")),
        _range(schema.get("minItems"), schema.get("maxItems"), "items"),
    ]
    if "pattern" in schema:
        parts.append(f"strings match `{schema['pattern']}`")
    if "enum" in schema:
        parts.append("one of " + ", ".join(f"`{json.dumps(v)}`" for v in schema["enum"]))
    if isinstance(schema.get("items"), dict):
        inner = _limits(schema["items"])
        if inner:
            parts.append(f"each {inner}")
    return "; ".join(p for p in parts if p) or "–"


def _parameters(spec: ActionSpec) -> list[str]:
    schema = spec.validator.schema
    properties = schema.get("properties", {})
    if not properties:
        return ["No parameters (`params` may be left out)."]
    required = set(schema.get("required", []))
    lines = ["| param | JSON type | required | limits | default |", "| --- | --- | --- | --- | --- |"]
    for name, member in properties.items():
        default = f"`{json.dumps(member['default'])}`" if "default" in member else "–"
        lines.append(f"| `{name}` | {_type(member)} | {'yes' if name in required else 'no'} | "
                     f"{_limits(member)} | {default} |")
    return lines


def _errors(spec: ActionSpec) -> list[str]:
    rows: list[tuple[int, str]] = []
    if spec.validator.schema.get("properties"):
        rows.append((400, "params.<name>: <what is wrong> (a parameter missing, unknown, of the wrong type or "
                          "outside its limits)"))
    if spec.auth:
        rows.append((401, "Not authenticated: send auth first"))
    if spec.scope:
        rows.append((403, f"Missing scope {spec.scope}"))
    rows.extend(spec.errors)
    lines = ["| code | message |", "| --- | --- |"]
    for code, message in sorted(rows, key=lambda row: row[0]):
        escaped = message.replace("|", "\\|")
        lines.append(f"| {code} | {escaped} |")
    return lines


def _pretty(value: Any, indent: int = 0) -> str:
    """JSON on one line where it fits, else one member per line (the house style of these docs)."""
    text = json.dumps(value, ensure_ascii=False)
    if len(text) + indent <= COMPACT or not isinstance(value, (dict, list)) or not value:
        return text
    inner = " " * (indent + 2)
    if isinstance(value, dict):
        members = [f"{inner}{json.dumps(k)}: {_pretty(v, indent + 2)}" for k, v in value.items()]
        return "{\n" + ",\n".join(members) + "\n" + " " * indent + "}"
    items = [f"{inner}{_pretty(item, indent + 2)}" for item in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


def _frame(frame: Any) -> list[str]:
    if isinstance(frame, str):
        return ["```text", frame, "```"]
    return ["```json", _pretty(frame), "```"]


def _request(step: dict[str, Any]) -> Any:
    frame = step["send"]
    if "pad" in step:
        frame = {**frame, "params": {**frame.get("params", {}), "pad": f"<{step['pad']} characters>"}}
    return frame


def _exchange(step: dict[str, Any], endpoint: str) -> list[str]:
    lines = [*_frame(_request(step)), ""]
    for frame in step["expect"][endpoint]:
        lines += [*_frame(frame), ""]
    return lines


def _example(transcript: dict[str, Any], name: str, step: dict[str, Any]) -> list[str]:
    endpoints = transcript.get("endpoints", ENDPOINTS)
    lines = [f"**{step['doc']}** (`tests/transcripts/{name}.json`: {transcript['title']})", ""]
    same = len(endpoints) > 1 and all(step["expect"][e] == step["expect"][endpoints[0]] for e in endpoints)
    if same:
        return lines + ["Both endpoints:", "", *_exchange(step, endpoints[0])]
    for endpoint in endpoints:
        lines += [f"`/{endpoint}`:", "", *_exchange(step, endpoint)]
    return lines


def load_transcripts(folder: Path = TRANSCRIPTS) -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def _examples_for(transcripts: dict[str, dict[str, Any]], action: str | None) -> list[str]:
    """The documented steps of ``action`` (None: of the transcripts about every action)."""
    lines: list[str] = []
    for name, transcript in transcripts.items():
        common = transcript.get("section") == "common"
        for step in transcript["steps"]:
            if "doc" not in step or "expect" not in step:
                continue
            sent = step["send"].get("action") if isinstance(step["send"], dict) else None
            if (action is None and common) or (not common and action is not None and sent == action):
                lines += _example(transcript, name, step)
    return lines


def render(transcripts: dict[str, dict[str, Any]] | None = None) -> str:
    import mobileapi.actions  # noqa: F401  (registers every action)

    transcripts = load_transcripts() if transcripts is None else transcripts
    names = [n for n in ORDER if n in ACTIONS] + sorted(set(ACTIONS) - set(ORDER))
    lines = [
        BEGIN,
        "",
        "The sections below are generated from the action registry and the golden transcripts (see "
        "[§4 above](#4-actions)). In the examples, values that differ from run to run are shown as "
        "placeholders: `<time>` an ISO time, `<ms>` milliseconds since the epoch (an integer where it is a "
        "whole value, as `ts`), `evt-<ms>-<seq>` an event id, `\"<int>\"` / `\"<float>\"` a measured number "
        "of that JSON type (energy, power, cost, ...). Transaction ids are numbered from 1 in each "
        "transcript. Pushes are shown in the order they arrived in the recording; see "
        "[§5.3](#53-delivery-guarantees) for the order that is guaranteed.",
        "",
        "### 4.0 Errors every action can answer",
        "",
        *_examples_for(transcripts, None),
    ]
    for number, name in enumerate(names, start=1):
        spec = ACTIONS[name]
        if spec.auth:
            needs = f"scope `{spec.scope}`" if spec.scope else "authentication only"
        else:
            needs = "nothing (it is how a connection authenticates)"
        lines += [
            f"### 4.{number} `{name}`",
            "",
            spec.summary or "(no summary: add one to its @action)",
            "",
            f"Needs: {needs}."
            + (" It waits for the charger in its own task: the connection answers other requests meanwhile."
               if spec.detached else ""),
            "",
            *_parameters(spec),
            "",
        ]
        if spec.result:
            lines += [f"Result: {spec.result}", ""]
        if spec.dialects:
            lines += [f"Dialects: {spec.dialects}", ""]
        lines += ["Errors:", "", *_errors(spec), ""]
        examples = _examples_for(transcripts, name)
        lines += examples if examples else ["(No example: add a documented step to a transcript.)", ""]
    while lines[-1] == "":
        lines.pop()
    return "\n".join([*lines, "", END])


def current(doc: Path | None = None) -> str:
    """The generated block as it is in the document now ('' if it has none)."""
    text = (doc or DOC).read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        return ""
    return text[start:end + len(END)]


def write(doc: Path | None = None) -> bool:
    """Replace the block in the document with a fresh one; True if it changed."""
    doc = doc or DOC
    text = doc.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{doc} has no {BEGIN!r} ... {END!r} block")
    fresh = text[:start] + render() + text[end + len(END):]
    if fresh == text:
        return False
    doc.write_text(fresh)
    return True
