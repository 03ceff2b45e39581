"""RAM policy evaluation for the test bed's Alibaba Cloud FAKE (control_plane.py): identity
policies of RAM users and roles, and roles' trust policies (AssumeRolePolicyDocument).

This is the fake's own small evaluator, written from RAM's documented policy grammar
(https://www.alibabacloud.com/help/en/ram/user-guide/policy-structure-and-syntax and
"Policy elements"), not Alibaba's engine:

- Documents: JSON objects with `Version` "1" and `Statement` (a list, or one object). A
  statement has `Effect` (Allow | Deny), `Action` or `NotAction`, and for identity policies
  `Resource` or `NotResource`; a trust policy's statements carry `Principal` instead of a
  resource (`{"RAM": [...], "Service": [...], "Federated": [...]}`, or `"*"`). Anything else is
  refused as MalformedPolicyDocument (PolicyError).
- Matching: `*` and `?` wildcards; action names case-insensitive (RAM: "ram:GetRole" and
  "RAM:getrole" are the same action), resources and principals case-sensitive.
- Decision: an explicit Deny in any policy wins, else an Allow, else an implicit deny.
- Conditions: StringEquals, StringNotEquals, StringEqualsIgnoreCase, StringNotEqualsIgnoreCase,
  StringLike, StringNotLike, Bool, NumericEquals/NotEquals/LessThan/LessThanEquals/GreaterThan/
  GreaterThanEquals, IpAddress, NotIpAddress; each with the ForAnyValue: / ForAllValues: set
  prefixes for multi-valued keys. Operators and keys combine with AND, a key's values with OR.
  Keys are case-insensitive (acs:SourceIp, acs:SecureTransport, acs:PrincipalARN,
  sts:ExternalId, oidc:iss, oidc:aud, oidc:sub, ...). A key absent from the request makes a
  positive operator false and a negated one (`...Not...`) true; ForAllValues on an absent key is
  true, ForAnyValue false (the AWS-documented semantics; RAM documents none, UNVERIFIED).

Not modelled: policy variables (`${...}`), `IfExists`, Date operators, session policies,
permission boundaries, resource groups and the ActionTrail-style "acs:CurrentTime".

`evaluate` has the signature tests/testbed/alibaba/oss_policy.py's callers expect
(document, action, resource, context, principal_ids=None), so the OSS fake can use it too.
"""

import ipaddress
import json
import re

ALLOW = "Allow"
DENY = "Deny"
IMPLICIT_DENY = "ImplicitDeny"

VERSION = "1"
STATEMENT_KEYS = {"Effect", "Action", "NotAction", "Resource", "NotResource", "Principal", "Condition", "Sid"}


class PolicyError(ValueError):
    """A document RAM would refuse: MalformedPolicyDocument, with this message."""


def _list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def parse(document, trust=False):
    """The document as a dict, checked against RAM's grammar (`trust`: a role's trust policy)."""
    if isinstance(document, (bytes, bytearray)):
        document = document.decode("utf-8")
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError as error:
            raise PolicyError(f"The policy document is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise PolicyError("The policy document must be a JSON object")
    unknown = set(document) - {"Version", "Statement"}
    if unknown:
        raise PolicyError(f"Unknown policy element: {sorted(unknown)[0]}")
    if document.get("Version") != VERSION:
        raise PolicyError('The policy Version must be "1"')
    statements = document.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise PolicyError("The policy must have at least one Statement")
    for statement in statements:
        _check_statement(statement, trust)
    return {"Version": VERSION, "Statement": statements}


def _check_statement(statement, trust):
    if not isinstance(statement, dict):
        raise PolicyError("A Statement must be a JSON object")
    unknown = set(statement) - STATEMENT_KEYS
    if unknown:
        raise PolicyError(f"Unknown statement element: {sorted(unknown)[0]}")
    if statement.get("Effect") not in (ALLOW, DENY):
        raise PolicyError('Effect must be "Allow" or "Deny"')
    if ("Action" in statement) == ("NotAction" in statement):
        raise PolicyError("A Statement needs exactly one of Action and NotAction")
    for key in ("Action", "NotAction", "Resource", "NotResource"):
        if key in statement:
            values = _list(statement[key])
            if not values or not all(isinstance(v, str) and v for v in values):
                raise PolicyError(f"{key} must be a non-empty string or list of strings")
    if trust:
        if "Principal" not in statement:
            raise PolicyError("A trust policy Statement needs a Principal")
        principal = statement["Principal"]
        if principal != "*" and not (
            isinstance(principal, dict) and principal
            and set(principal) <= {"RAM", "Service", "Federated"}
            and all(_list(v) and all(isinstance(x, str) for x in _list(v)) for v in principal.values())
        ):
            raise PolicyError('Principal must be "*" or an object of RAM, Service and Federated')
    elif ("Resource" in statement) == ("NotResource" in statement):
        raise PolicyError("A Statement needs exactly one of Resource and NotResource")
    condition = statement.get("Condition", {})
    if not isinstance(condition, dict):
        raise PolicyError("Condition must be a JSON object")
    for operator, block in condition.items():
        if _operator(operator) is None:
            raise PolicyError(f"Unsupported condition operator: {operator}")
        if not isinstance(block, dict):
            raise PolicyError(f"Condition {operator} must map keys to values")


def _wildcard(pattern, value, ignore_case):
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL) is not None


def _matches_any(patterns, value, ignore_case=False):
    return any(_wildcard(p, value, ignore_case) for p in _list(patterns))


def _principal_matches(principal, principal_ids):
    """`principal_ids`: {"RAM": [...], "Service": [...], "Federated": [...]} of the caller (a
    trust policy), or a flat list of identifiers (a bucket policy's Principal list)."""
    if principal == "*" or principal == ["*"]:
        return True
    if isinstance(principal_ids, dict):
        if not isinstance(principal, dict):
            return False
        return any(
            _matches_any(principal.get(kind), given)
            for kind, values in principal_ids.items() for given in values
        )
    values = [v for vs in principal.values() for v in _list(vs)] if isinstance(principal, dict) else _list(principal)
    return any(v == "*" or _matches_any(v, given) for v in values for given in principal_ids)


def _statement_applies(statement, action, resource, context, principal_ids):
    if "Action" in statement:
        if not _matches_any(statement["Action"], action, ignore_case=True):
            return False
    elif _matches_any(statement["NotAction"], action, ignore_case=True):
        return False
    if principal_ids is not None and "Principal" in statement:
        if not _principal_matches(statement["Principal"], principal_ids):
            return False
    if "Resource" in statement:
        if not _matches_any(statement["Resource"], resource):
            return False
    elif "NotResource" in statement and _matches_any(statement["NotResource"], resource):
        return False
    return all(
        _condition(operator, block, context)
        for operator, block in (statement.get("Condition") or {}).items()
    )


# --- conditions ---------------------------------------------------------------------------


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _ip_in(value, network):
    try:
        return ipaddress.ip_address(str(value)) in ipaddress.ip_network(str(network), strict=False)
    except ValueError:
        return False


def _bool(value):
    return str(value).lower() if isinstance(value, (str, bool)) else None


OPERATORS = {
    # name: (test(request value, policy value), negated)
    "stringequals": (lambda a, b: str(a) == str(b), False),
    "stringnotequals": (lambda a, b: str(a) == str(b), True),
    "stringequalsignorecase": (lambda a, b: str(a).lower() == str(b).lower(), False),
    "stringnotequalsignorecase": (lambda a, b: str(a).lower() == str(b).lower(), True),
    "stringlike": (lambda a, b: _wildcard(str(b), str(a), False), False),
    "stringnotlike": (lambda a, b: _wildcard(str(b), str(a), False), True),
    "bool": (lambda a, b: _bool(a) == _bool(b), False),
    "numericequals": (lambda a, b: None not in (_number(a), _number(b)) and _number(a) == _number(b), False),
    "numericnotequals": (lambda a, b: None not in (_number(a), _number(b)) and _number(a) == _number(b), True),
    "numericlessthan": (lambda a, b: None not in (_number(a), _number(b)) and _number(a) < _number(b), False),
    "numericlessthanequals": (lambda a, b: None not in (_number(a), _number(b)) and _number(a) <= _number(b), False),
    "numericgreaterthan": (lambda a, b: None not in (_number(a), _number(b)) and _number(a) > _number(b), False),
    "numericgreaterthanequals": (lambda a, b: None not in (_number(a), _number(b)) and _number(a) >= _number(b), False),
    "ipaddress": (_ip_in, False),
    "notipaddress": (_ip_in, True),
}


def _operator(name):
    """(set qualifier or None, test, negated) of an operator name, or None if unsupported."""
    qualifier = None
    lowered = name.lower()
    for prefix in ("foranyvalue:", "forallvalues:"):
        if lowered.startswith(prefix):
            qualifier, lowered = prefix[:-1], lowered[len(prefix):]
    if lowered not in OPERATORS:
        return None
    test, negated = OPERATORS[lowered]
    return qualifier, test, negated


def _context_value(context, key):
    for k, v in context.items():
        if k.lower() == key.lower():
            return True, v
    return False, None


def _condition(operator, block, context):
    qualifier, test, negated = _operator(operator)
    for key, wanted in block.items():
        wanted = _list(wanted)
        present, value = _context_value(context, key)
        if not present or value is None:
            if qualifier == "forallvalues":
                continue
            if qualifier == "foranyvalue" or not negated:
                return False
            continue
        values = [str(v).lower() if isinstance(v, bool) else v for v in _list(value)]
        if qualifier == "forallvalues":
            # Every request value matches one of the policy's (negated: none does).
            ok = all(any(test(v, w) for w in wanted) != negated for v in values)
        elif qualifier == "foranyvalue":
            ok = any(any(test(v, w) for w in wanted) != negated for v in values)
        else:
            hit = any(test(v, w) for v in values for w in wanted)
            ok = not hit if negated else hit
        if not ok:
            return False
    return True


# --- decisions ----------------------------------------------------------------------------


def evaluate(document, action, resource, context, principal_ids=None):
    """"Allow", "Deny" or "ImplicitDeny" for one request against one document.

    `principal_ids`: None for an identity policy; for a trust policy the caller as
    {"RAM": [...]} / {"Federated": [...]} / {"Service": [...]}; for a bucket policy a list of
    the caller's identifiers. `resource` is ignored by statements without Resource (trust)."""
    policy = parse(document, trust=isinstance(principal_ids, dict))
    allowed = False
    for statement in policy["Statement"]:
        if _statement_applies(statement, action, resource, context or {}, principal_ids):
            if statement["Effect"] == DENY:
                return DENY
            allowed = True
    return ALLOW if allowed else IMPLICIT_DENY


def decide(documents, action, resource, context):
    """The decision of several identity policies together: (result, the name of the policy that
    decided it or None). `documents`: [(name, document)]."""
    allowed_by = None
    for name, document in documents:
        result = evaluate(document, action, resource, context)
        if result == DENY:
            return DENY, name
        if result == ALLOW and allowed_by is None:
            allowed_by = name
    return (ALLOW, allowed_by) if allowed_by else (IMPLICIT_DENY, None)


__all__ = ["evaluate", "decide", "parse", "PolicyError", "ALLOW", "DENY", "IMPLICIT_DENY"]
