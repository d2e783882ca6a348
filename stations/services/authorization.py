"""May a token charge: the IdTag table and the unknown-token policy."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone

from stations import rules
from stations.models import IdTag


def authorize(id_tag: str) -> dict[str, Any]:
    """The idTagInfo for a tag, from the IdTag table."""
    row = IdTag.objects.filter(id_tag=id_tag).select_related("parent").first()
    record = None
    if row is not None:
        record = rules.TagRecord(row.status, row.expiry_date, row.parent.id_tag if row.parent else None)
    return rules.id_tag_info(record, accept_unknown=settings.OCPP_ACCEPT_UNKNOWN_IDTAGS, now=timezone.now())
