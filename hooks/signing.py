"""The signature of a delivery, as Stripe signs its webhooks: a timestamp and an HMAC over it and the body.

A sender sends ``X-CMO-Timestamp: <unix seconds>`` and ``X-CMO-Signature: sha256=<hex>``, where the hex is
HMAC-SHA256, keyed with the hook's secret, of ``"<timestamp>.<raw body>"``. Signing the timestamp with the
body is what makes the tolerance window a replay defence: an old delivery cannot be re-sent with a fresh
timestamp without the secret. Pure functions, no Django: the page's snippets and the tests sign with these.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

TIMESTAMP_HEADER = "X-CMO-Timestamp"
SIGNATURE_HEADER = "X-CMO-Signature"
SCHEME = "sha256"
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^sha256=([0-9a-fA-F]{64})$")


class SignatureError(ValueError):
    """Why a delivery's signature headers are refused (the message names the header, never the secret)."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


def new_secret() -> str:
    """A fresh shared secret: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def signature(*, secret: str, timestamp: int | str, body: bytes) -> str:
    """The header value ``sha256=<hex>`` for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def verify(
    *, secret: str, timestamp: str | None, signature_header: str | None, body: bytes, now: float, tolerance: int
) -> str:
    """The hex signature of a genuine, fresh delivery; SignatureError otherwise.

    The timestamp is checked first (a stale one is refused whatever its signature, so an attacker learns
    nothing from a signature oracle outside the window); the digests are compared in constant time.
    """
    if not timestamp:
        raise SignatureError("missing_timestamp", f"the {TIMESTAMP_HEADER} header (Unix seconds) is missing")
    if not _TIMESTAMP.match(timestamp):
        raise SignatureError("bad_timestamp", f"the {TIMESTAMP_HEADER} header must be Unix seconds (digits only)")
    skew = int(now) - int(timestamp)
    if skew > tolerance:
        raise SignatureError(
            "stale_timestamp", f"the delivery was signed {skew} s ago; at most {tolerance} s are accepted (a replay?)"
        )
    if -skew > tolerance:
        raise SignatureError(
            "future_timestamp", f"the delivery is signed {-skew} s in the future; at most {tolerance} s of clock skew"
        )
    if not signature_header:
        raise SignatureError("missing_signature", f"the {SIGNATURE_HEADER} header (sha256=<hex>) is missing")
    found = _SIGNATURE.match(signature_header.strip())
    if found is None:
        raise SignatureError(
            "bad_signature", f"the {SIGNATURE_HEADER} header must be sha256=<64 hex digits of HMAC-SHA256>"
        )
    expected = signature(secret=secret, timestamp=timestamp, body=body).split("=", 1)[1]
    given = found.group(1).lower()
    if not hmac.compare_digest(expected, given):
        raise SignatureError(
            "bad_signature", "the signature does not match: HMAC-SHA256 of '<timestamp>.<body>' with the hook's secret"
        )
    return given
