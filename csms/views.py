"""Plain HTTP endpoints of the CSMS itself (the admin and /api/ live elsewhere)."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition of this process. Guarded by METRICS_TOKEN (a bearer
    token) when set; without a token it is open in development and off (404)
    in production."""
    token = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            response = HttpResponse("metrics need Authorization: Bearer <METRICS_TOKEN>\n", status=401,
                                    content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    elif settings.PRODUCTION:
        raise Http404("metrics are off: set METRICS_TOKEN")
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
