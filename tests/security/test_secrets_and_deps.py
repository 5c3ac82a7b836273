"""No secrets in the repository, and the dependency audit CI runs (.ci/run -> .ci/audit.py, pip-audit).

The scan reads every file git tracks (and new files not ignored), looking for private keys, cloud and
service tokens, literal SECRET_KEY values and passwords inside URLs. What it finds must be on the allow-list
below, each entry with the reason it is not a secret."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PATTERNS = {
    "private key": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key": re.compile(r"aws_secret_access_key\s*[=:]\s*[\"']?[A-Za-z0-9/+=]{30,}", re.I),
    "service token": re.compile(
        r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|xox[baprs]-[A-Za-z0-9-]{10,}"
        r"|sk_live_[0-9a-zA-Z]{16,}|rk_live_[0-9a-zA-Z]{16,}|AIza[0-9A-Za-z_-]{35}|glpat-[0-9A-Za-z_-]{20})"
    ),
    # A literal value: SECRET_KEY = "...", "SECRET_KEY": "...", or SECRET_KEY=... at the start of a line.
    "literal SECRET_KEY": re.compile(
        r"""SECRET_KEY["']?\s*[=:]\s*["']([^"'$\s{}]{8,})["']|^\s*SECRET_KEY\s*=\s*([A-Za-z0-9_\-+/=]{16,})\s*$""",
        re.M,
    ),
    "password in a URL": re.compile(r"""\b[a-z][a-z0-9+.-]*://[^/\s:@'"<>]+:([^@\s/'"<>]+)@[^/\s:'"<>]+"""),
}

# (path, text found) -> why it is not a secret. Keep each reason true; add an entry only with a reason.
ALLOWED = {
    ("billing_mgmt/settings.py", 'SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"'):
        "the development key, used only while DEBUG is on; with DEBUG off the settings refuse to start "
        "without "
        "SECRET_KEY (tests/kernel/test_deploy_check.py)",
    ("billing_mgmt/bench/pages.py", 'SECRET_KEY": "collectstatic-only"'):
        "the benchmark's throw-away key for running collectstatic in a temporary folder; nothing is signed",
    ("billing_mgmt/settings.py", "smtp+tls://user:password@smtp.example.com"):
        "the documented shape of EMAIL_URL in a comment (example.com)",
    ("docs/deployment.md", "smtp+tls://user:password@smtp.example.com"):
        "the documented shape of EMAIL_URL (example.com)",
    ("docs/deployment.md", "postgres://user:password@host"):
        "the documented shape of DATABASE_URL",
    ("tests/kernel/test_deploy_check.py", "postgres://billing:secret@db.internal"):
        "fake production variables for the deploy check; no such host",
    ("tests/kernel/test_deploy_check.py", "smtp+tls://mailer:secret@smtp.example.com"):
        "fake production variables for the deploy check (example.com)",
    ("docker-compose.yml", "postgres://billing:${POSTGRES_PASSWORD:-billing}@postgres"):
        "interpolated from POSTGRES_PASSWORD (docs/deployment.md has the .env set a random one); the default "
        "only serves a laptop stack whose database port is not published",
}  # fmt: skip

# Files whose content is not ours to police (generated, vendored, binary).
SKIPPED = re.compile(r"(^|/)(uv\.lock|.*\.min\.js|.*\.(png|jpg|jpeg|gif|ico|pdf|woff2?|ttf|svg))$")
FAKE_KEY = "-----BEGIN RSA " + "PRIVATE KEY-----"  # split so that this file itself is not a finding


def tracked_files() -> list[str]:
    result = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        print(f"not a git checkout ({result.stderr.strip()}): the secrets scan needs one")
        pytest.skip("not a git checkout: the secrets scan needs one")
    return [line for line in result.stdout.splitlines() if line]


def findings(path: str, text: str) -> list[tuple[str, str, str]]:
    found = []
    for name, pattern in PATTERNS.items():
        for match in pattern.finditer(text):
            found.append((name, path, match.group(0).strip()))
    return found


def test_the_scan_finds_each_kind_of_secret():
    samples = {
        "private key": FAKE_KEY,
        "AWS access key id": "key = AKIA" + "ABCDEFGHIJKLMNOP",
        "AWS secret key": "aws_secret_access_key = " + "a" * 40,
        "service token": "token: ghp_" + "x" * 36,
        "literal SECRET_KEY": 'SECRET_KEY = "' + "k" * 30 + '"',
        "password in a URL": "DATABASE_URL=postgres://app:" + "hunter2@db.prod.example.org/app",
    }
    for name, text in samples.items():
        assert [f[0] for f in findings("x.py", text)] == [name], name
    # What is not a secret: a key read from the environment, a URL without a password.
    assert findings("x.py", 'SECRET_KEY = env.str("SECRET_KEY")\nurl = "https://example.com/a@b"') == []
    assert findings("x.env", "SECRET_KEY=" + "Zx9" * 10) != []


def test_no_secrets_in_the_repository():
    files = tracked_files()
    assert len(files) > 100
    unexpected = []
    for path in files:
        if SKIPPED.search(path) or not (ROOT / path).is_file():
            continue
        try:
            text = (ROOT / path).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for name, file, found in findings(path, text):
            if path == "tests/security/test_secrets_and_deps.py":
                continue  # this file's samples are built from pieces; the allow-list quotes the findings
            if not any(file == p and text_found in found for (p, text_found) in ALLOWED):
                unexpected.append(f"{file}: {name}: {found[:80]}")
    assert unexpected == [], "secrets (or new examples to allow, with a reason) in tracked files"


def test_no_key_files_or_env_files_are_tracked():
    names = re.compile(r"(^|/)(\.env(\..+)?|.*\.(pem|key|p12|pfx)|id_(rsa|ecdsa|ed25519))$")
    assert [f for f in tracked_files() if names.search(f) and not f.endswith(".env.example")] == []


# --- the dependency audit -----------------------------------------------------------------------------------


def test_ci_runs_the_dependency_audit():
    script = (ROOT / ".ci" / "run").read_text()
    assert 'step "Dependency audit"' in script
    assert "python .ci/audit.py || { status=1;" in script  # its failure fails CI, after the other steps


def _fake_pip_audit(tmp_path: Path, body: str) -> str:
    fake = tmp_path / "fake_pip_audit.py"
    fake.write_text(
        "import json, sys\nargs = sys.argv[1:]\nout = args[args.index('-o') + 1]\n" + textwrap.dedent(body)
    )
    return f"{sys.executable} {fake}"


def _audit(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("django==5.2.19\nrequests==2.0.0\n")
    env = {
        **os.environ,
        "AUDIT_REQUIREMENTS": str(requirements),
        "PIP_AUDIT": _fake_pip_audit(tmp_path, body),
    }
    return subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "audit.py")], env=env, capture_output=True, text=True, timeout=60
    )


def test_a_known_vulnerability_fails_ci(tmp_path):
    report = {"dependencies": [
        {"name": "django", "version": "5.2.19", "vulns": []},
        {"name": "requests", "version": "2.0.0",
         "vulns": [{"id": "PYSEC-2014-13", "aliases": ["CVE-2014-1829"], "fix_versions": ["2.3.0"]}]},
    ]}  # fmt: skip
    result = _audit(tmp_path, f"open(out, 'w').write(json.dumps({report!r}))\nsys.exit(1)\n")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "VULNERABLE requests 2.0.0: PYSEC-2014-13 (CVE-2014-1829) fixed in 2.3.0" in result.stdout


def test_a_clean_audit_passes(tmp_path):
    report = {"dependencies": [{"name": "django", "version": "5.2.19", "vulns": []}]}
    result = _audit(tmp_path, f"open(out, 'w').write(json.dumps({report!r}))\n")
    assert result.returncode == 0 and "No known vulnerabilities in 1 locked packages" in result.stdout


def test_an_unreachable_service_warns_and_passes(tmp_path):
    error = "print('requests.exceptions.ConnectionError: Max retries exceeded', file=sys.stderr)\n"
    down = _audit(tmp_path, error + "sys.exit(1)\n")
    assert down.returncode == 0
    assert (
        "WARNING: the vulnerability service could not be reached: dependencies were NOT checked."
        in down.stdout
    )
    # A mirror without the JSON API answers "not found" for every package: nothing was checked either.
    report = {"dependencies": [
        {"name": "django", "version": "5.2.19",
         "skip_reason": "Dependency not found on PyPI and could not be audited: django (5.2.19)"},
    ]}  # fmt: skip
    mirror = _audit(tmp_path, f"open(out, 'w').write(json.dumps({report!r}))\n")
    assert mirror.returncode == 0 and "NOT checked" in mirror.stdout


def test_another_pip_audit_failure_fails_ci(tmp_path):
    result = _audit(tmp_path, "print('error: invalid requirement', file=sys.stderr)\nsys.exit(2)\n")
    assert result.returncode == 1 and "pip-audit failed" in result.stdout


def test_the_audit_report_format_is_what_pip_audit_writes(tmp_path):
    """The installed pip-audit's JSON (offline: no requirements) has the keys .ci/audit.py reads."""
    requirements = tmp_path / "empty.txt"
    requirements.write_text("")
    out = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip_audit", "-r", str(requirements), "--no-deps", "--disable-pip",
         "--progress-spinner", "off", "-f", "json", "-o", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "dependencies" in json.loads(out.read_text())
