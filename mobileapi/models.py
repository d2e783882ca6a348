"""Mobile API keys."""

from __future__ import annotations

import hashlib
import secrets

from django.db import models


class Scope(models.TextChoices):
    READ_STATIONS = "read:stations"
    WRITE_CHARGING = "write:charging"


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
