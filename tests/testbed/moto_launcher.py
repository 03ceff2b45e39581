"""Starts moto's server with two corrections to its IAM policy evaluation, so that the bucket
policy every bucketwire bucket carries (deny requests that do not use TLS) behaves as on AWS.

1. moto 5.1/5.2 do not know the `Bool` condition operator and then ignore the condition,
   so `Deny ... Condition {"Bool": {"aws:SecureTransport": "false"}}` denies everything.
   Here `Bool` is evaluated, and `aws:SecureTransport` is "true": the test bed talks plain
   HTTP to the emulator on loopback, standing in for AWS, which every SDK reaches over HTTPS.
2. moto treats a statement whose condition is not met as an explicit Deny, whatever its
   Effect (moto/iam/access_control.py, IAMPolicyStatement.is_action_permitted). On AWS such
   a statement simply does not apply; here it is NEUTRAL.

Everything else is moto as released. Usage is that of `moto_server`
(e.g. `moto_launcher.py -H 127.0.0.1 -p 5000`).
"""

import sys

from moto.iam import policy_conditions
from moto.iam.access_control import IAMPolicyStatement, PermissionResult

# Request context the emulator does not provide itself.
REQUEST_CONTEXT = {"aws:SecureTransport": "true"}


def bool_operation(expected, actual):
    values = expected if isinstance(expected, list) else [expected]
    return any(str(v).lower() == str(actual).lower() for v in values)


policy_conditions.CONDITION_OPERATIONS["Bool"] = bool_operation


def is_action_permitted(self, action, resource="*", principal=None, incoming_condition_values=None):
    context = dict(REQUEST_CONTEXT)
    context.update(incoming_condition_values or {})
    if "NotAction" in self._statement:
        concerned = not self._check_element_matches("NotAction", action)
    else:
        concerned = bool(self._check_element_matches("Action", action))
    if not concerned:
        return PermissionResult.NEUTRAL
    if self.is_unknown_principal(self._statement.get("Principal")):
        return PermissionResult.NEUTRAL
    if principal and not self._check_principal(principal):
        return PermissionResult.DENIED
    if not self._check_conditions(context):
        return PermissionResult.NEUTRAL  # correction 2: the statement does not apply
    if not self._statement.get("Resource"):
        return PermissionResult.PERMITTED
    if not self._check_element_matches("Resource", resource):
        return PermissionResult.NEUTRAL
    return PermissionResult.PERMITTED if self._statement["Effect"] == "Allow" else PermissionResult.DENIED


IAMPolicyStatement.is_action_permitted = is_action_permitted

if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])
