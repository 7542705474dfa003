"""Keeping the API key out of sight: header values with a masked repr, errors scrubbed of an
echoed key, and a warning before the key travels unencrypted."""

from __future__ import annotations

import ipaddress
import urllib.parse

from ._config import Secret
from ._exceptions import APIError

__all__ = ["HeaderSecret", "encrypted_or_local", "scrubbed"]


class HeaderSecret(str):
    """The API key as the header value it must be, with a repr that doesn't show it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'********'"


def encrypted_or_local(host: str) -> bool:
    """True for https://, and for http:// to this machine (the sandbox, a local proxy)."""
    parts = urllib.parse.urlsplit(host)
    if parts.scheme != "http":
        return True
    name = parts.hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def scrubbed(exc: APIError, secret: Secret) -> APIError:
    """``exc`` without the API key, should a server ever echo it back in an error body."""
    key = secret.reveal()
    if key not in f"{exc} {exc.details!r} {exc.body!r}":
        return exc
    mask = "********"
    return type(exc)(
        exc.message.replace(key, mask),
        status_code=exc.status_code,
        kaleyra_code=exc.kaleyra_code,
        details=[(item.replace(key, mask), why.replace(key, mask)) for item, why in exc.details],
        retry_after_s=exc.retry_after_s,
        pod=exc.pod,
        body=None if key in repr(exc.body) else exc.body,
    )
