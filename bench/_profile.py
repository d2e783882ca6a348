"""py-spy profiles of a bench's server: record one, and read it as a table of top functions.

    .venv/bin/python bench/_profile.py results/x.raw        # the table of a recorded profile

``record(pid, seconds, path)`` runs ``py-spy record --format raw`` (collapsed stacks, one
line per distinct stack with its sample count) on the server; ``top(path)`` sums them per
function: the share of samples in which it is on the stack (inclusive) and at the top
(self), per thread, so that the event loop and the ORM thread read apart.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def py_spy() -> str | None:
    local = ROOT / ".venv" / "bin" / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def record(pid: int, seconds: float, path: Path, rate: int = 100) -> subprocess.Popen | None:
    """Start recording ``pid`` for ``seconds`` into ``path`` (wait() on the result); None without py-spy."""
    tool = py_spy()
    if tool is None:
        return None
    return subprocess.Popen(
        [tool, "record", "-p", str(pid), "-d", str(max(1, round(seconds))), "-r", str(rate), "-f", "raw",
         "-o", str(path), "--threads", "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _function(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match["file"]
    for marker in ("site-packages/", "/work/main/", str(ROOT) + "/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{match['function']} ({file})"


def _thread(frame: str) -> str:
    # "thread (12345): ThreadPoolExecutor-0_0" -> the name without the id
    name = frame.split(":", 1)[-1].strip()
    if name.startswith("ThreadPoolExecutor"):
        return "ORM thread" if name.endswith("-0_0") else "worker threads"
    return "event loop" if name == "MainThread" else name


def top(path: Path, limit: int = 25) -> str:
    """A markdown table of the functions with the largest inclusive share of samples."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = stack.split(";")
        total += samples
        thread = _thread(frames[0]) if frames[0].startswith("thread") else "?"
        threads[thread] += samples
        calls = frames[1:] if frames[0].startswith("thread") else frames
        seen = set()
        for frame in calls:
            function = _function(frame)
            if function not in seen:
                seen.add(function)
                inclusive[f"{thread}: {function}"] += samples
        if calls:
            own[f"{thread}: {_function(calls[-1])}"] += samples
    if not total:
        return "(no samples)"
    lines = [f"{total} samples; by thread: " + ", ".join(
        f"{name} {100 * count / total:.0f} %" for name, count in threads.most_common()), "",
        "| inclusive | self | thread: function (file) |", "|---:|---:|---|"]
    boring = ("_bootstrap", "_bootstrap_inner", "Thread.run", "_worker", "run_forever", "_run_once",
              "_run_module_as_main", "_run_code", "<module>", "entrypoint", "Handle._run", "Server.run",
              "CommandLineInterface", "AsyncioSelectorReactor.run", "_WorkItem.run", "thread_handler",
              "SyncToAsync.__call__", "CursorWrapper._execute", "CursorWrapper.execute")
    shown = 0
    for key, count in inclusive.most_common():
        if any(word in key for word in boring):
            continue
        lines.append(f"| {100 * count / total:.1f} % | {100 * own[key] / total:.1f} % | {key} |")
        shown += 1
        if shown == limit:
            break
    return "\n".join(lines)


if __name__ == "__main__":
    print(top(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 25))
