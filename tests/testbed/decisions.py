#!/usr/bin/env python3
"""Summarises the authorization decisions of a test-bed run from the emulator's request log.

    decisions.py [--log target/testbed/moto-requests.jsonl] [--env target/testbed/env] --out FILE

Writes, as JSON, for the operator's own role (BUCKETWIRE_OPERATOR_ROLE_ARN in the test bed's
environment): every distinct (IAM action, resource type) pair it was allowed, every pair it was
denied, and how many decisions were made by moto's action names rather than derived by the test
bed (tests/testbed/authorization.py). Exits non-zero when the log holds no operator decision at
all (the operator did not run under its role), or when an operator request was decided on moto's
action names.
"""

import argparse
import json
import shlex
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def resource_type(arn):
    if arn == "*":
        return "*"
    parts = arn.split(":", 5)
    if len(parts) < 6:
        return "unknown"
    service, rest = parts[2], parts[5]
    if service == "s3":
        return "s3:object" if "/" in rest else "s3:bucket"
    kind = rest.split("/", 1)[0]
    return f"{service}:{kind}"


def env_vars(path):
    values = {}
    for line in Path(path).read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            values[key] = shlex.split(value)[0] if value else ""
    return values


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", default=str(ROOT / "target/testbed/moto-requests.jsonl"))
    parser.add_argument("--env", default=str(ROOT / "target/testbed/env"))
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    operator = env_vars(args.env)["BUCKETWIRE_OPERATOR_ROLE_ARN"]
    allowed, denied, by_moto = Counter(), Counter(), Counter()
    with open(args.log) as log:
        for line in log:
            for decision in json.loads(line).get("decisions", []):
                if decision["principal"] != operator:
                    continue
                pair = f"{decision['action']} on {resource_type(decision['resource'])}"
                (allowed if decision["result"] == "Allowed" else denied)[pair] += 1
                if decision.get("derivedBy") == "moto":
                    by_moto[decision["action"]] += 1
    summary = {
        "operatorRole": operator,
        "decisions": sum(allowed.values()) + sum(denied.values()),
        "allowedPairs": len(allowed),
        "deniedPairs": len(denied),
        "allowed": dict(sorted(allowed.items())),
        "denied": dict(sorted(denied.items())),
        "decidedOnMotoActionNames": dict(by_moto),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"decisions: the operator's role was allowed {len(allowed)} distinct (action, resource type) pairs, "
          f"denied {len(denied)}; written to {out}")
    if not summary["decisions"]:
        sys.exit(f"decisions: no request in {args.log} was signed by {operator}")
    if by_moto:
        sys.exit(f"decisions: operator requests decided on moto's action names, not derived: {dict(by_moto)}")


if __name__ == "__main__":
    main()
