#!/usr/bin/env python3
"""The operator's IAM policy and the recommended permissions boundary, rendered as the README's
`envsubst` renders them, for the test bed and for tests that run the operator with other
settings (another bucket prefix, role path, boundary or partition).

    policies.py operator --partition aws --account-id 123456789012 --region us-east-2 \\
        --cluster-name c --bucket-prefix bw- --role-path /bucketwire/ \\
        --permissions-boundary-arn arn:aws:iam::123456789012:policy/b
    policies.py boundary --partition aws --account-id 123456789012 --bucket-prefix bw-

print the rendered document (deploy/iam/operator-policy.json, deploy/iam/permissions-boundary.json).
"""

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_POLICY = ROOT / "deploy" / "iam" / "operator-policy.json"
PERMISSIONS_BOUNDARY = ROOT / "deploy" / "iam" / "permissions-boundary.json"

PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")


def render(template, values):
    """Substitutes every `${NAME}` of `template` (a document's text) with `values[NAME]`, as
    envsubst does, and returns the parsed document. A placeholder without a value is an error
    (envsubst would leave it empty, and the policy would quietly mean something else)."""
    missing = sorted({name for name in PLACEHOLDER.findall(template) if name not in values})
    if missing:
        raise ValueError(f"no value for {', '.join('${' + m + '}' for m in missing)}")
    return json.loads(PLACEHOLDER.sub(lambda m: values[m.group(1)], template))


def operator_policy(partition, account_id, region, cluster_name, bucket_prefix, role_path, boundary_arn):
    return render(
        OPERATOR_POLICY.read_text(),
        {
            "PARTITION": partition,
            "ACCOUNT_ID": account_id,
            "REGION": region,
            "CLUSTER_NAME": cluster_name,
            "BUCKET_PREFIX": bucket_prefix,
            "ROLE_PATH": role_path,
            "PERMISSIONS_BOUNDARY_ARN": boundary_arn,
        },
    )


def permissions_boundary(partition, account_id, bucket_prefix):
    return render(
        PERMISSIONS_BOUNDARY.read_text(),
        {"PARTITION": partition, "ACCOUNT_ID": account_id, "BUCKET_PREFIX": bucket_prefix},
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="document", required=True)
    op = sub.add_parser("operator")
    bd = sub.add_parser("boundary")
    for p in (op, bd):
        p.add_argument("--partition", required=True)
        p.add_argument("--account-id", required=True)
        p.add_argument("--bucket-prefix", required=True)
    op.add_argument("--region", required=True)
    op.add_argument("--cluster-name", required=True)
    op.add_argument("--role-path", required=True)
    op.add_argument("--permissions-boundary-arn", required=True)
    args = parser.parse_args()
    if args.document == "operator":
        doc = operator_policy(
            args.partition, args.account_id, args.region, args.cluster_name, args.bucket_prefix,
            args.role_path, args.permissions_boundary_arn,
        )
    else:
        doc = permissions_boundary(args.partition, args.account_id, args.bucket_prefix)
    json.dump(doc, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
