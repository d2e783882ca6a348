"""Did a connection reach us over TLS?

Three servers, three ways of telling:

- an ASGI server that terminates TLS and says so in the scope (uvicorn,
  hypercorn: ``scheme`` is ``wss``/``https``);
- daphne's own TLS endpoint (``-e ssl:PORT:...``), which does not put a
  ``scheme`` in a WebSocket's scope (django/daphne#538): the port it arrived
  on is listed in ``TLS_PORTS``;
- nginx terminating TLS in front (``BEHIND_PROXY``): its
  ``X-Forwarded-Proto: https`` header, trusted only then.

And which client certificate did nginx verify (security profile 3,
``client_certificate``, with ``OCPP_CLIENT_CERT_HEADERS`` too)? Only nginx can
tell: daphne does not ask for one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

_SECURE_SCHEMES = frozenset({"wss", "https"})


def forwarded_proto(scope: dict[str, Any]) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-proto":
            return value.decode("latin1").split(",")[0].strip().lower()
    return ""


def is_secure(scope: dict[str, Any]) -> bool:
    if scope.get("scheme") in _SECURE_SCHEMES:
        return True
    server = scope.get("server")
    if server and server[1] in settings.TLS_PORTS:
        return True
    return settings.BEHIND_PROXY and forwarded_proto(scope) in _SECURE_SCHEMES


# --- Security profile 3: the client certificate nginx verified ---------------------------

@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """What nginx says of the client certificate a charger presented (security profile 3)."""

    verified: bool  # nginx checked it against the stations' CA (ssl_verify_client): SUCCESS
    common_name: str | None  # the subject's CN; None if it has none, or more than one
    detail: str  # nginx's verification result, or why the subject could not be read (for the log)


def client_certificate(scope: dict[str, Any]) -> ClientCertificate | None:
    """The client certificate nginx verified and passed on, None if the charger presented none.

    Read only behind nginx (``BEHIND_PROXY``) and with ``OCPP_CLIENT_CERT_HEADERS``
    on: the operator's statement that the proxy sets ``X-SSL-Client-Verify``
    (``$ssl_client_verify``: SUCCESS, FAILED:reason, NONE) and ``X-SSL-Client-S-DN``
    (``$ssl_client_s_dn``, RFC 4514) on every request it forwards, overwriting
    whatever the client sent (deploy/nginx/csms-proxy.conf, on every server
    block). ``BEHIND_PROXY`` alone is not enough: a proxy that passes the
    client's own headers (an older snippet, another proxy) would let anyone log
    in as any station. Otherwise the headers are the client's claim: ignored.
    """
    if not (settings.BEHIND_PROXY and settings.OCPP_CLIENT_CERT_HEADERS):
        return None
    verify = subject = ""
    for name, value in scope.get("headers", []):
        if name == b"x-ssl-client-verify":
            verify = value.decode("latin1").strip()
        elif name == b"x-ssl-client-s-dn":
            subject = value.decode("latin1")
    if verify in ("", "NONE"):
        return None
    if verify != "SUCCESS":
        return ClientCertificate(False, None, verify[:120])
    names = subject_attributes(subject)
    common_names = [value for attribute, value in names or () if attribute.upper() in ("CN", "2.5.4.3")]
    if len(common_names) != 1:
        why = "unreadable subject" if names is None else f"{len(common_names)} common names in the subject"
        return ClientCertificate(True, None, why)
    return ClientCertificate(True, common_names[0], verify)


_DN_SPECIAL = frozenset(',+"\\<>;=# ')


def subject_attributes(dn: str) -> list[tuple[str, str]] | None:
    """The (type, value) pairs of an RFC 4514 distinguished name as nginx prints it
    (``CN=cs1,O=Example``; ``\\,`` and ``\\C3\\A9`` escapes); None if it cannot be read.

    A value nginx dumps as hex (``#04...``, an attribute OpenSSL cannot print) is
    returned as it is printed: it never equals a station id.
    """
    pairs: list[tuple[str, str]] = []
    attribute, value = "", bytearray()
    in_value = False
    i = 0
    while i < len(dn):
        ch = dn[i]
        if not in_value:
            if ch == "=":
                attribute, in_value = attribute.strip(), True
            elif ch in ",+":
                return None
            else:
                attribute += ch
            i += 1
            continue
        if ch == "\\":
            pair = dn[i + 1:i + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                value.append(int(pair, 16))
                i += 3
                continue
            if i + 1 < len(dn) and dn[i + 1] in _DN_SPECIAL:
                value += _raw(dn[i + 1])
                i += 2
                continue
            return None
        if ch in ",+":
            pairs.append((attribute, _text(value)))
            attribute, value, in_value = "", bytearray(), False
        else:
            value += _raw(ch)
        i += 1
    if not in_value or not attribute:
        return None
    pairs.append((attribute, _text(value)))
    return pairs if all(name for name, _ in pairs) else None


def _raw(ch: str) -> bytes:
    """The header's bytes back (headers are read as latin-1); UTF-8 for any other text."""
    return ch.encode("latin1") if ord(ch) < 256 else ch.encode()


def _text(value: bytearray) -> str:
    return value.decode("utf-8", "replace")
