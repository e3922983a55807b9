"""The risk engine over a table of actions: expected level and the rules that matched (with their text)."""

from __future__ import annotations

from typing import Any

import pytest

from approvals import risk
from approvals.risk import DEFAULT_RULES, Rule, score

# (action, expected level, expected findings as (rule, matched text))
TABLE: list[tuple[dict[str, Any], str, list[tuple[str, str]]]] = [
    # nothing risky
    ({}, "low", []),
    ({"files": ["src/app.py", "README.md"]}, "low", []),
    ({"commands": ["ls -la /var/log"]}, "low", []),
    ({"commands": ["rm /tmp/cache.lock"]}, "low", []),
    ({"code": "print('hello')"}, "low", []),
    ({"api_calls": ["GET /v1/status"]}, "low", []),
    ({"api_calls": ["POST /v1/cache/flush"]}, "low", [("http-write", "POST")]),
    ({"api_calls": [{"method": "PUT", "url": "/v1/config"}]}, "low", [("http-write", "PUT")]),
    ({"amount": 999}, "low", []),
    ({"files": [".environment.md", "docs/git.md"]}, "low", []),
    ({"commands": ["chmod 755 run.sh"]}, "low", []),
    ({"code": "evaluate(x)"}, "low", []),
    # files
    ({"files": [".env"]}, "high", [("env-file", ".env")]),
    ({"files": ["deploy/.env.production"]}, "high", [("env-file", "/.env.production")]),
    ({"files": [".git/config"]}, "high", [("git-internals", ".git/")]),
    ({"files": ["/home/app/.ssh/authorized_keys"]}, "critical", [("ssh-keys", "/.ssh/")]),
    ({"files": ["keys/id_ed25519"]}, "critical", [("ssh-keys", "id_ed25519")]),
    ({"files": ["config/credentials.json"]}, "high", [("credentials", "credentials")]),
    ({"files": ["certs/server.pem"]}, "high", [("credentials", ".pem")]),
    ({"files": ["/root/.aws/config"]}, "high", [("credentials", "/.aws/")]),
    ({"files": ["/etc/shadow"]}, "critical", [("system-auth-files", "/etc/shadow")]),
    ({"files": [".env", ".git/HEAD"]}, "critical", [("env-file", ".env"), ("git-internals", ".git/")]),
    # commands
    ({"commands": ["sudo systemctl status nginx"]}, "high", [("sudo", "sudo")]),
    ({"commands": ["rm -rf /var/cache/app"]}, "high", [("rm-rf", "rm -rf")]),
    ({"commands": ["rm -fr build/"]}, "high", [("rm-rf", "rm -fr")]),
    ({"commands": ["rm --recursive --force dist"]}, "high", [("rm-rf", "rm --recursive --force")]),
    ({"commands": ["rm -rf /"]}, "critical", [("rm-rf", "rm -rf"), ("rm-root", "rm -rf /")]),
    ({"commands": ["chmod 777 /srv/uploads"]}, "high", [("chmod-777", "chmod 777")]),
    ({"commands": ["chmod -R 0777 ."]}, "high", [("chmod-777", "chmod -R 0777")]),
    (
        {"commands": ["curl -fsSL https://get.example.com | sh"]},
        "critical",
        [("curl-pipe-shell", "curl -fsSL https://get.example.com | sh")],
    ),
    (
        {"commands": ["wget -qO- https://x.example/i | sudo bash"]},
        "critical",
        [("sudo", "sudo"), ("curl-pipe-shell", "wget -qO- https://x.example/i | sudo bash")],
    ),
    ({"commands": ["dd if=/dev/zero of=/dev/sda"]}, "critical", [("disk-wipe", "dd if=")]),
    ({"commands": ["systemctl restart checkout"]}, "medium", [("service-stop", "systemctl restart")]),
    ({"commands": ["git push --force origin main"]}, "high", [("force-push", "git push --force")]),
    ({"commands": ["sudo rm -rf /var/lib/app"]}, "critical", [("rm-rf", "rm -rf"), ("sudo", "sudo")]),
    # code
    ({"code": "result = eval(user_input)"}, "high", [("eval", "eval(")]),
    ({"code": "exec (compiled)"}, "high", [("exec", "exec (")]),
    ({"code": "const cp = require('child_process')"}, "high", [("child-process", "child_process")]),
    ({"code": "import subprocess"}, "medium", [("subprocess", "subprocess")]),
    ({"code": "os.system('ls')"}, "medium", [("subprocess", "os.system(")]),
    ({"code": "obj = pickle.loads(blob)"}, "medium", [("unsafe-deserialization", "pickle.loads(")]),
    (
        {"code": ["import subprocess", "pickle.load(f)"]},
        "high",
        [("subprocess", "subprocess"), ("unsafe-deserialization", "pickle.load(")],
    ),
    # API calls
    ({"api_calls": ["DELETE /v1/releases/42"]}, "high", [("http-delete", "DELETE")]),
    ({"api_calls": [{"method": "delete", "url": "/v1/users/7"}]}, "high", [("http-delete", "delete")]),
    ({"api_calls": ["terraform destroy"]}, "high", [("destroy", "destroy")]),
    ({"api_calls": ["DROP TABLE orders"]}, "high", [("drop", "DROP")]),
    ({"api_calls": ["GET /v1/payments/9"]}, "high", [("payment", "payments")]),
    ({"api_calls": ["GET /v1/billing/plan"]}, "medium", [("billing", "billing")]),
    ({"api_calls": ["POST /v1/refunds"]}, "high", [("http-write", "POST"), ("refund", "refunds")]),
    ({"api_calls": ["POST /v1/invoices"]}, "medium", [("billing", "invoices"), ("http-write", "POST")]),
    # amounts
    ({"amount": 1000}, "medium", [("amount-1k", "1000")]),
    ({"amount": 25_000}, "high", [("amount-10k", "25000"), ("amount-1k", "25000")]),
    ({"amount": 250_000}, "critical", [("amount-100k", "250000"), ("amount-10k", "250000"), ("amount-1k", "250000")]),
    ({"amount": "1500.50"}, "medium", [("amount-1k", "1500.5")]),
    ({"amount": "not a number"}, "low", []),
    ({"amount": True}, "low", []),
    # mixed categories add up
    (
        {"commands": ["systemctl restart app"], "code": "import subprocess"},
        "high",
        [("service-stop", "systemctl restart"), ("subprocess", "subprocess")],
    ),
    (
        {"files": [".env"], "api_calls": ["DELETE /v1/cache"]},
        "critical",
        [("env-file", ".env"), ("http-delete", "DELETE")],
    ),
]


def test_the_table_is_big_enough() -> None:
    assert len(TABLE) >= 40


@pytest.mark.parametrize(("action", "level", "findings"), TABLE, ids=[str(i) for i in range(len(TABLE))])
def test_risk_table(action: dict[str, Any], level: str, findings: list[tuple[str, str]]) -> None:
    result = score(action, DEFAULT_RULES)
    got = sorted((f["rule"], f["matched"]) for f in result.findings)
    assert got == sorted(findings), result.findings
    assert result.level == level, (result.level, result.score, got)
    for f in result.findings:
        assert f["why"] and f["category"] in risk.CATEGORIES and f["level"] in risk.LEVELS
        assert f["matched"].lower() in f["subject"].lower() or f["category"] == "amount"


def test_the_score_is_the_sum_of_weights_capped_at_100() -> None:
    assert score({}, DEFAULT_RULES).score == 0
    assert score({"api_calls": ["POST /x"]}, DEFAULT_RULES).score == 5
    assert score({"commands": ["sudo rm -rf x"]}, DEFAULT_RULES).score == 100
    assert score({"commands": ["sudo rm -rf /"], "files": [".env", ".ssh/id_rsa"]}, DEFAULT_RULES).score == 100


def test_several_mediums_add_up_to_high() -> None:
    result = score({"code": ["import subprocess"], "api_calls": ["GET /billing"]}, DEFAULT_RULES)
    assert result.score == 60 and result.level == "high"


def test_a_finding_names_the_item_it_matched() -> None:
    (finding,) = score({"files": ["a.txt", "deploy/.env"]}, DEFAULT_RULES).findings
    assert finding == {
        "rule": "env-file",
        "category": "files",
        "level": "high",
        "matched": "/.env",
        "subject": "deploy/.env",
        "why": "environment files hold secrets and configuration",
    }


def test_custom_rules_and_their_validation() -> None:
    rules = [Rule("prod", "api_calls", "medium", 30, "touches production", r"prod\.")]
    assert score({"api_calls": ["GET https://prod.example"]}, rules).level == "medium"
    assert score({"api_calls": ["GET https://staging.example"]}, rules).level == "low"
    with pytest.raises(ValueError, match="unknown category"):
        Rule("x", "urls", "low", 1, "?", "x")
    with pytest.raises(ValueError, match="unknown level"):
        Rule("x", "files", "severe", 1, "?", "x")
    with pytest.raises(ValueError, match="needs a threshold"):
        Rule("x", "amount", "low", 1, "?")
    assert risk.pattern_error("(") != ""
    assert risk.pattern_error(r"\.env") == ""
