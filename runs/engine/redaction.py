"""Secrets never reach a recorded activity, a log line or a page.

Two rules, used by the activity boundary (requests, responses, errors), the
log filter (``cmo_site.logging``) and stored error messages:

- a value under a key that names a secret is replaced by a marker, at any
  depth: the key's words (split on ``-``, ``_``, ``.``, spaces and camelCase)
  include password, passwd, secret, authorization, cookie, credential(s),
  apikey, passphrase, or its last word is token, key, session, sessionid or
  auth (``access_token``, ``X-Api-Key``, ``privateKey``, ``Set-Cookie``). So
  ``max_tokens`` or ``token_count`` stay visible while ``api_key`` does not;
- the value of every secret configured for ctx.secret (runs.engine.secrets),
  wherever it occurs in text, under any key;
- in free text, credentials in the usual shapes are masked: ``Bearer <t>`` /
  ``Basic <t>``, ``password=...`` / ``"api_key": "..."`` pairs (also URL query
  parameters), and the password of ``scheme://user:password@host``.

The marker is stable, so a request hash over the redacted form still detects a
changed request (the non-secret parts) on replay. A node receives the
redacted response even on first execution, so it behaves the same on replay.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from runs.engine.secrets import scanned_values

REDACTED = "[redacted]"
_ANYWHERE = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "secret",
        "secrets",
        "authorization",
        "cookie",
        "cookies",
        "credential",
        "credentials",
        "apikey",
        "privatekey",
        "sessionid",
    }
)
_LAST = frozenset({"token", "key", "session", "auth", "signature", "pass"})
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")

# key=value / key: value / "key": "value" where the key names a secret (checked by is_secret_key).
_PAIR = re.compile(
    r"""(?<![\w.-])(?P<key>["']?[A-Za-z][\w.-]*["']?)(?P<sep>\s*[:=]\s*)(?P<q>["'])?(?P<value>(?(q)[^"']*|[^\s&,;"'}\]]+))"""
)
_QUERY = re.compile(r"(?P<pre>[?&;])(?P<key>[A-Za-z][\w.-]*)=(?P<value>[^&#\s\"']+)")
_SCHEMES = frozenset({"bearer", "basic", "token", "digest"})
_SCHEME = re.compile(r"\b(Bearer|Basic|Token|Digest)\s+[A-Za-z0-9._~+/=-]{6,}", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?<![a-z0-9+.-])(?P<head>[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+(?=@)", re.IGNORECASE)


def _words(key: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(key)]


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    words = _words(key)
    if not words:
        return False
    joined = "".join(words)
    if joined in _ANYWHERE or any(w in _ANYWHERE for w in words):
        return True
    return words[-1] in _LAST or joined.endswith(("apikey", "accesstoken", "privatekey"))


def _mask_pair(match: re.Match[str], *, sep: str | None = None) -> str:
    value = match.group("value")
    if not value or value.startswith(REDACTED[:-1]) or value.lower() in _SCHEMES:
        return match.group(0)  # empty, already masked, or "Authorization: Bearer [redacted]"
    if not is_secret_key(match.group("key").strip("\"'")):
        return match.group(0)
    if sep is not None:  # a URL query parameter
        return f"{match.group('pre')}{match.group('key')}={REDACTED}"
    q = match.group("q") or ""
    return f"{match.group('key')}{match.group('sep')}{q}{REDACTED}"


def redact_text(text: str) -> str:
    """``text`` with credentials in the usual shapes masked (see the module docstring)."""
    if not text:
        return text
    for value in scanned_values():
        if value in text:
            text = text.replace(value, REDACTED)
    text = _SCHEME.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{REDACTED}", text)
    if "=" in text:
        text = _QUERY.sub(lambda m: _mask_pair(m, sep="="), text)
    if "=" in text or ":" in text:
        text = _PAIR.sub(_mask_pair, text)
    return text


def redact(value: Any) -> Any:
    """A copy of ``value`` with secret-named fields (at any depth) replaced and strings scrubbed."""
    if isinstance(value, dict):
        return {k: (REDACTED if isinstance(k, str) and is_secret_key(k) else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_at(path: list[Any], value: Any) -> Any:
    """``value`` found at ``path`` in a document, for display: all of it masked under a secret-named key."""
    if any(isinstance(p, str) and is_secret_key(p) for p in path):
        return REDACTED
    return redact(value)
