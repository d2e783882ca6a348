"""Shared plumbing for the benchmarks in bench/: a throwaway daphne server and /proc readings.

Not a benchmark itself. ``chargers_held.py`` and ``remote_start_rtt.py`` import it
(``bench/`` is on ``sys.path`` when they run as ``python bench/<script>.py``).
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


# --- Numbers ------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for an empty list."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n*q/100), at least 1
    return ordered[int(min(rank, len(ordered))) - 1]


def summary_ms(values_s: list[float]) -> str:
    """p50/p90/p99/max of a list of seconds, in ms."""
    if not values_s:
        return "n=0"
    return (
        f"n={len(values_s)} p50={percentile(values_s, 50) * 1000:.1f} p90={percentile(values_s, 90) * 1000:.1f} "
        f"p99={percentile(values_s, 99) * 1000:.1f} max={max(values_s) * 1000:.1f} ms"
    )


# --- Limits, ports ---------------------------------------------------------------------

def raise_nofile(wanted: int = 65536) -> int:
    """Raise RLIMIT_NOFILE (children inherit it); return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target_hard in (max(hard, wanted), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, target_hard), target_hard))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


_HANDED_OUT: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def run_generator(cpus: str | None, main, cpu_key: str) -> dict:
    """A load generator's process body: pinned to ``cpus``, ``asyncio.run(main())``; its result dict
    (or ``{"error": ...}``) with the process's CPU seconds under ``cpu_key``.

    The collector is off: its whole-heap passes over 10,000 connections' objects stopped the
    generator's loop and counted in the server's round trips (the reference's storm call p99:
    414 ms with it, 4.7 ms without). A run is bounded (minutes); its cycles go with the process.
    """
    if cpus:
        os.sched_setaffinity(0, cpu_set(cpus))
    raise_nofile()
    gc.disable()
    try:
        result = asyncio.run(main())
    except BaseException as error:  # noqa: BLE001 - the parent reports it
        result = {"error": f"{type(error).__name__}: {error}"}
    cpu = os.times()
    result[cpu_key] = cpu.user + cpu.system
    return result


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on, for a server started right after.

    Not one the kernel hands out (``bind(0)``): those come from the ephemeral range, which
    outgoing connections (to PostgreSQL, to Redis, to the server under test) draw from too,
    so in the moment between choosing and the server's ``listen`` one of them can take it
    (CI saw ``Address already in use``). A port below that range is never taken implicitly;
    only another process choosing it on purpose could, and each is chosen at random and
    handed out once per process.
    """
    low, high = _ephemeral_range()
    span = (10_000, low - 1) if low > 11_000 else (high + 1, 65_535)
    rng = secrets.SystemRandom()
    for _ in range(200):
        port = rng.randint(*span)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free port in {span[0]}-{span[1]} after 200 tries")


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# --- /proc ------------------------------------------------------------------------------

def proc_cpu_seconds(pid: int) -> float:
    """utime+stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def proc_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def system_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    total = sum(parts[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def tcp_listen_counters() -> dict[str, int]:
    """System-wide TcpExt ListenOverflows / ListenDrops (the accept queue was full)."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for head, values in zip(lines[::2], lines[1::2]):
        if head.startswith("TcpExt:"):
            row = dict(zip(head.split()[1:], (int(v) for v in values.split()[1:])))
            return {k: row.get(k, 0) for k in ("ListenOverflows", "ListenDrops", "TCPReqQFullDrop")}
    return {}


# --- Database -----------------------------------------------------------------------------

def create_postgres_db(url: str) -> None:
    """Drop and create the database named in ``url`` (its name must contain 'bench')."""
    import psycopg

    name = urlparse(url).path.lstrip("/")
    if "bench" not in name or not name.replace("_", "").isalnum():
        raise SystemExit(f"refusing to drop/create database {name!r}: use a name containing 'bench'")
    admin = urlparse(url)._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_postgres_db(url: str) -> None:
    import psycopg

    name = urlparse(url).path.lstrip("/")
    if "bench" not in name:
        return
    admin = urlparse(url)._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- The server under test -------------------------------------------------------------------

class Server:
    """One daphne process on a fresh, migrated database in a temporary directory."""

    def __init__(self, *, database_url: str | None = None, env: dict[str, str] | None = None,
                 daphne_args: list[str] | None = None, root: Path | None = None, cpus: str | None = None,
                 asgi_server: str = "daphne", backlog: int | None = None) -> None:
        """``root``: the checkout to serve (another one, e.g. the code before a change, to compare);
        ``cpus``: pin the server to these CPUs (``taskset -c``), away from the load generator;
        ``asgi_server``: daphne (production), uvicorn (the tests' server), or bare-ocpp (the
        reference: the ocpp library alone, bench/reference_ocpp.py);
        ``backlog``: daphne's listen backlog (a Twisted endpoint; daphne's -b/-p listen with 50)."""
        self.backlog = backlog
        self.root = root or ROOT
        self.cpus = cpus
        self.asgi_server = asgi_server
        self.tmp = Path(tempfile.mkdtemp(prefix="csms-bench-"))
        self.own_postgres = bool(database_url)
        self.database_url = database_url or f"sqlite:///{self.tmp / 'bench.sqlite3'}"
        self.port = free_port()
        self.daphne_args = daphne_args or []
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CHANNEL_PREFIX")},
            "DJANGO_SETTINGS_MODULE": "csms.settings",
            "DATABASE_URL": self.database_url,
            "LOG_LEVEL": "WARNING",
            "LOG_DIR": str(self.tmp / "logs"),  # not the repository's logs/
            "OCPP_UNKNOWN_STATIONS": "accept",
            "DJANGO_DEBUG": "false",  # as in production: no per-query debug bookkeeping
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.process: subprocess.Popen | None = None
        self.stderr_path = self.tmp / "daphne.stderr"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        if self.own_postgres:
            create_postgres_db(self.database_url)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v0"],
            cwd=self.root, env=self.env, check=True,
        )
        if self.asgi_server == "bare-ocpp":  # the reference: bench/reference_ocpp.py, no CSMS at all
            command = [sys.executable, str(Path(__file__).resolve().parent / "reference_ocpp.py"),
                       "--port", str(self.port)]
        elif self.asgi_server == "uvicorn":
            command = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(self.port),
                       "--lifespan", "off", "--ws", "websockets-sansio", "--log-level", "warning",
                       "csms.asgi:application"]
        else:
            listen = (["-e", f"tcp:port={self.port}:interface=127.0.0.1:backlog={self.backlog}"] if self.backlog
                      else ["-b", "127.0.0.1", "-p", str(self.port)])
            command = [sys.executable, "-m", "daphne", *listen, *self.daphne_args, "csms.asgi:application"]
        if self.cpus:
            command = ["taskset", "-c", self.cpus, *command]
        self.stderr_file = open(self.stderr_path, "wb")
        self.process = subprocess.Popen(command, cwd=self.root, env=self.env, stdout=subprocess.DEVNULL,
                                        stderr=self.stderr_file)
        deadline = time.monotonic() + 30
        while not answers(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.asgi_server} exited: {self.stderr_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.asgi_server} did not start in 30 s")
            time.sleep(0.1)
        time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if getattr(self, "stderr_file", None):
            self.stderr_file.close()

    def query(self, sql: str) -> list[tuple]:
        """Run one read-only SQL statement against the server's database."""
        if self.database_url.startswith("sqlite"):
            import sqlite3

            with sqlite3.connect(f"file:{self.database_url.split(':///', 1)[1]}?mode=ro", uri=True, timeout=20) as conn:
                return conn.execute(sql).fetchall()
        import psycopg

        with psycopg.connect(self.database_url.replace("postgres://", "postgresql://", 1)) as conn:
            return conn.execute(sql).fetchall()

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def cleanup(self) -> None:
        self.stop()
        if self.own_postgres:
            try:
                drop_postgres_db(self.database_url)
            except Exception as error:  # noqa: BLE001 - report, do not mask the results
                print(f"(could not drop the bench database: {error})")
        shutil.rmtree(self.tmp, ignore_errors=True)


_VARIABLE = [
    (re.compile(r"Task-\d+"), "Task-N"),
    (re.compile(r"0x[0-9a-f]+"), "ADDR"),
    (re.compile(r"\d+(\.\d+)?"), "N"),
]


def stderr_digest(text: str, limit: int = 12) -> list[str]:
    """The distinct WARNING/ERROR lines of a server's stderr, with counts (timestamps, pids, ids cut)."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        if not any(level in line for level in (" WARNING ", " ERROR ", " CRITICAL ", "Traceback", "Error:")):
            continue
        parts = line.split(" ", 4)
        key = parts[4] if len(parts) == 5 and parts[2] in ("WARNING", "ERROR", "CRITICAL") else line
        for pattern, replacement in _VARIABLE:
            key = pattern.sub(replacement, key)
        key = key[:300]
        counts[key] = counts.get(key, 0) + 1
    ordered = sorted(counts.items(), key=lambda item: -item[1])
    return [f"{n:6d} x {text}" for text, n in ordered[:limit]]


async def ocpp_call(ws, uid: str, action: str, payload: dict, timeout: float, *, callerror_ok: bool = False) -> float:
    """Send one CALL and wait for its answer; return the round trip (s). Stale answers are skipped.

    A CALLERROR raises RuntimeError unless ``callerror_ok`` (then it counts as the answer).
    """
    import asyncio
    import json

    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    await ws.send(json.dumps([2, uid, action, payload]))
    deadline = loop.time() + timeout
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError
        frame = json.loads(await asyncio.wait_for(ws.recv(), remaining))
        if frame[1] != uid or frame[0] not in (3, 4):
            continue
        if frame[0] == 4 and not callerror_ok:
            raise RuntimeError(f"CALLERROR {frame[2]}")
        return time.perf_counter() - started


def cpu_set(spec: str) -> set[int]:
    """The CPUs of a taskset-style list such as "0" or "0-1,3"."""
    cpus: set[int] = set()
    for part in spec.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus
