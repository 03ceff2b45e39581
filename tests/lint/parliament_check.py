"""Lints IAM policy documents with parliament (PyPI), the way CI should see them.

Usage: parliament_check.py DIR — every DIR/*.json is one policy document; `*.trust.json` are
role trust policies.

parliament is written for identity policies. Two of its findings are wrong for every trust
policy, and only those two are set aside here, each matched exactly:
- MALFORMED "Statement contains neither Resource nor NotResource": a trust policy's resource is
  the role itself; IAM rejects a Resource element in one.
- UNKNOWN_FEDERATION_SOURCE for an IAM OIDC provider ARN (arn:<partition>:iam::<account>:
  oidc-provider/<issuer>): parliament knows SAML providers and four public web identity
  providers, not IAM OIDC providers, which is what EKS IRSA trusts.
Everything else, in every document, counts.
Prints one JSON line per document: {"file", "findings": [{"issue", "severity", "detail"}]}.
Exits 1 when any document has a finding.
"""

import json
import re
import sys
from pathlib import Path

import parliament
from parliament import analyze_policy_string, enhance_finding, override_config
from parliament.cli import is_finding_filtered


OIDC_PROVIDER = re.compile(r"^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:oidc-provider/[^*?]+$")


def not_applicable(name, finding):
    """The two findings that are wrong for any trust policy (see the module docstring)."""
    if not name.endswith(".trust.json"):
        return False
    if finding.issue == "MALFORMED":
        return finding.detail == "Statement contains neither Resource nor NotResource"
    if finding.issue == "UNKNOWN_FEDERATION_SOURCE":
        return bool(OIDC_PROVIDER.match(str(finding.detail)))
    return False


def main(directory):
    # As `parliament --include-community-auditors` does: their findings' settings.
    override_config(Path(parliament.__file__).parent / "community_auditors" / "config_override.yaml")
    failed = False
    for path in sorted(Path(directory).glob("*.json")):
        name = path.name
        policy = analyze_policy_string(path.read_text(), str(path), include_community_auditors=True)
        # As the parliament CLI reports them, down to the lowest severity (INFO).
        findings = [
            {"issue": f.issue, "severity": f.severity, "detail": str(f.detail), "location": str(f.location)}
            for f in map(enhance_finding, policy.findings)
            if not is_finding_filtered(f, "INFO") and not not_applicable(name, f)
        ]
        failed = failed or bool(findings)
        print(json.dumps({"file": name, "findings": findings}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
