"""Every allow/deny decision on the test bed, made by an IAM policy simulator.

moto stays the store of AWS state (IAM, S3, STS, KMS, EKS) and checks signatures; what a caller
may do is decided here instead of by moto's partial evaluator:

1. derive, from the request as AWS would see it, the IAM action(s) it is authorized with, the
   resource ARN(s) and the request context (`aws:SecureTransport`, `aws:PrincipalArn`,
   `aws:ResourceTag/*`, `aws:RequestTag/*`, `aws:TagKeys`, `s3:prefix`, `sts:ExternalId`,
   `iam:PermissionsBoundary`, `iam:PolicyARN`, `kms:ViaService`, `kms:EncryptionContext:*`, ...);
   an S3 request on an SSE-KMS object also needs the KMS action S3 performs for the caller
   (kms:GenerateDataKey to write, kms:Decrypt to read);
2. gather from moto's state the caller's identity policies and permissions boundary, and the
   resource's policy (bucket policy, role trust policy, KMS key policy);
3. ask @cloud-copilot/iam-simulate (tests/testbed/simulator/server.js, one long-lived process);
4. answer a denial in the service's own error shape (S3 XML, IAM/STS query XML, KMS and EKS JSON).

Each decision is also written to the request log (moto_launcher.py), so tests can count which
(action, resource) pairs a principal exercised and that every one was allowed or denied.

A request this module cannot derive (none of the operator's or a workload's requests; some of
the administrator's set-up calls) is decided on moto's own action name and resource, and logged
with `"derivedBy": "moto"` so a test can assert that no operator request took that path.
"""

import itertools
import json
import os
import subprocess
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlparse

from werkzeug.exceptions import HTTPException

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


# --- the simulator process -------------------------------------------------------------------


class Decision:
    def __init__(self, result, policy_type=None):
        self.result = result
        self.policy_type = policy_type

    @property
    def allowed(self):
        return self.result == "Allowed"


class SimulatorError(Exception):
    pass


class _Simulator:
    """One Node process for the emulator's lifetime; one request in flight at a time."""

    def __init__(self):
        self._lock = threading.Lock()
        self._proc = None
        self._ids = itertools.count(1)

    def _start(self):
        modules = os.environ.get(
            "BUCKETWIRE_TESTBED_SIMULATOR_MODULES", str(ROOT / "target" / "testbed" / "simulator" / "node_modules")
        )
        self._proc = subprocess.Popen(
            ["node", str(HERE / "simulator" / "server.js")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "NODE_PATH": modules},
            text=True,
            bufsize=1,
        )

    def decide(self, simulation):
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            ident = next(self._ids)
            self._proc.stdin.write(json.dumps({"id": ident, "simulation": simulation}) + "\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        if not line:
            raise SimulatorError("the IAM simulator exited")
        answer = json.loads(line)
        if answer.get("id") != ident:
            raise SimulatorError(f"the IAM simulator answered request {answer.get('id')}, not {ident}")
        if "error" in answer:
            raise SimulatorError(f"the IAM simulator refused the simulation: {answer['error']}: {json.dumps(simulation)}")
        return Decision(answer["result"], answer.get("policyType"))


SIMULATOR = _Simulator()


def decide(simulation):
    return SIMULATOR.decide(simulation)


def access_denied_message(principal_arn, action, resource_arn, policy_type):
    """AWS's wording of an authorization failure."""
    if policy_type and policy_type.startswith("explicit"):
        kind = policy_type.removeprefix("explicit ")
        because = f"with an explicit deny in {'an' if kind[0] in 'aeiou' else 'a'} {kind}"
    else:
        because = f"because no {policy_type or 'identity-based policy'} allows the {action} action"
    return f"User: {principal_arn} is not authorized to perform: {action} on resource: {resource_arn} {because}"


# --- per-request state (set by moto_launcher.py's WSGI wrapper) ------------------------------

_request = threading.local()


def begin_request(secure_transport):
    _request.secure = secure_transport
    _request.decisions = []


def take_decisions():
    decisions = getattr(_request, "decisions", [])
    _request.decisions = []
    return decisions


def _secure():
    return "true" if getattr(_request, "secure", True) else "false"


def record_decision(entry):
    """Adds a decision to the request log line of the current request."""
    if not hasattr(_request, "decisions"):
        _request.decisions = []
    _request.decisions.append(entry)


# --- denials in each service's shape ---------------------------------------------------------


class ServiceError(HTTPException):
    """An error response with a body in the service's own protocol."""

    def __init__(self, status, body, content_type):
        super().__init__(description=body)
        self.code = status
        self._content_type = content_type

    def get_body(self, environ=None, scope=None):
        return self.description

    def get_headers(self, environ=None, scope=None):
        return [("Content-Type", self._content_type)]


def _xml_escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def denial(protocol, message, code="AccessDenied", status=403):
    """An error answer in the protocol's shape: AccessDenied unless told otherwise."""
    if protocol == "s3":
        body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{_xml_escape(message)}</Message><RequestId>bucketwire-testbed</RequestId><HostId>bucketwire-testbed</HostId></Error>"
        return ServiceError(status, body, "application/xml")
    if protocol == "json":
        # awsJson (KMS): the error type is named in the body, the status is 400.
        return ServiceError(400, json.dumps({"__type": "AccessDeniedException", "message": message}), "application/x-amz-json-1.1")
    if protocol == "rest-json":
        return ServiceError(403, json.dumps({"__type": "AccessDeniedException", "message": message}), "application/json")
    body = (
        "<ErrorResponse><Error><Type>Sender</Type>"
        f"<Code>{code}</Code><Message>{_xml_escape(message)}</Message></Error>"
        "<RequestId>bucketwire-testbed</RequestId></ErrorResponse>"
    )
    return ServiceError(status, body, "text/xml")


def _internal_failure(protocol, message):
    if protocol in ("json", "rest-json"):
        return json.dumps({"__type": "InternalFailure", "message": message})
    return f"<Error><Code>InternalFailure</Code><Message>{_xml_escape(message)}</Message></Error>"


# --- the caller --------------------------------------------------------------------------------


def _iam(account_id, partition):
    from moto.iam.models import iam_backends

    return iam_backends[account_id][partition]


def _document(doc):
    if isinstance(doc, bytes):
        doc = doc.decode()
    if isinstance(doc, str):
        doc = json.loads(unquote(doc) if doc.lstrip().startswith("%") else doc)
    return doc


def _default_version(policy):
    for version in policy.versions:
        if version.is_default:
            return _document(version.document)
    return _document(policy.versions[0].document)


def _tags(tags):
    """moto keeps tags as {key: {"Key": k, "Value": v}} or as [{"Key": k, "Value": v}]."""
    if not tags:
        return {}
    if isinstance(tags, dict):
        return {t["Key"]: t["Value"] for t in tags.values()}
    return {t["Key"]: t["Value"] for t in tags}


class Caller:
    def __init__(self, arn, account_id, principal_arn, policies, boundary):
        self.arn = arn  # as the simulator sees the request principal
        self.account_id = account_id
        self.principal_arn = principal_arn  # aws:PrincipalArn: the user or role ARN
        self.policies = policies
        self.boundary = boundary
        self.tags = {}


def caller_of(iam_request):
    """The identity that signed the request, with its policies, from moto's state."""
    key = iam_request._access_key
    account_id, partition = key.account_id, key.partition
    backend = _iam(account_id, partition)
    policies, boundary = [], None
    if hasattr(key, "_owner_user_name"):
        user = backend.get_user(key._owner_user_name)
        principal_arn = user.arn
        arn = user.arn
        for name, doc in user.policies.items():
            policies.append({"name": f"user inline {name}", "policy": _document(doc)})
        for policy in user.managed_policies.values():
            policies.append({"name": policy.arn, "policy": _default_version(policy)})
        for group in backend.get_groups_for_user(user.name):
            for name, doc in group.policies.items():
                policies.append({"name": f"group {group.name} inline {name}", "policy": _document(doc)})
            for policy in group.managed_policies.values():
                policies.append({"name": policy.arn, "policy": _default_version(policy)})
        return Caller(arn, account_id, principal_arn, policies, None)
    role = backend.get_role(key._owner_role_name)
    for name, doc in role.policies.items():
        policies.append({"name": f"role inline {name}", "policy": _document(doc)})
    for policy in role.managed_policies.values():
        policies.append({"name": policy.arn, "policy": _default_version(policy)})
    if role.permissions_boundary_arn:
        try:
            boundary = _default_version(backend.get_policy(role.permissions_boundary_arn))
        except Exception:
            boundary = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}
    arn = f"arn:{partition}:sts::{account_id}:assumed-role/{role.name}/{key._session_name}"
    caller = Caller(arn, account_id, role.arn, policies, boundary)
    caller.tags = _tags(role.tags)
    return caller


# --- one check: action, resource, context, resource policy -----------------------------------


class Check:
    def __init__(self, action, resource, context=None, resource_policy=None, resource_account=None, derived_by="testbed"):
        self.action = action
        self.resource = resource
        self.context = context or {}
        self.resource_policy = resource_policy
        self.resource_account = resource_account
        self.derived_by = derived_by


def simulate(caller, check):
    context = {
        "aws:SecureTransport": _secure(),
        "aws:PrincipalArn": caller.principal_arn,
        "aws:PrincipalAccount": caller.account_id,
        "aws:PrincipalType": "AssumedRole" if ":assumed-role/" in caller.arn else "User",
        "aws:username": caller.arn.rsplit("/", 1)[-1],
    }
    for key, value in caller.tags.items():
        context[f"aws:PrincipalTag/{key}"] = value
    context.update(check.context)
    simulation = {
        "request": {
            "principal": caller.arn,
            "action": check.action,
            "resource": {"resource": check.resource, "accountId": check.resource_account or caller.account_id},
            "contextVariables": context,
        },
        "identityPolicies": caller.policies,
        "serviceControlPolicies": [],
        "resourceControlPolicies": [],
    }
    if check.resource_policy is not None:
        simulation["resourcePolicy"] = check.resource_policy
    if caller.boundary is not None:
        simulation["permissionBoundaryPolicies"] = [{"name": "permissions boundary", "policy": caller.boundary}]
    decision = decide(simulation)
    record_decision({
        "action": check.action,
        "resource": check.resource,
        "principal": caller.principal_arn,
        "result": decision.result,
        "derivedBy": check.derived_by,
    })
    return decision


# --- deriving checks per service --------------------------------------------------------------


def _form(iam_request):
    data = iam_request._data or {}
    out = {}
    for key, value in data.items():
        out[key] = value[0] if isinstance(value, list) and value else value
    return out


def _request_tags(form):
    tags, n = {}, 1
    while f"Tags.member.{n}.Key" in form:
        tags[form[f"Tags.member.{n}.Key"]] = form.get(f"Tags.member.{n}.Value", "")
        n += 1
    return tags


def _member_list(form, name):
    values, n = [], 1
    while f"{name}.member.{n}" in form:
        values.append(form[f"{name}.member.{n}"])
        n += 1
    return values


def _tag_context(tags):
    context = {f"aws:RequestTag/{k}": v for k, v in tags.items()}
    if tags:
        context["aws:TagKeys"] = list(tags)
    return context


# IAM actions whose resource is a role named by RoleName.
IAM_ROLE_PARAM = "RoleName"


def iam_checks(iam_request, caller, partition):
    form = _form(iam_request)
    action = form.get("Action", "")
    account = caller.account_id
    backend = _iam(account, partition)
    context = {}
    resource = "*"
    resource_tags = {}
    tags = _request_tags(form)
    if action in ("TagRole", "TagPolicy", "TagUser", "CreateRole", "CreatePolicy", "CreateUser", "TagOpenIDConnectProvider"):
        context.update(_tag_context(tags))
    if action.startswith("Untag"):
        keys = _member_list(form, "TagKeys")
        if keys:
            context["aws:TagKeys"] = keys
    if action == "CreateRole":
        path = form.get("Path", "/")
        resource = f"arn:{partition}:iam::{account}:role{path}{form['RoleName']}"
        if form.get("PermissionsBoundary"):
            context["iam:PermissionsBoundary"] = form["PermissionsBoundary"]
    elif action == "CreatePolicy":
        path = form.get("Path", "/")
        resource = f"arn:{partition}:iam::{account}:policy{path}{form['PolicyName']}"
    elif action == "CreateOpenIDConnectProvider":
        # Resource type oidc-provider: the provider's ARN, its URL without the scheme.
        url = urlparse(form.get("Url", ""))
        resource = f"arn:{partition}:iam::{account}:oidc-provider/{url.netloc}{url.path}"
    elif IAM_ROLE_PARAM in form:
        name = form[IAM_ROLE_PARAM]
        role = _role_named(backend, name)
        if role is not None:
            resource = role.arn
            resource_tags = _tags(role.tags)
            if role.permissions_boundary_arn and action != "PutRolePermissionsBoundary":
                context["iam:PermissionsBoundary"] = role.permissions_boundary_arn
        else:
            # IAM cannot know the path of a role that does not exist (tests/testbed/SIMULATOR.md).
            resource = f"arn:{partition}:iam::{account}:role/{name}"
        if action == "PutRolePermissionsBoundary":
            context["iam:PermissionsBoundary"] = form.get("PermissionsBoundary", "")
        if action in ("AttachRolePolicy", "DetachRolePolicy"):
            context["iam:PolicyARN"] = form.get("PolicyArn", "")
    elif "PolicyArn" in form:
        resource = form["PolicyArn"]
        try:
            resource_tags = _tags(backend.get_policy(resource).tags)
        except Exception:
            pass
    elif "OpenIDConnectProviderArn" in form:
        resource = form["OpenIDConnectProviderArn"]
    elif "UserName" in form:
        try:
            user = backend.get_user(form["UserName"])
            resource = user.arn
        except Exception:
            resource = f"arn:{partition}:iam::{account}:user/{form['UserName']}"
    for key, value in resource_tags.items():
        context[f"aws:ResourceTag/{key}"] = value
    checks = [Check(f"iam:{action}", resource, context)]
    # Creating an IAM entity with tags also needs the tagging action on it (IAM User Guide,
    # "Permissions required for tagging IAM resources").
    tagging = CREATE_WITH_TAGS.get(action)
    if tagging and tags:
        checks.append(Check(tagging, resource, _tag_context(tags)))
    return checks


CREATE_WITH_TAGS = {
    "CreateRole": "iam:TagRole",
    "CreatePolicy": "iam:TagPolicy",
    "CreateUser": "iam:TagUser",
    "CreateOpenIDConnectProvider": "iam:TagOpenIDConnectProvider",
}


def _role_named(backend, name):
    for role in backend.roles.values():
        if role.name == name:
            return role
    return None


def sts_checks(iam_request, caller, partition):
    form = _form(iam_request)
    action = form.get("Action", "")
    if action == "GetCallerIdentity":
        return []  # always allowed, whatever the policies say (STS API reference)
    if action == "AssumeRole":
        role_arn = form["RoleArn"]
        role_account = role_arn.split(":")[4]
        context = {}
        if "ExternalId" in form:
            context["sts:ExternalId"] = form["ExternalId"]
        context["sts:RoleSessionName"] = form.get("RoleSessionName", "")
        role = _role_by_arn(role_account, partition, role_arn)
        trust = _document(role.assume_role_policy_document) if role is not None else {"Version": "2012-10-17", "Statement": []}
        tags = _request_tags(form)
        checks = [Check("sts:AssumeRole", role_arn, context, trust, role_account)]
        if tags:
            checks.append(Check("sts:TagSession", role_arn, _tag_context(tags), trust, role_account))
        return checks
    return None  # not derived


def _role_by_arn(account, partition, arn):
    try:
        return _iam(account, partition).get_role_by_arn(arn)
    except Exception:
        return None


def _kms_backend(account, region):
    from moto.kms.models import kms_backends

    return kms_backends[account][region]


def _kms_key(account, region, key_id):
    """(key ARN, key policy, owning account) of a key named by id, ARN or alias, or None."""
    if key_id.startswith("arn:"):
        parts = key_id.split(":")
        region, account = parts[3], parts[4]
    try:
        backend = _kms_backend(account, region)
        key = backend.keys[backend.any_id_to_key_id(key_id)]
    except Exception:
        return None
    return key.arn, _document(key.policy), account


def kms_checks(iam_request, caller, partition):
    target = iam_request._headers.get("X-Amz-Target", "")
    operation = target.rpartition(".")[2]
    try:
        body = json.loads(iam_request._body or b"{}")
    except ValueError:
        body = {}
    key_id = body.get("KeyId") or body.get("TargetKeyId")
    if operation in ("CreateKey", "ListKeys", "ListAliases", "GenerateRandom"):
        return [Check(f"kms:{operation}", "*")]
    if not key_id:
        return None
    region = iam_request._region
    found = _kms_key(caller.account_id, region, key_id)
    context = {"kms:CallerAccount": caller.account_id}
    if key_id.startswith("alias/") or ":alias/" in key_id:
        context["kms:RequestAlias"] = key_id if key_id.startswith("alias/") else "alias/" + key_id.split(":alias/")[1]
    if found is None:
        arn = key_id if key_id.startswith("arn:") else f"arn:{partition}:kms:{region}:{caller.account_id}:key/{key_id}"
        return [Check(f"kms:{operation}", arn, context)]
    arn, key_policy, account = found
    return [Check(f"kms:{operation}", arn, context, key_policy, account)]


def eks_checks(iam_request, caller, partition):
    path = urlparse(iam_request._path).path
    parts = [p for p in path.split("/") if p]
    region = iam_request._region
    if iam_request._method == "GET" and len(parts) == 2 and parts[0] == "clusters":
        return [Check("eks:DescribeCluster", f"arn:{partition}:eks:{region}:{caller.account_id}:cluster/{unquote(parts[1])}")]
    if iam_request._method == "GET" and parts == ["clusters"]:
        return [Check("eks:ListClusters", "*")]
    return None


# S3: (method, level, subresource) -> IAM action. Level is "service", "bucket" or "object";
# the first subresource found in the query wins (AWS's own "Actions, resources, and condition
# keys for Amazon S3" table, and the S3 API reference's "Permissions" of each operation).
S3_BUCKET_ACTIONS = {
    "GET": [
        ("versions", "s3:ListBucketVersions"),
        ("uploads", "s3:ListBucketMultipartUploads"),
        ("location", "s3:GetBucketLocation"),
        ("tagging", "s3:GetBucketTagging"),
        ("publicAccessBlock", "s3:GetBucketPublicAccessBlock"),
        ("ownershipControls", "s3:GetBucketOwnershipControls"),
        ("encryption", "s3:GetEncryptionConfiguration"),
        ("policy", "s3:GetBucketPolicy"),
        ("policyStatus", "s3:GetBucketPolicyStatus"),
        ("versioning", "s3:GetBucketVersioning"),
        ("acl", "s3:GetBucketAcl"),
        ("lifecycle", "s3:GetLifecycleConfiguration"),
        ("cors", "s3:GetBucketCORS"),
        ("logging", "s3:GetBucketLogging"),
        ("notification", "s3:GetBucketNotification"),
        ("website", "s3:GetBucketWebsite"),
        ("object-lock", "s3:GetBucketObjectLockConfiguration"),
        ("", "s3:ListBucket"),
    ],
    "HEAD": [("", "s3:ListBucket")],  # HeadBucket is authorized by s3:ListBucket
    "PUT": [
        ("tagging", "s3:PutBucketTagging"),
        ("publicAccessBlock", "s3:PutBucketPublicAccessBlock"),
        ("ownershipControls", "s3:PutBucketOwnershipControls"),
        ("encryption", "s3:PutEncryptionConfiguration"),
        ("policy", "s3:PutBucketPolicy"),
        ("versioning", "s3:PutBucketVersioning"),
        ("acl", "s3:PutBucketAcl"),
        ("lifecycle", "s3:PutLifecycleConfiguration"),
        ("cors", "s3:PutBucketCORS"),
        ("logging", "s3:PutBucketLogging"),
        ("notification", "s3:PutBucketNotification"),
        ("website", "s3:PutBucketWebsite"),
        ("object-lock", "s3:PutBucketObjectLockConfiguration"),
        ("", "s3:CreateBucket"),
    ],
    "DELETE": [
        ("tagging", "s3:PutBucketTagging"),
        ("publicAccessBlock", "s3:PutBucketPublicAccessBlock"),
        ("ownershipControls", "s3:PutBucketOwnershipControls"),
        ("encryption", "s3:PutEncryptionConfiguration"),
        ("policy", "s3:DeleteBucketPolicy"),
        ("lifecycle", "s3:PutLifecycleConfiguration"),
        ("cors", "s3:PutBucketCORS"),
        ("website", "s3:DeleteBucketWebsite"),
        ("", "s3:DeleteBucket"),
    ],
}
S3_OBJECT_ACTIONS = {
    "GET": [("uploadId", "s3:ListMultipartUploadParts"), ("tagging", "s3:GetObjectTagging"), ("acl", "s3:GetObjectAcl"), ("", "s3:GetObject")],
    "HEAD": [("", "s3:GetObject")],
    "PUT": [("tagging", "s3:PutObjectTagging"), ("acl", "s3:PutObjectAcl"), ("", "s3:PutObject")],
    "DELETE": [("uploadId", "s3:AbortMultipartUpload"), ("tagging", "s3:DeleteObjectTagging"), ("", "s3:DeleteObject")],
    "POST": [("uploads", "s3:PutObject"), ("uploadId", "s3:PutObject"), ("restore", "s3:RestoreObject"), ("", "s3:PutObject")],
}
# With ?versionId the object actions become their version forms.
S3_VERSION_FORMS = {
    "s3:GetObject": "s3:GetObjectVersion",
    "s3:DeleteObject": "s3:DeleteObjectVersion",
    "s3:GetObjectTagging": "s3:GetObjectVersionTagging",
    "s3:PutObjectTagging": "s3:PutObjectVersionTagging",
    "s3:DeleteObjectTagging": "s3:DeleteObjectVersionTagging",
    "s3:GetObjectAcl": "s3:GetObjectVersionAcl",
    "s3:PutObjectAcl": "s3:PutObjectVersionAcl",
}


def _s3_bucket(account, partition, name):
    from moto.s3.models import s3_backends

    try:
        return s3_backends[account][partition].get_bucket(name)
    except Exception:
        pass
    # Buckets are global: find the one account that owns it.
    for acct, by_partition in s3_backends.items():
        backend = by_partition.get(partition) if hasattr(by_partition, "get") else None
        if backend is not None and name in backend.buckets:
            return backend.buckets[name]
    return None


def s3_checks(iam_request, caller, partition, moto_resource):
    method = iam_request._method
    parsed = urlparse(iam_request._path)
    query = dict(parse_qsl(parsed.query, keep_blank_values=True))
    headers = {k.lower(): v for k, v in iam_request._headers.items()}
    arn = moto_resource or "*"
    rest = arn.split(":::", 1)[1] if ":::" in arn else "*"
    bucket_name, _, key = rest.partition("/")
    if bucket_name in ("", "*"):
        if method == "GET":
            return [Check("s3:ListAllMyBuckets", "*")]
        return None
    bucket = _s3_bucket(caller.account_id, partition, bucket_name)
    bucket_account = bucket.account_id if bucket is not None else caller.account_id
    bucket_arn = f"arn:{partition}:s3:::{bucket_name}"
    bucket_policy = _document(bucket.policy) if bucket is not None and bucket.policy else None
    context = {"s3:ResourceAccount": bucket_account}
    region = iam_request._region
    if method == "POST" and "delete" in query:
        return _delete_objects_checks(iam_request, bucket_arn, bucket_policy, bucket_account, context)
    if key:
        table = S3_OBJECT_ACTIONS.get(method, [])
        resource = f"{bucket_arn}/{key}"
    else:
        table = S3_BUCKET_ACTIONS.get(method, [])
        resource = bucket_arn
    action = next((a for sub, a in table if sub == "" or sub in query), None)
    if action is None:
        return None
    if key and "versionId" in query:
        action = S3_VERSION_FORMS.get(action, action)
        context["s3:versionid"] = query["versionId"]
    if action in ("s3:ListBucket", "s3:ListBucketVersions") and method == "GET":
        for name in ("prefix", "delimiter", "max-keys"):
            if name in query:
                context[f"s3:{name}"] = query[name]
    if action == "s3:PutObject":
        for header in ("x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id", "x-amz-acl"):
            if header in headers:
                context[f"s3:{header}"] = headers[header]
    checks = [Check(action, resource, context, bucket_policy, bucket_account)]
    if key and "x-amz-copy-source" in headers and method == "PUT":
        source = unquote(headers["x-amz-copy-source"]).lstrip("/")
        source_bucket = source.split("/", 1)[0]
        source_obj = _s3_bucket(caller.account_id, partition, source_bucket)
        checks.append(Check(
            "s3:GetObject", f"arn:{partition}:s3:::{source}", {},
            _document(source_obj.policy) if source_obj is not None and source_obj.policy else None,
            source_obj.account_id if source_obj is not None else caller.account_id,
        ))
    checks += _kms_for_object(iam_request, caller, partition, region, bucket, bucket_arn, key, action, method, query, headers)
    return checks


def _kms_for_object(iam_request, caller, partition, region, bucket, bucket_arn, key, action, method, query, headers):
    """The KMS call S3 makes on the caller's behalf for an SSE-KMS object."""
    if not key or bucket is None:
        return []
    kms_action, key_id, bucket_key = None, None, False
    if action == "s3:PutObject" and not ("uploadId" in query and method == "PUT"):
        encryption = headers.get("x-amz-server-side-encryption")
        key_id = headers.get("x-amz-server-side-encryption-aws-kms-key-id")
        rule = (bucket.encryption or {}).get("Rule", {}) if bucket.encryption else {}
        default = rule.get("ApplyServerSideEncryptionByDefault", {})
        if encryption is None and default.get("SSEAlgorithm") == "aws:kms":
            encryption = "aws:kms"
            key_id = key_id or default.get("KMSMasterKeyID")
        bucket_key = str(headers.get("x-amz-server-side-encryption-bucket-key-enabled", rule.get("BucketKeyEnabled", False))).lower() == "true"
        if encryption == "aws:kms":
            kms_action = "kms:GenerateDataKey"
    elif action in ("s3:GetObject", "s3:GetObjectVersion") and method == "GET":
        obj = _object(bucket, key, query.get("versionId"))
        if obj is not None and obj.encryption == "aws:kms":
            kms_action, key_id = "kms:Decrypt", obj.kms_key_id
            bucket_key = str(obj.bucket_key_enabled).lower() == "true"
    if kms_action is None:
        return []
    if not key_id:
        key_id = "alias/aws/s3"
    found = _kms_key(caller.account_id, region, key_id)
    context = {
        "kms:ViaService": f"s3.{region}.amazonaws.com",
        "kms:CallerAccount": caller.account_id,
        "kms:EncryptionContext:aws:s3:arn": bucket_arn if bucket_key else f"{bucket_arn}/{key}",
    }
    if found is None:
        arn = key_id if key_id.startswith("arn:") else f"arn:{partition}:kms:{region}:{caller.account_id}:key/{key_id}"
        return [Check(kms_action, arn, context)]
    arn, key_policy, account = found
    return [Check(kms_action, arn, context, key_policy, account)]


def _object(bucket, key, version_id):
    try:
        if version_id:
            for k in bucket.keys.getlist(key):
                if str(k.version_id) == version_id:
                    return k
            return None
        return bucket.keys.get(key)
    except Exception:
        return None


def _delete_objects_checks(iam_request, bucket_arn, bucket_policy, bucket_account, context):
    """DeleteObjects is authorized object by object (s3:DeleteObject, or
    s3:DeleteObjectVersion for a named version)."""
    checks = []
    try:
        root = ET.fromstring(iam_request._body or b"")
    except ET.ParseError:
        return None
    for obj in root.iter():
        if not obj.tag.endswith("Object"):
            continue
        key = version = None
        for child in obj:
            if child.tag.endswith("Key"):
                key = child.text
            elif child.tag.endswith("VersionId"):
                version = child.text
        if key is None:
            continue
        action = "s3:DeleteObjectVersion" if version else "s3:DeleteObject"
        checks.append(Check(action, f"{bucket_arn}/{key}", dict(context), bucket_policy, bucket_account))
    return checks


# --- the entry point -------------------------------------------------------------------------


def protocol_of(iam_request):
    service = iam_request._service
    if service == "s3":
        return "s3"
    if service == "kms":
        return "json"
    if service == "eks":
        return "rest-json"
    return "query"


def authorize(iam_request, moto_resource):
    """Replaces moto's IAMRequestBase.check_action_permitted: raise the service's AccessDenied
    unless the simulator allows every check the request needs."""
    from moto.utilities.utils import get_partition

    partition = get_partition(iam_request._region)
    caller = caller_of(iam_request)
    service = iam_request._service
    if service == "s3":
        checks = s3_checks(iam_request, caller, partition, moto_resource)
    elif service == "iam":
        checks = iam_checks(iam_request, caller, partition)
    elif service == "sts":
        checks = sts_checks(iam_request, caller, partition)
    elif service == "kms":
        checks = kms_checks(iam_request, caller, partition)
    elif service == "eks":
        checks = eks_checks(iam_request, caller, partition)
    else:
        checks = None
    if checks is None:
        checks = [Check(iam_request._action, moto_resource or "*", derived_by="moto")]
    for check in checks:
        try:
            decision = simulate(caller, check)
        except SimulatorError as error:
            # A request the test bed cannot decide is a test-bed bug: say so in the answer.
            raise ServiceError(500, _internal_failure(protocol_of(iam_request), str(error)), "text/plain")
        if not decision.allowed:
            policy_type = decision.policy_type
            if decision.result == "ExplicitlyDenied":
                policy_type = f"explicit {policy_type}"
            message = access_denied_message(caller.arn, check.action, check.resource, policy_type)
            if service == "s3" and check.action.startswith("s3:DeleteObject") and iam_request._method == "POST":
                # DeleteObjects: moto then answers each key with AccessDenied, as S3 does.
                from moto.s3.exceptions import BucketAccessDeniedError

                raise BucketAccessDeniedError(bucket=check.resource.split(":::", 1)[1].split("/", 1)[0])
            raise denial(protocol_of(iam_request), message)
