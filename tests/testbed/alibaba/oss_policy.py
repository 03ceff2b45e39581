"""A small RAM-style policy evaluator for the OSS fake's bucket policies (tests/testbed/alibaba/oss.py).

Scope: the statements a bucket policy holds (https://www.alibabacloud.com/help/en/oss/user-guide/authorization-syntax-and-elements):
Effect, Action / NotAction, Resource / NotResource, Principal (bucket policies only; `[]` means
`*`) and Condition. Matching is RAM's: `*` and `?` wildcards, actions case-insensitive, resources
case-sensitive; an explicit Deny wins over an Allow; nothing matching is an implicit deny.

Condition operators: String{Equals,NotEquals,EqualsIgnoreCase,NotEqualsIgnoreCase,Like,NotLike},
Bool, Numeric{Equals,NotEquals,LessThan,LessThanEquals,GreaterThan,GreaterThanEquals},
IpAddress / NotIpAddress, Date{Equals,NotEquals,LessThan,LessThanEquals,GreaterThan,GreaterThanEquals}
(ISO 8601 or epoch seconds). Keys are case-insensitive. Several operators, keys or values combine
as RAM documents: operators and keys with AND, the values of one key with OR. A key missing from
the request context makes a positive operator false and a negated one (`Not...`) true.

Not modelled: policy variables (`${...}`), `IfExists` suffixes, `ForAnyValue` / `ForAllValues`.

This evaluator exists because tests/testbed/alibaba/ram_policy.py (the RAM fake's evaluator,
written separately) did not exist when the OSS fake was written; oss.py takes any evaluator with the
signature of `evaluate` below, so the RAM fake's can replace this one.
"""

import datetime
import ipaddress
import json
import re

ALLOW = "Allow"
DENY = "Deny"
IMPLICIT_DENY = "ImplicitDeny"


class PolicyError(ValueError):
    """A policy document that is not valid JSON or not a RAM policy (MalformedPolicy for OSS)."""


def parse(document):
    """The policy as a dict, with its statements checked for the elements RAM requires."""
    if isinstance(document, (bytes, bytearray)):
        document = document.decode("utf-8")
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError as error:
            raise PolicyError(f"the policy is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise PolicyError("the policy is not a JSON object")
    statements = document.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise PolicyError("the policy has no Statement")
    for statement in statements:
        if not isinstance(statement, dict):
            raise PolicyError("a Statement is not an object")
        if statement.get("Effect") not in (ALLOW, DENY):
            raise PolicyError("a Statement's Effect is neither Allow nor Deny")
        if "Action" not in statement and "NotAction" not in statement:
            raise PolicyError("a Statement has no Action")
        if "Resource" not in statement and "NotResource" not in statement:
            raise PolicyError("a Statement has no Resource")
    return document


def _list(value):
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _wildcard(pattern, value, case_sensitive=True):
    if not case_sensitive:
        pattern, value = pattern.lower(), value.lower()
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


def _principal_matches(principal, principal_ids):
    """Bucket policy Principal: a list of UIDs / ARNs (or {"RAM": [...]}), `*` or `[]` for anyone."""
    if isinstance(principal, dict):
        values = []
        for v in principal.values():
            values.extend(_list(v))
    else:
        values = _list(principal)
    if not values:
        return True  # [] is documented as equivalent to ["*"]
    for value in values:
        value = str(value)
        if value == "*":
            return True
        for pid in principal_ids:
            if _wildcard(value, str(pid)):
                return True
    return False


def _to_date(value):
    value = str(value)
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return datetime.datetime.fromtimestamp(float(value), datetime.timezone.utc)
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed


def _compare(operator, actual, expected):
    op = operator
    if op in ("StringEquals", "StringNotEquals"):
        return actual == expected
    if op in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
        return actual.lower() == expected.lower()
    if op in ("StringLike", "StringNotLike"):
        return _wildcard(expected, actual)
    if op == "Bool":
        return actual.lower() == expected.lower()
    if op.startswith("Numeric"):
        a, e = float(actual), float(expected)
        return {
            "NumericEquals": a == e, "NumericNotEquals": a == e, "NumericLessThan": a < e,
            "NumericLessThanEquals": a <= e, "NumericGreaterThan": a > e, "NumericGreaterThanEquals": a >= e,
        }[op]
    if op.startswith("Date"):
        a, e = _to_date(actual), _to_date(expected)
        return {
            "DateEquals": a == e, "DateNotEquals": a == e, "DateLessThan": a < e,
            "DateLessThanEquals": a <= e, "DateGreaterThan": a > e, "DateGreaterThanEquals": a >= e,
        }[op]
    if op in ("IpAddress", "NotIpAddress"):
        try:
            return ipaddress.ip_address(actual) in ipaddress.ip_network(expected, strict=False)
        except ValueError:
            return False
    raise PolicyError(f"condition operator {operator} is not supported by this evaluator")


NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "NumericNotEquals", "DateNotEquals", "NotIpAddress"}


def _conditions_hold(conditions, context):
    lowered = {str(k).lower(): v for k, v in (context or {}).items()}
    for operator, keys in (conditions or {}).items():
        if not isinstance(keys, dict):
            raise PolicyError(f"condition {operator} is not an object")
        for key, expected_values in keys.items():
            actual = lowered.get(str(key).lower())
            negated = operator in NEGATED
            if actual is None:
                if not negated:
                    return False
                continue
            actual_values = [str(a) for a in _list(actual)]
            expected = [str(e).lower() if isinstance(e, bool) else str(e) for e in _list(expected_values)]
            matched = any(_compare(operator, a, e) for a in actual_values for e in expected)
            if negated:
                matched = not matched
            if not matched:
                return False
    return True


def statement_applies(statement, action, resource, context, principal_ids=None):
    if principal_ids is not None and not _principal_matches(statement.get("Principal"), principal_ids):
        return False
    if "Action" in statement:
        if not any(_wildcard(str(p), action, case_sensitive=False) for p in _list(statement["Action"])):
            return False
    elif any(_wildcard(str(p), action, case_sensitive=False) for p in _list(statement["NotAction"])):
        return False
    if "Resource" in statement:
        if not any(_wildcard(str(p), resource) for p in _list(statement["Resource"])):
            return False
    elif any(_wildcard(str(p), resource) for p in _list(statement["NotResource"])):
        return False
    return _conditions_hold(statement.get("Condition"), context)


def evaluate(document, action, resource, context, principal_ids=None):
    """"Allow", "Deny" or "ImplicitDeny" for one request against one policy document.

    `principal_ids`: None for an identity (RAM) policy, which has no Principal; for a bucket
    policy, the identifiers of the caller a Principal entry may name (an empty list for an
    anonymous caller, who matches only `*`)."""
    policy = parse(document)
    statements = policy["Statement"]
    if isinstance(statements, dict):
        statements = [statements]
    allowed = False
    for statement in statements:
        if statement_applies(statement, action, resource, context, principal_ids):
            if statement["Effect"] == DENY:
                return DENY
            allowed = True
    return ALLOW if allowed else IMPLICIT_DENY


__all__ = ["evaluate", "parse", "PolicyError", "ALLOW", "DENY", "IMPLICIT_DENY"]
