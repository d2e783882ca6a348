"""Prometheus metrics of one server process (``/metrics``, see docs/operations.md).

Each daphne process serves its own figures: Prometheus scrapes every process
(its own port), and queries sum them. Counters are bumped where the work is
done; gauges are set when they change.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

chargers_connected = Gauge("csms_chargers_connected", "Charger WebSockets held by this process")
mobile_sessions = Gauge("csms_mobile_sessions", "Authenticated mobile API connections held by this process")
mobile_connections = Gauge("csms_mobile_connections", "Mobile API connections held by this process (any state)")
messages = Counter("csms_messages_total", "Messages handled, by protocol, action and result",
                   ["protocol", "action", "result"])
message_seconds = Histogram("csms_message_handling_seconds", "Time to handle one incoming message",
                            ["protocol", "action"], buckets=LATENCY_BUCKETS)
events_emitted = Counter("csms_events_emitted_total", "Events written to the event log", ["kind"])
events_pushed = Counter("csms_events_pushed_total", "Event pushes sent to mobile connections", ["kind"])
pushes_dropped = Counter("csms_pushes_dropped_total",
                         "Pushes dropped for a connection whose socket did not drain (mobileapi/pushlines.py)")
push_seconds = Histogram("csms_push_latency_seconds", "From an event's creation to its fan-out in this process",
                         buckets=LATENCY_BUCKETS)
remote_commands = Counter("csms_remote_commands_total", "CSMS-initiated OCPP commands by outcome",
                          ["action", "outcome"])
processes_declared_dead = Counter("csms_processes_declared_dead_total",
                                  "Server processes this process found dead (their stations marked offline)")
unmatched_results = Counter("csms_ocpp_unmatched_results_total",
                            "CALLRESULTs and CALLERRORs from chargers that answered no call in flight (dropped)")
channel_send_failures = Counter("csms_channel_send_failures_total", "Channel-layer sends that failed", ["where"])
connections_dropped = Counter("csms_server_connections_dropped_total",
                              "Connections the server dropped to protect itself: slow_reader (close code 4005), "
                              "header_timeout (no complete request in HTTP_HEADER_TIMEOUT)", ["reason"])
channel_layer_reconnects = Counter("csms_channel_layer_reconnects_total",
                                   "Times this process's channel layer found Redis answering again after losing it")
channel_layer_available = Gauge("csms_channel_layer_available",
                                "1 while this process's channel layer reaches Redis (always 1 without Redis)")
channel_layer_available.set(1)
auth_failures = Counter("csms_auth_failures_total",
                        "Failed authentications (wrong API key, wrong station password), by endpoint", ["endpoint"])
auth_lockout_refusals = Counter("csms_auth_lockout_refusals_total",
                                "Authentications refused unchecked: the client address is locked out (csms/lockout.py)",
                                ["endpoint"])
group_commit_size = Histogram("csms_group_commit_messages", "Charger messages written per group commit (csms/groupcommit.py)",
                              buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500))
group_commit_reruns = Counter("csms_group_commit_reruns_total",
                              "Group commits rolled back by a message that failed after writing (each then ran alone)")
handshakes_pending = Gauge("csms_websocket_handshakes_pending", "WebSocket handshakes in flight in this process")
handshakes_refused = Counter("csms_websocket_handshakes_refused_total",
                             "WebSocket handshakes refused because too many were in flight (HTTP 503)", ["endpoint"])


def command_outcome(answer_status: str | None) -> str:
    """accepted / rejected / other, from a charger's status word."""
    status = (answer_status or "").lower()
    return status if status in ("accepted", "rejected") else "answered"


def observe_push(event_ts_ms: int) -> None:
    push_seconds.observe(max(time.time() - event_ts_ms / 1000, 0.0))
