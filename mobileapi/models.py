"""Mobile API keys."""

from __future__ import annotations

import hashlib
import secrets

from django.db import models


class Scope(models.TextChoices):
    READ_STATIONS = "read:stations"
    WRITE_CHARGING = "write:charging"
    # Reset, reconfigure, take out of service: a back-office integration's, never a phone app's.
    OPERATE_STATIONS = "operate:stations"


# What a phone app's key has: the default of createapikey, bootstrap_dev and the admin's checkboxes.
APP_SCOPES = (Scope.READ_STATIONS.value, Scope.WRITE_CHARGING.value)


def hash_key(raw_key: str) -> str:
    # Keys are long random strings, so one SHA-256 suffices and keeps the
    # lookup an indexed equality instead of a slow per-row password check.
    return hashlib.sha256(raw_key.encode()).hexdigest()


def generate_key() -> str:
    return "csk_" + secrets.token_urlsafe(32)


class ApiKey(models.Model):
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False, help_text="First characters, to recognise a key")
    is_active = models.BooleanField(default=True)
    scopes = models.JSONField(default=list)
    id_tags = models.ManyToManyField("stations.IdTag", blank=True, related_name="api_keys")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "apikeys"  # the name both mobile API documents use
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def set_key(self, raw_key: str) -> None:
        self.key_hash = hash_key(raw_key)
        self.prefix = raw_key[:8]


class MobileSession(models.Model):
    """One mobile API connection, as support sees it.

    Written in batches by each server process's session watcher (never once
    per message): rows appear within ``MOBILE_SESSION_CHECK_SECONDS`` of a
    connect, and ``seen_at`` is refreshed while the process holds the socket,
    so a session whose process died shows as lost instead of live forever.
    """

    connection_id = models.CharField(max_length=32, unique=True, editable=False)
    endpoint = models.CharField(max_length=20, help_text="/ws or /mobile-client")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="sessions")
    session_id = models.CharField(max_length=40, blank=True, help_text="Empty until the app sends auth")
    server = models.CharField(max_length=100, help_text="host:pid of the server process holding the socket")
    client_address = models.CharField(max_length=64, blank=True)
    connected_at = models.DateTimeField()
    last_message_at = models.DateTimeField(null=True, blank=True)
    subscriptions = models.JSONField(default=list)
    seen_at = models.DateTimeField(help_text="Last time its server process vouched for the socket")
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=32, blank=True)
    end_requested_at = models.DateTimeField(null=True, blank=True)
    end_requested_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-connected_at"]
        verbose_name = "mobile session"
        permissions = [("end_mobilesession", "Can end a live mobile session")]
        indexes = [
            models.Index(fields=["server", "ended_at"]),
            models.Index(fields=["ended_at", "seen_at"]),
        ]

    def __str__(self) -> str:
        return self.session_id or self.connection_id
