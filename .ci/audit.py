"""CI step: check the locked dependencies for known vulnerabilities with pip-audit.

    python .ci/audit.py        (from .ci/run; exit 0 = pass, 1 = fail)

The requirements come from uv.lock (`uv export --frozen`, every group: the dev tools run in CI too),
pinned, so pip-audit checks exactly what is installed without resolving anything (--no-deps --disable-pip).

- A known vulnerability in a locked version fails CI, with the package, the advisory and the fixed versions.
- The vulnerability service unreachable (no network, DNS, timeout, or every package answered "not found", as
  a PyPI mirror without the JSON API does) prints a WARNING that the dependencies were NOT checked, and
  passes:
  CI must not depend on an outside service being up, but nobody should read the pass as "checked".
- Any other pip-audit failure (a broken lock, a bad option) fails CI.

Environment (for tests): AUDIT_REQUIREMENTS names a requirements file instead of exporting the lock;
PIP_AUDIT is the pip-audit command (default: this Python's `-m pip_audit`).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNREACHABLE = re.compile(
    r"ConnectionError|Max retries exceeded|Name or service not known|Temporary failure in name resolution|"
    r"timed out|Timeout|Connection refused|Network is unreachable|ServiceError|Failed to resolve",
    re.I,
)
NOT_FOUND = "not found on PyPI"


def _requirements(folder: Path) -> Path:
    given = os.environ.get("AUDIT_REQUIREMENTS")
    if given:
        return Path(given)
    path = folder / "requirements.txt"
    with path.open("w") as out:
        subprocess.run(
            ["uv", "export", "--frozen", "--format", "requirements-txt", "--no-hashes", "--all-groups",
             "--no-emit-project"],
            cwd=ROOT, stdout=out, check=True,
        )  # fmt: skip
    return path


def main() -> int:
    command = shlex.split(os.environ.get("PIP_AUDIT", "")) or [sys.executable, "-m", "pip_audit"]
    with tempfile.TemporaryDirectory() as folder:
        requirements = _requirements(Path(folder))
        report = Path(folder) / "audit.json"
        result = subprocess.run(
            [*command, "-r", str(requirements), "--no-deps", "--disable-pip", "--progress-spinner", "off",
             "-f", "json", "-o", str(report)],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        output = result.stdout + result.stderr
        data = json.loads(report.read_text()) if report.exists() and report.stat().st_size else None

    if data is None:
        if UNREACHABLE.search(output):
            print(output[-2000:])
            print("WARNING: the vulnerability service could not be reached: dependencies were NOT checked.")
            return 0
        print(output[-4000:])
        print(f"pip-audit failed (exit {result.returncode}) without a report: see above.")
        return 1

    dependencies = data.get("dependencies", [])
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
            aliases = ", ".join(vuln.get("aliases") or [])
            print(f"VULNERABLE {dep['name']} {dep['version']}: {vuln['id']} ({aliases}) fixed in {fixed}")
    if vulnerable:
        count = sum(len(d["vulns"]) for d in vulnerable)
        print(f"{count} known vulnerabilities in {len(vulnerable)} locked packages: upgrade them in uv.lock.")
        return 1
    if dependencies and len(skipped) == len(dependencies):
        reasons = {d["skip_reason"] for d in skipped}
        print(f"WARNING: no package could be looked up ({len(skipped)} skipped, e.g. {sorted(reasons)[0]}).")
        print("WARNING: the vulnerability service could not be reached: dependencies were NOT checked.")
        return 0
    for dep in skipped:
        print(f"WARNING: not checked: {dep['name']} {dep.get('version', '')}: {dep['skip_reason']}")
    checked = len(dependencies) - len(skipped)
    print(f"No known vulnerabilities in {checked} locked packages.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
