"""The risk engine: score an action against rules; pure (no database, no Django).

An action is a dict with any of ``files`` (paths touched), ``commands`` (shell
text), ``code`` (source text), ``api_calls`` (``"DELETE /v1/x"`` strings or
``{"method", "url"}`` dicts) and ``amount`` (a number, e.g. money moved).
Each rule matches one category: a case-insensitive regular expression over
each item, or for ``amount`` a threshold (``amount >= threshold``).

The score is the sum of the matching rules' weights, capped at 100. The level
is the highest of the findings' own levels and the level the score reaches
(``SCORE_LEVELS``), so several medium findings add up to a high risk.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

LOW, MEDIUM, HIGH, CRITICAL = "low", "medium", "high", "critical"
LEVELS = (LOW, MEDIUM, HIGH, CRITICAL)
LEVEL_RANK = {level: rank for rank, level in enumerate(LEVELS)}
CATEGORIES = ("files", "commands", "code", "api_calls", "amount")
# (minimum score, level), highest first.
SCORE_LEVELS = ((90, CRITICAL), (60, HIGH), (30, MEDIUM))
MAX_SCORE = 100


@dataclass(frozen=True)
class Rule:
    name: str
    category: str
    level: str
    weight: int
    why: str
    pattern: str = ""
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"rule {self.name!r}: unknown category {self.category!r}")
        if self.level not in LEVEL_RANK:
            raise ValueError(f"rule {self.name!r}: unknown level {self.level!r}")
        if self.category == "amount":
            if self.threshold is None:
                raise ValueError(f"rule {self.name!r}: an amount rule needs a threshold")
        else:
            re.compile(self.pattern)  # a bad pattern fails here, naming nothing; callers validate first


@dataclass
class Assessment:
    level: str
    score: int
    findings: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"level": self.level, "score": self.score, "findings": self.findings}


def pattern_error(pattern: str) -> str:
    """Why ``pattern`` is not a valid regular expression, or ""."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return str(exc)
    return ""


def _items(action: dict[str, Any], category: str) -> list[str]:
    value = action.get(category)
    if value is None or value == "":
        return []
    values: Iterable[Any] = value if isinstance(value, (list, tuple)) else [value]
    items = []
    for item in values:
        if isinstance(item, dict):
            parts = [str(item.get(k, "")) for k in ("method", "url", "path", "name", "operation") if item.get(k)]
            items.append(" ".join(parts) or str(item))
        else:
            items.append(str(item))
    return items


def _amount(action: dict[str, Any]) -> float | None:
    value = action.get("amount")
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def score(action: dict[str, Any], rules: Sequence[Rule]) -> Assessment:
    """Assess ``action``: level, score and findings [{rule, category, level, matched, subject, why}]."""
    findings: list[dict[str, Any]] = []
    total = 0
    worst = LOW
    compiled: dict[str, re.Pattern[str]] = {}
    amount = _amount(action)
    for rule in rules:
        if rule.category == "amount":
            if amount is not None and rule.threshold is not None and amount >= rule.threshold:
                hits = [(f"{amount:g}", f"amount {amount:g}")]
            else:
                hits = []
        else:
            regex = compiled.setdefault(rule.pattern, re.compile(rule.pattern, re.IGNORECASE))
            hits = []
            for item in _items(action, rule.category):
                m = regex.search(item)
                if m:
                    hits.append((m.group(0), item))
        for matched, subject in hits:
            findings.append(
                {
                    "rule": rule.name,
                    "category": rule.category,
                    "level": rule.level,
                    "matched": matched,
                    "subject": subject,
                    "why": rule.why,
                }
            )
            total += rule.weight
            if LEVEL_RANK[rule.level] > LEVEL_RANK[worst]:
                worst = rule.level
    total = min(total, MAX_SCORE)
    for minimum, level in SCORE_LEVELS:
        if total >= minimum:
            if LEVEL_RANK[level] > LEVEL_RANK[worst]:
                worst = level
            break
    return Assessment(level=worst, score=total, findings=findings)


# The defaults a new installation starts with (a data migration stores them; admins edit them).
# Weights: low 5, medium 30, high 60, critical 90, so two high findings reach critical.
DEFAULT_RULES: tuple[Rule, ...] = (
    # files
    Rule("env-file", "files", HIGH, 60, "environment files hold secrets and configuration", r"(^|/)\.env(\.[\w-]+)?$"),
    Rule(
        "git-internals",
        "files",
        HIGH,
        60,
        "repository internals: history and hooks can be rewritten",
        r"(^|/)\.git(/|$)",
    ),
    Rule(
        "ssh-keys",
        "files",
        CRITICAL,
        90,
        "SSH keys and authorized_keys grant access to machines",
        r"(^|/)\.ssh(/|$)|id_(rsa|ed25519|ecdsa)\b|authorized_keys",
    ),
    Rule(
        "credentials",
        "files",
        HIGH,
        60,
        "credential files give access to other systems",
        r"credentials|(^|/)secrets?\.(ya?ml|json|toml|txt)$|\.(pem|key|p12|pfx)$|(^|/)\.aws/|(^|/)\.netrc$|(^|/)\.pgpass$",
    ),
    Rule(
        "system-auth-files",
        "files",
        CRITICAL,
        90,
        "system account files control who can log in",
        r"^/etc/(passwd|shadow|sudoers|group)\b",
    ),
    # commands
    Rule("sudo", "commands", HIGH, 60, "runs with root privileges", r"\bsudo\b"),
    Rule(
        "rm-rf",
        "commands",
        HIGH,
        60,
        "recursive forced deletion cannot be undone",
        r"\brm\s+(-\w*r\w*f\w*|-\w*f\w*r\w*|-r\s+-f|-f\s+-r|--recursive\s+--force|--force\s+--recursive)\b",
    ),
    Rule(
        "rm-root",
        "commands",
        CRITICAL,
        90,
        "deletes from the filesystem root or a home directory",
        r"\brm\s+(-\S+\s+)*(/|/\*|~|~/|\$HOME)(\s|$)",
    ),
    Rule("chmod-777", "commands", HIGH, 60, "makes files writable by every user", r"\bchmod\s+(-R\s+)?0?777\b"),
    Rule(
        "curl-pipe-shell",
        "commands",
        CRITICAL,
        90,
        "runs code downloaded from the network without review",
        r"\b(curl|wget)\b[^|]*\|\s*(sudo\s+)?(ba|z|da)?sh\b",
    ),
    Rule("disk-wipe", "commands", CRITICAL, 90, "overwrites a disk or a filesystem", r"\bmkfs(\.\w+)?\b|\bdd\s+if="),
    Rule(
        "service-stop",
        "commands",
        MEDIUM,
        30,
        "stops or restarts processes and services",
        r"\b(shutdown|reboot|kill\s+-9|killall|systemctl\s+(stop|restart|disable))\b",
    ),
    Rule("force-push", "commands", HIGH, 60, "rewrites shared history", r"\bgit\s+push\b.*(--force\b|\s-f\b)"),
    # code
    Rule("eval", "code", HIGH, 60, "evaluates a string as code", r"\beval\s*\("),
    Rule("exec", "code", HIGH, 60, "executes a string as code", r"\bexec\s*\("),
    Rule("child-process", "code", HIGH, 60, "starts operating-system processes from Node.js", r"child_process"),
    Rule(
        "subprocess",
        "code",
        MEDIUM,
        30,
        "starts operating-system processes",
        r"\bsubprocess\b|\bos\.(system|popen)\s*\(",
    ),
    Rule(
        "unsafe-deserialization", "code", MEDIUM, 30, "deserializing untrusted data runs code", r"\bpickle\.loads?\s*\("
    ),
    # API calls
    Rule("http-delete", "api_calls", HIGH, 60, "deletes a remote resource", r"^\s*DELETE\b"),
    Rule("destroy", "api_calls", HIGH, 60, "destroys a resource", r"\bdestroy"),
    Rule("drop", "api_calls", HIGH, 60, "drops a table, database or resource", r"\bdrop\b"),
    Rule("payment", "api_calls", HIGH, 60, "moves money", r"\bpayments?\b|\bcharges?\b|\btransfers?\b"),
    Rule("billing", "api_calls", MEDIUM, 30, "changes what customers are billed", r"\bbilling\b|\binvoices?\b"),
    Rule("refund", "api_calls", HIGH, 60, "returns money to customers", r"\brefunds?\b"),
    Rule("http-write", "api_calls", LOW, 5, "changes remote state", r"^\s*(POST|PUT|PATCH)\b"),
    # amounts
    Rule("amount-1k", "amount", MEDIUM, 30, "an amount of 1,000 or more", threshold=1_000),
    Rule("amount-10k", "amount", HIGH, 30, "an amount of 10,000 or more", threshold=10_000),
    Rule("amount-100k", "amount", CRITICAL, 30, "an amount of 100,000 or more", threshold=100_000),
)
