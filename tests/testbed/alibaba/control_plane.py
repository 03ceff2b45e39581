"""FAKE: Alibaba Cloud's control plane for the test bed: RAM (2015-05-01), IMS's OIDC providers
(2019-08-15), STS (2015-04-01) and ACK / Container Service's DescribeClusterDetail (2015-12-15).

This is a hand-written fake, not an emulator: no emulator of RAM, STS or ACK exists. It answers
exactly the calls bucketwire's operator makes (and the few the test bed seeds with), in the wire
format of Alibaba's official Python SDKs (alibabacloud-ram20150501 1.3.0, -ims20190815 3.5.0,
-sts20150401 1.2.0, -cs20151215 7.2.3 on alibabacloud-tea-openapi 0.4.6: their models are the
authority for field names), pinned by tests/testbed/alibaba_fake_wire.py (run by
tests/alibaba_fake.rs). README.md beside this file has the operation list.

What the fake checks, as Alibaba does:
- Authentication: the V3 signature (ACS3-HMAC-SHA256, x-acs-security-token for STS
  credentials) or the RPC V2 signature (HMAC-SHA1) of every call but AssumeRoleWithOIDC, against
  the access keys it knows (acs_sig.py): SignatureDoesNotMatch, IncompleteSignature,
  InvalidTimeStamp.Expired, SignatureNonceUsed (400), InvalidAccessKeyId.NotFound (404),
  InvalidSecurityToken.Expired / .MismatchWithAccessKey / .Malformed (400) for STS keys.
- Authorization of every signed call by ram_policy.py: the account's root key may do anything in
  its account; a RAM user or an assumed role needs an Allow from its attached policies and no
  Deny, for the RAM action and resource of the operation (OPERATIONS below), with the context
  acs:SourceIp, acs:SecureTransport (false on the insecure port, as moto_launcher.py does for
  AWS), acs:PrincipalARN and, for AssumeRole, sts:ExternalId and sts:RoleSessionName. Refusals
  are NoPermission 403 ("You are not authorized to do this action. Resource: <arn> Action:
  <action>") with an AccessDeniedDetail; ACK's are Forbidden.RAM 403 (UNVERIFIED code).
- RAM's rules: name formats and lengths (InvalidParameter.<Name>.InvalidChars / .Length),
  policy documents (MalformedPolicyDocument, InvalidParameter.PolicyDocument.Length > 6144),
  EntityAlreadyExists.*, EntityNotExist.*, 5 versions per policy (LimitExceeded.Policy.Version,
  or RotateStrategy DeleteOldestNonDefaultVersionWhenLimitExceeded), DeleteConflict.Policy.Version
  (non-default versions left), DeleteConflict.Policy.Version.Default, DeleteConflict.Policy.User /
  .Role (attached; .Role UNVERIFIED), DeleteConflict.Role.Policy, EntityAlreadyExists.Role.Policy
  (attached twice), EntityNotExist.Role.Policy; role ARNs use the lowercased name as RAM does;
  documents come back as JSON strings; tags (20 per resource, keys not starting acs: / aliyun).
- STS: AssumeRole checks the caller's own policies (sts:AssumeRole on the role ARN), then the
  role's trust policy for Principal {"RAM": [acs:ram::<caller account>:root, the caller's own
  ARN]} with sts:ExternalId; AssumeRoleWithOIDC (anonymous) verifies the token as
  tests/testbed/web_identity.py does for AWS (the same key fetching from the apiserver's OIDC
  discovery): the provider exists in the role's account, iss equals its IssuerUrl, signature,
  expiry, IssuanceLimitTime, aud among its ClientIds; then the trust policy for Principal
  {"Federated": [provider ARN]} with oidc:iss, oidc:aud, oidc:sub. Codes
  AuthenticationFail.OIDCToken.{Invalid,Expired,IssuerNotMatch,AudienceNotMatch,
  IssuerConfigurationBroken}, AuthenticationFail.NoPermission, EntityNotExist.Role. Issued keys
  (STS.<...>, secret, SecurityToken, Expiration) act as the role: its attached policies now.
- ACK: DescribeClusterDetail of the clusters the fake was started with (ErrorClusterNotFound 404
  for others), RRSA both in `rrsa_config` and in the `meta_data` JSON string's RRSAConfig.

What it does not model: other API operations (InvalidAction.NotFound 404), XML answers
(Format=XML), session policies (the Policy parameter is refused), SourceIdentity, role
chaining limits, MFA, groups, resource groups, throttling, eventual consistency (every write is
visible at once), RAM's service-linked roles, the OIDC provider's Fingerprints (accepted and
returned, never checked: the test bed's issuer is served by the apiserver), policy variables.
HTTP statuses of AuthenticationFail.* (400/403 here) are UNVERIFIED.

Routing: one endpoint for all four services, by the `x-acs-version` header (or the `Version`
parameter of an RPC V2 call): 2015-05-01 RAM, 2019-08-15 IMS, 2015-04-01 STS, 2015-12-15 ACK;
the operation is `x-acs-action` (or `Action`), and ACK's also its path (GET /clusters/{id}).
The SDKs send both headers on every call; point each client's `endpoint` at the fake.

Request log: every request is appended to $ALIBABA_FAKE_REQUEST_LOG (the test bed's
target/testbed/alibaba-requests.jsonl) as one JSON line, the shape of moto_launcher.py's:
service, action, method, path, target (the entity named), accessKey, caller, account, host,
status, error, decisions [{action, resource, principal, result, derivedBy}].

Run: control_plane.py --config FILE -H HOST -p PORT [--insecure-port PORT]. FILE holds the
accounts (id, name, root access key) and ACK clusters; see testbed.py / seed.py.
"""

import argparse
import datetime
import json
import os
import re
import secrets
import string
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))  # tests/testbed: web_identity

import acs_sig  # noqa: E402
import ram_policy  # noqa: E402

RAM, IMS, STS, CS = "2015-05-01", "2019-08-15", "2015-04-01", "2015-12-15"
SERVICES = {RAM: "ram", IMS: "ims", STS: "sts", CS: "cs"}
HOSTS = {"ram": "ram.aliyuncs.com", "ims": "ims.aliyuncs.com", "sts": "sts.aliyuncs.com", "cs": "cs.aliyuncs.com"}
STS_AUDIENCE = "sts.aliyuncs.com"
MAX_POLICY_VERSIONS = 5
MAX_POLICY_DOCUMENT = 6144
MAX_TAGS = 20

# System policies every account has (PolicyType System), the few the test bed uses.
SYSTEM_POLICIES = {
    "AdministratorAccess": {"Version": "1", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
    "AliyunRAMFullAccess": {"Version": "1", "Statement": [{"Effect": "Allow", "Action": "ram:*", "Resource": "*"}]},
    "AliyunRAMReadOnlyAccess": {"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": ["ram:Get*", "ram:List*"], "Resource": "*"}]},
    "AliyunSTSAssumeRoleAccess": {"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]},
    "AliyunCSReadOnlyAccess": {"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": ["cs:Get*", "cs:Describe*", "cs:List*"], "Resource": "*"}]},
}


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def stamp(when):
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def request_id():
    return str(uuid.uuid4()).upper()


def random_text(n, alphabet=string.ascii_letters + string.digits):
    return "".join(secrets.choice(alphabet) for _ in range(n))


def numeric_id(n=16):
    return str(secrets.randbelow(9) + 1) + "".join(secrets.choice(string.digits) for _ in range(n - 1))


class Fault(Exception):
    """An error answer: HTTP status, Code, Message and extra fields of the body."""

    def __init__(self, status, code, message, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def invalid(parameter, issue, message):
    return Fault(400, f"InvalidParameter.{parameter}.{issue}", message)


def missing(parameter):
    return Fault(400, f"MissingParameter.{parameter}" if parameter else "MissingParameter",
                 f"The input parameter \"{parameter}\" that is mandatory for processing this request is not supplied.")


# --- state --------------------------------------------------------------------------------


@dataclass
class PolicyVersion:
    version_id: str
    document: str
    created: datetime.datetime


@dataclass
class Policy:
    name: str
    description: str
    versions: list
    default: str
    created: datetime.datetime
    updated: datetime.datetime
    next_version: int = 2
    attachments: dict = field(default_factory=dict)  # ("role"|"user", name) -> attach date


@dataclass
class Role:
    name: str
    role_id: str
    trust: str
    description: str
    max_session_duration: int
    created: datetime.datetime
    updated: datetime.datetime
    policies: dict = field(default_factory=dict)  # (PolicyType, name) -> attach date


@dataclass
class User:
    name: str
    user_id: str
    display_name: str
    comments: str
    created: datetime.datetime
    keys: dict = field(default_factory=dict)  # AccessKeyId -> (secret, created)
    policies: dict = field(default_factory=dict)  # (PolicyType, name) -> attach date


@dataclass
class OIDCProvider:
    name: str
    issuer_url: str
    client_ids: list
    fingerprints: list
    description: str
    issuance_limit_time: int
    created: datetime.datetime
    updated: datetime.datetime


@dataclass
class Cluster:
    cluster_id: str
    name: str
    region: str
    issuer: str
    oidc_name: str
    created: datetime.datetime


@dataclass
class Session:
    access_key_id: str
    secret: str
    token: str
    account_id: str
    role_key: str  # the role's lowercased name in its account
    role_name: str
    role_id: str
    session_name: str
    expiration: datetime.datetime


class Account:
    def __init__(self, account_id, name, root_key_id, root_key_secret):
        self.id = account_id
        self.name = name
        self.root_keys = {root_key_id: root_key_secret}
        self.users = {}  # name -> User
        self.roles = {}  # lowercased name -> Role
        self.policies = {}  # name -> Policy (Custom)
        self.providers = {}  # name -> OIDCProvider
        self.clusters = {}  # id -> Cluster
        self.tags = {}  # ("role"|"policy"|"user", name) -> {key: value}

    def role_arn(self, role):
        return f"acs:ram::{self.id}:role/{role.name.lower()}"

    def provider_arn(self, name):
        return f"acs:ram::{self.id}:oidc-provider/{name}"


# --- callers ------------------------------------------------------------------------------


@dataclass
class Caller:
    """Who signed a request. Also the OSS fake's Caller (tests/testbed/alibaba/oss.py's contract)."""

    kind: str  # "root" | "user" | "role"
    account: Account
    name: str  # user name, role name, or the account name
    access_key_secret: str
    session: Session = None
    fake: "AlibabaFake" = None

    @property
    def account_id(self):
        return self.account.id

    @property
    def arn(self):
        if self.kind == "root":
            return f"acs:ram::{self.account.id}:root"
        if self.kind == "user":
            return f"acs:ram::{self.account.id}:user/{self.name}"
        return f"acs:ram::{self.account.id}:assumed-role/{self.name.lower()}/{self.session.session_name}"

    @property
    def principal_arn(self):
        """acs:PrincipalARN, and what a trust policy's RAM principal may name for this caller."""
        if self.kind == "role":
            return f"acs:ram::{self.account.id}:role/{self.name.lower()}"
        return self.arn

    @property
    def principal_type(self):
        return {"root": "Account", "user": "SubUser", "role": "AssumedRoleUser"}[self.kind]

    @property
    def principal_ids(self):
        """What an OSS bucket policy's Principal may name for this caller."""
        if self.kind == "root":
            return [self.account.id]
        if self.kind == "user":
            return [self.account.users[self.name].user_id] if self.name in self.account.users else []
        return [f"arn:sts::{self.account.id}:assumed-role/{self.name.lower()}/{self.session.session_name}"]

    def policy_documents(self):
        """[(policy name, document)] of the identity's attached policies, as they are now."""
        if self.kind == "user":
            entity = self.account.users.get(self.name)
        else:
            entity = self.account.roles.get(self.name.lower())
        if entity is None:
            return []
        documents = []
        for (policy_type, name) in entity.policies:
            if policy_type == "System":
                documents.append((name, SYSTEM_POLICIES[name]))
            elif name in self.account.policies:
                policy = self.account.policies[name]
                documents.append((name, next(v.document for v in policy.versions if v.version_id == policy.default)))
        return documents

    def allows(self, action, resource, context):
        """"Allow" | "Deny" | "ImplicitDeny": the identity side of a decision. The root of an
        account may do anything on its own account's resources; on another account's (e.g.
        sts:AssumeRole of its role, decided then by the trust policy) too."""
        if self.kind == "root":
            return ram_policy.ALLOW
        result, _ = ram_policy.decide(self.policy_documents(), action, resource, context)
        return result


class AlibabaFake:
    """The WSGI application. `config`: {"accounts": [{"id", "name", "accessKeyId",
    "accessKeySecret"}], "clusters": [{"id", "account", "name", "region", "issuer", "oidcName"}]}."""

    def __init__(self, config, insecure_ports=(), request_log=None, keys=None):
        self.lock = threading.RLock()
        self.accounts = {}
        for a in config["accounts"]:
            self.accounts[a["id"]] = Account(a["id"], a.get("name", a["id"]), a["accessKeyId"], a["accessKeySecret"])
        for c in config.get("clusters", []):
            self.accounts[c["account"]].clusters[c["id"]] = Cluster(
                c["id"], c.get("name", c["id"]), c["region"], c["issuer"], c.get("oidcName", f"ack-rrsa-{c['id']}"), now())
        self.sessions = {}  # STS AccessKeyId -> Session
        self.insecure_ports = {str(p) for p in insecure_ports}
        self.log = open(request_log, "a", buffering=1) if request_log else None
        self.log_lock = threading.Lock()
        self._keys = keys

    @property
    def keys(self):
        if self._keys is None:
            import web_identity

            self._keys = web_identity.KEYS
        return self._keys

    # --- the credentials a request is signed with ------------------------------------------

    def caller_of(self, access_key_id, security_token):
        """The Caller of an access key, None if unknown; raises Fault for a bad STS token."""
        with self.lock:
            for account in self.accounts.values():
                if access_key_id in account.root_keys:
                    return Caller("root", account, account.name, account.root_keys[access_key_id], fake=self)
                for user in account.users.values():
                    if access_key_id in user.keys:
                        return Caller("user", account, user.name, user.keys[access_key_id][0], fake=self)
            session = self.sessions.get(access_key_id)
            if session is None:
                return None
            if not security_token:
                raise Fault(400, "MissingSecurityToken", "SecurityToken is mandatory for this action.")
            if security_token != session.token:
                if security_token.startswith("CAIS") and len(security_token) > 100:
                    raise Fault(400, "InvalidSecurityToken.MismatchWithAccessKey", "Specified SecurityToken mismatch with the AccessKey.")
                raise Fault(400, "InvalidSecurityToken.Malformed", "Specified SecurityToken is malformed.")
            if now() >= session.expiration:
                raise Fault(400, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired.")
            return Caller("role", self.accounts[session.account_id], session.role_name, session.secret, session, fake=self)

    # --- WSGI -------------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        if environ.get("CONTENT_LENGTH"):
            headers["content-length"] = environ["CONTENT_LENGTH"]
        request = Request(environ, headers, body, secure=str(environ.get("SERVER_PORT")) not in self.insecure_ports)
        if request.path == "/-/fake/ready":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ready\n"]
        try:
            answer = self.handle(request)
            status, payload = 200, answer
        except Fault as fault:
            status = fault.status
            if request.service == "cs":
                payload = {"code": fault.code, "message": fault.message, "requestId": request.id, "status": fault.status}
            else:
                payload = {"RequestId": request.id, "HostId": HOSTS.get(request.service, "ram.aliyuncs.com"),
                           "Code": fault.code, "Message": fault.message,
                           "Recommend": f"https://api.aliyun.com/troubleshoot?q={fault.code}&product={request.service}"}
            payload.update(fault.extra)
            request.log["error"] = fault.code
        if request.service != "cs" and isinstance(payload, dict):
            payload.setdefault("RequestId", request.id)
        data = json.dumps(payload).encode()
        request.log["status"] = status
        reasons = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 409: "Conflict"}
        start_response(f"{status} {reasons.get(status, 'Error')}", [
            ("Content-Type", "application/json;charset=utf-8"), ("Content-Length", str(len(data))),
            ("x-acs-request-id", request.id)])
        if self.log is not None:
            with self.log_lock:
                self.log.write(json.dumps(request.log) + "\n")
        return [data]

    def handle(self, request):
        version = request.headers.get("x-acs-version") or request.params.get("Version", "")
        action = request.headers.get("x-acs-action") or request.params.get("Action", "")
        request.service = SERVICES.get(version, "")
        request.action = action
        request.log.update({"service": request.service, "action": action})
        operation = OPERATIONS.get((request.service, action))
        if operation is None or (request.service == "cs" and not CLUSTER_PATH.match(request.path)):
            raise Fault(404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method.")
        if not operation.anonymous:
            request.caller = self.authenticate(request)
            request.log["caller"] = request.caller.arn
            request.log["account"] = request.caller.account_id
        with self.lock:
            return operation.handler(self, request)

    def authenticate(self, request):
        def secret_of(access_key_id):
            request.log["accessKey"] = access_key_id
            caller = self.caller_of(access_key_id, request.headers.get("x-acs-security-token") or request.params.get("SecurityToken"))
            if caller is None:
                raise Fault(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
            request.signer = caller
            return caller.access_key_secret

        try:
            if request.headers.get("authorization"):
                acs_sig.verify_v3(request.method, request.raw_path, request.query_string, request.headers, request.body, secret_of)
            elif request.params.get("Signature"):
                acs_sig.verify_v2(request.method, request.params, secret_of)
            else:
                raise Fault(400, "MissingAccessKeyId" if "AccessKeyId" not in request.params else "IncompleteSignature",
                            "AccessKeyId is mandatory for this action.")
        except acs_sig.SignatureError as error:
            raise Fault(error.status, error.code, error.message) from None
        return request.signer

    # --- authorization ----------------------------------------------------------------------

    def require(self, request, action, resource, extra_context=None):
        caller = request.caller
        context = {
            "acs:SourceIp": request.environ.get("REMOTE_ADDR", ""),
            "acs:SecureTransport": "true" if request.secure else "false",
            "acs:PrincipalARN": caller.principal_arn,
            **(extra_context or {}),
        }
        try:
            result = caller.allows(action, resource, context)
        except ram_policy.PolicyError:
            result = ram_policy.IMPLICIT_DENY
        request.decide(action, resource, caller.arn, result, "ram_policy.py: the caller's identity policies"
                       if caller.kind != "root" else "the account's root")
        if result == ram_policy.ALLOW:
            return
        detail = {
            "AuthAction": action,
            "AuthPrincipalDisplayName": caller.name if caller.kind != "role" else f"{caller.name}:{caller.session.session_name}",
            "AuthPrincipalOwnerId": caller.account_id,
            "AuthPrincipalType": caller.principal_type,
            "NoPermissionType": "ExplicitDeny" if result == ram_policy.DENY else "ImplicitDeny",
            "PolicyType": "AccountLevelIdentityBasedPolicy",
            "EncodedDiagnosticMessage": random_text(40),
        }
        message = f"You are not authorized to do this action. Resource: {resource} Action: {action}"
        if request.service == "cs":
            raise Fault(403, "Forbidden.RAM", message, accessDeniedDetail=detail)
        raise Fault(403, "NoPermission", message, AccessDeniedDetail=detail)


CLUSTER_PATH = re.compile(r"^/clusters/([^/]+)/?$")


class Request:
    def __init__(self, environ, headers, body, secure):
        self.environ = environ
        self.headers = headers
        self.body = body
        self.secure = secure
        self.method = environ["REQUEST_METHOD"]
        self.raw_path = environ.get("RAW_URI", environ.get("REQUEST_URI", "")).split("?", 1)[0] or environ.get("PATH_INFO", "/")
        self.path = environ.get("PATH_INFO", "/")
        self.query_string = environ.get("QUERY_STRING", "")
        self.params = dict(parse_qsl(self.query_string, keep_blank_values=True))
        if headers.get("content-type", "").startswith("application/x-www-form-urlencoded") and body:
            self.params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        self.id = request_id()
        self.service = ""
        self.action = ""
        self.caller = None
        self.signer = None
        target = next((self.params[k] for k in ("RoleName", "PolicyName", "UserName", "OIDCProviderName", "RoleArn")
                       if self.params.get(k)), "")
        self.log = {"service": "", "action": "", "method": self.method, "path": self.path, "target": target,
                    "accessKey": "", "caller": "", "account": "", "host": headers.get("host", ""),
                    "status": 0, "error": "", "decisions": []}

    def decide(self, action, resource, principal, result, derived_by):
        self.log["decisions"].append({"action": action, "resource": resource, "principal": principal,
                                      "result": result, "derivedBy": derived_by})

    def get(self, name, required=False):
        value = self.params.get(name)
        if required and not value:
            raise missing(name)
        return value


# --- validation ---------------------------------------------------------------------------

NAME_RULES = {
    # parameter: (regex of allowed characters, max length, min length)
    "RoleName": (r"[A-Za-z0-9.\-]+", 64, 1),
    "PolicyName": (r"[A-Za-z0-9\-]+", 128, 1),
    "UserName": (r"[A-Za-z0-9._\-]+", 64, 1),
    "OIDCProviderName": (r"[A-Za-z0-9.\-]+", 128, 1),
    "RoleSessionName": (r"[A-Za-z0-9.@_\-]+", 64, 2),
}


def checked_name(request, parameter, value=None):
    value = request.get(parameter, required=True) if value is None else value
    pattern, longest, shortest = NAME_RULES[parameter]
    if not shortest <= len(value) <= longest:
        raise invalid(parameter, "Length", f"The parameter - \"{parameter}\" beyond the length limit.")
    if not re.fullmatch(pattern, value):
        raise invalid(parameter, "InvalidChars", f"The parameter - \"{parameter}\" contains invalid chars.")
    return value


def checked_document(text, trust=False):
    if not text:
        raise missing("AssumeRolePolicyDocument" if trust else "PolicyDocument")
    if len(text.encode()) > MAX_POLICY_DOCUMENT:
        raise invalid("PolicyDocument", "Length", "The parameter - \"PolicyDocument\" beyond the length limit.")
    try:
        ram_policy.parse(text, trust=trust)
    except ram_policy.PolicyError as error:
        raise Fault(400, "MalformedPolicyDocument", f"The policy document is malformed: {error}") from None
    return text


def checked_description(request, name="Description"):
    value = request.get(name) or ""
    if len(value) > 1024:
        raise invalid(name, "Length", f"The parameter - \"{name}\" beyond the length limit.")
    return value


def json_list(request, name):
    text = request.get(name)
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        raise Fault(400, f"InvalidParameter.{name}", f"The parameter - \"{name}\" is not a JSON array.") from None
    if not isinstance(value, list):
        raise Fault(400, f"InvalidParameter.{name}", f"The parameter - \"{name}\" is not a JSON array.")
    return value


def policy_type(request):
    value = request.get("PolicyType") or "Custom"
    if value not in ("System", "Custom"):
        raise Fault(400, "InvalidParameter.PolicyType", "The parameter - \"PolicyType\" is incorrect.")
    return value


# --- RAM: resources -----------------------------------------------------------------------


def ram_arn(account, kind, name):
    """The resource a RAM operation is authorized on; a role's name lowercased, as in its ARN."""
    return f"acs:ram:*:{account.id}:{kind}/{name.lower() if kind == 'role' else name}"


def find_policy(account, name, kind="Custom"):
    if kind == "System":
        if name not in SYSTEM_POLICIES:
            raise Fault(404, "EntityNotExist.Policy", f"The policy not exists: {name}.")
        return None
    policy = account.policies.get(name)
    if policy is None:
        raise Fault(404, "EntityNotExist.Policy", f"The policy not exists: {name}.")
    return policy


def find_role(account, name):
    role = account.roles.get(name.lower())
    if role is None:
        raise Fault(404, "EntityNotExist.Role", f"The role not exists: {name}.")
    return role


def find_user(account, name):
    user = account.users.get(name)
    if user is None:
        raise Fault(404, "EntityNotExist.User", f"The user not exists: {name}.")
    return user


def policy_fields(policy, attachments=True):
    default = next(v for v in policy.versions if v.version_id == policy.default)
    out = {"PolicyName": policy.name, "PolicyType": "Custom", "Description": policy.description,
           "DefaultVersion": policy.default, "CreateDate": stamp(policy.created), "UpdateDate": stamp(policy.updated)}
    if attachments:
        out["AttachmentCount"] = len(policy.attachments)
        out["PolicyDocument"] = default.document
    return out


def version_fields(policy, version):
    return {"VersionId": version.version_id, "IsDefaultVersion": version.version_id == policy.default,
            "PolicyDocument": version.document, "CreateDate": stamp(version.created)}


def role_fields(account, role, update_date=True):
    out = {"RoleId": role.role_id, "RoleName": role.name, "Arn": account.role_arn(role), "Description": role.description,
           "AssumeRolePolicyDocument": role.trust, "CreateDate": stamp(role.created),
           "MaxSessionDuration": role.max_session_duration}
    if update_date:
        out["UpdateDate"] = stamp(role.updated)
    return out


# --- RAM: policies ------------------------------------------------------------------------


def create_policy(fake, request):
    account = request.caller.account
    name = checked_name(request, "PolicyName")
    fake.require(request, "ram:CreatePolicy", ram_arn(account, "policy", name))
    description = checked_description(request)
    document = checked_document(request.get("PolicyDocument"))
    if name in account.policies or name in SYSTEM_POLICIES:
        raise Fault(409, "EntityAlreadyExists.Policy", f"The policy already exists: {name}.")
    tags = request_tags(request)
    when = now()
    account.policies[name] = Policy(name, description, [PolicyVersion("v1", document, when)], "v1", when, when)
    if tags:
        account.tags[("policy", name)] = tags
    fields = policy_fields(account.policies[name], attachments=False)
    fields.pop("UpdateDate")
    return {"Policy": fields}


def get_policy(fake, request):
    account = request.caller.account
    name = request.get("PolicyName", required=True)
    kind = policy_type(request)
    resource = f"acs:ram:*:system:policy/{name}" if kind == "System" else ram_arn(account, "policy", name)
    fake.require(request, "ram:GetPolicy", resource)
    policy = find_policy(account, name, kind)
    if policy is None:
        document = json.dumps(SYSTEM_POLICIES[name])
        return {"Policy": {"PolicyName": name, "PolicyType": "System", "Description": "", "DefaultVersion": "v1",
                           "PolicyDocument": document, "AttachmentCount": 0},
                "DefaultPolicyVersion": {"VersionId": "v1", "IsDefaultVersion": True, "PolicyDocument": document}}
    default = next(v for v in policy.versions if v.version_id == policy.default)
    return {"Policy": policy_fields(policy), "DefaultPolicyVersion": version_fields(policy, default)}


def get_policy_version(fake, request):
    account = request.caller.account
    name = request.get("PolicyName", required=True)
    version_id = request.get("VersionId", required=True)
    kind = policy_type(request)
    fake.require(request, "ram:GetPolicyVersion", ram_arn(account, "policy", name))
    policy = find_policy(account, name, kind)
    version = next((v for v in policy.versions if v.version_id == version_id), None) if policy else None
    if version is None:
        raise Fault(404, "EntityNotExist.Policy.Version", f"The policy version not exists: {name} {version_id}.")
    return {"PolicyVersion": version_fields(policy, version)}


def create_policy_version(fake, request):
    account = request.caller.account
    name = request.get("PolicyName", required=True)
    fake.require(request, "ram:CreatePolicyVersion", ram_arn(account, "policy", name))
    policy = find_policy(account, name)
    document = checked_document(request.get("PolicyDocument"))
    rotate = request.get("RotateStrategy") or "None"
    if rotate not in ("None", "DeleteOldestNonDefaultVersionWhenLimitExceeded"):
        raise Fault(400, "InvalidParameter.RotateStrategy", "The parameter - \"RotateStrategy\" is incorrect.")
    set_default = (request.get("SetAsDefault") or "false").lower() == "true"
    if len(policy.versions) >= MAX_POLICY_VERSIONS:
        if rotate == "None":
            raise Fault(409, "LimitExceeded.Policy.Version", "The count of policy version beyond the current limits.")
        oldest = next(v for v in policy.versions if v.version_id != policy.default)
        policy.versions.remove(oldest)
    when = now()
    version = PolicyVersion(f"v{policy.next_version}", document, when)
    policy.next_version += 1
    policy.versions.append(version)
    if set_default:
        policy.default = version.version_id
    policy.updated = when
    return {"PolicyVersion": version_fields(policy, version)}


def list_policy_versions(fake, request):
    account = request.caller.account
    name = request.get("PolicyName", required=True)
    kind = policy_type(request)
    fake.require(request, "ram:ListPolicyVersions", ram_arn(account, "policy", name))
    policy = find_policy(account, name, kind)
    if policy is None:
        document = json.dumps(SYSTEM_POLICIES[name])
        return {"PolicyVersions": {"PolicyVersion": [{"VersionId": "v1", "IsDefaultVersion": True, "PolicyDocument": document}]}}
    return {"PolicyVersions": {"PolicyVersion": [version_fields(policy, v) for v in policy.versions]}}


def delete_policy_version(fake, request):
    account = request.caller.account
    name = request.get("PolicyName", required=True)
    version_id = request.get("VersionId", required=True)
    if not re.fullmatch(r"v[1-9][0-9]*", version_id):
        raise invalid("VersionId", "Format", "The format of the parameter - \"VersionId\" is incorrect.")
    fake.require(request, "ram:DeletePolicyVersion", ram_arn(account, "policy", name))
    policy = find_policy(account, name)
    version = next((v for v in policy.versions if v.version_id == version_id), None)
    if version is None:
        raise Fault(404, "EntityNotExist.Policy.Version", f"The policy version not exists: {name} {version_id}.")
    if version_id == policy.default:
        raise Fault(409, "DeleteConflict.Policy.Version.Default", "The default policy version CAN NOT been deleted directly.")
    policy.versions.remove(version)
    return {}


def delete_policy(fake, request):
    account = request.caller.account
    name = checked_name(request, "PolicyName")
    fake.require(request, "ram:DeletePolicy", ram_arn(account, "policy", name))
    policy = find_policy(account, name)
    cascade = (request.get("CascadingDelete") or "false").lower() == "true"
    if not cascade:
        for kind, _ in policy.attachments:
            code = {"user": "DeleteConflict.Policy.User", "role": "DeleteConflict.Policy.Role"}[kind]
            raise Fault(409, code, f"The policy CAN NOT been attached to any {kind} while deleting the policy.")
        if len(policy.versions) > 1:
            raise Fault(409, "DeleteConflict.Policy.Version", "The policy CAN NOT has any version except the default version.")
    for kind, entity_name in list(policy.attachments):
        entity = (account.roles if kind == "role" else account.users).get(entity_name)
        if entity is not None:
            entity.policies.pop(("Custom", name), None)
    del account.policies[name]
    account.tags.pop(("policy", name), None)
    return {}


# --- RAM: roles ---------------------------------------------------------------------------


def max_session_duration(request, name):
    text = request.get(name)
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 3600 <= value <= 43200:
        raise invalid(name, "Range", f"The parameter - \"{name}\" MUST be in the range of 3600 and 43200.")
    return value


def create_role(fake, request):
    account = request.caller.account
    name = checked_name(request, "RoleName")
    fake.require(request, "ram:CreateRole", ram_arn(account, "role", name))
    trust = checked_document(request.get("AssumeRolePolicyDocument"), trust=True)
    description = checked_description(request)
    duration = max_session_duration(request, "MaxSessionDuration") or 3600
    if name.lower() in account.roles:
        raise Fault(409, "EntityAlreadyExists.Role", f"The role already exists: {name}.")
    tags = request_tags(request)
    when = now()
    role = Role(name, numeric_id(19), trust, description, duration, when, when)
    account.roles[name.lower()] = role
    if tags:
        account.tags[("role", role.name)] = tags
    return {"Role": role_fields(account, role, update_date=False)}


def get_role(fake, request):
    account = request.caller.account
    name = request.get("RoleName", required=True)
    fake.require(request, "ram:GetRole", ram_arn(account, "role", name))
    return {"Role": role_fields(account, find_role(account, name))}


def page(request, items):
    """RAM's pagination: MaxItems (1-1000, default 100) and the Marker of the previous page."""
    try:
        size = int(request.get("MaxItems") or 100)
    except ValueError:
        size = -1
    if not 1 <= size <= 1000:
        raise invalid("MaxItems", "Range", "The parameter - \"MaxItems\" MUST be in the range of 1 and 1000.")
    start = int(request.get("Marker") or 0) if (request.get("Marker") or "0").isdigit() else 0
    chunk = items[start:start + size]
    more = start + size < len(items)
    return chunk, ({"IsTruncated": True, "Marker": str(start + size)} if more else {"IsTruncated": False})


def list_roles(fake, request):
    """ListRoles: every role of the account, by name (tests list them to find leftovers)."""
    account = request.caller.account
    fake.require(request, "ram:ListRoles", ram_arn(account, "role", "*"))
    roles = [account.roles[k] for k in sorted(account.roles)]
    chunk, more = page(request, roles)
    return {"Roles": {"Role": [role_fields(account, r) for r in chunk]}, **more}


def list_policies(fake, request):
    """ListPolicies with PolicyType Custom (System policies are not modelled in lists)."""
    account = request.caller.account
    fake.require(request, "ram:ListPolicies", ram_arn(account, "policy", "*"))
    if request.get("PolicyType") not in (None, "", "Custom"):
        return {"Policies": {"Policy": []}, "IsTruncated": False}
    policies = [account.policies[k] for k in sorted(account.policies)]
    chunk, more = page(request, policies)
    return {"Policies": {"Policy": [policy_fields(p, attachments=False) for p in chunk]}, **more}


def update_role(fake, request):
    account = request.caller.account
    name = request.get("RoleName", required=True)
    fake.require(request, "ram:UpdateRole", ram_arn(account, "role", name))
    role = find_role(account, name)
    trust = request.get("NewAssumeRolePolicyDocument")
    if trust:
        role.trust = checked_document(trust, trust=True)
    if request.get("NewDescription") is not None:
        role.description = checked_description(request, "NewDescription")
    duration = max_session_duration(request, "NewMaxSessionDuration")
    if duration:
        role.max_session_duration = duration
    role.updated = now()
    return {"Role": role_fields(account, role)}


def delete_role(fake, request):
    account = request.caller.account
    name = request.get("RoleName", required=True)
    fake.require(request, "ram:DeleteRole", ram_arn(account, "role", name))
    role = find_role(account, name)
    if role.policies:
        raise Fault(409, "DeleteConflict.Role.Policy", "The role CAN NOT has any attached policy while deleting the role.")
    del account.roles[name.lower()]
    account.tags.pop(("role", role.name), None)
    return {}


def _attach(fake, request, kind, verb):
    account = request.caller.account
    entity_param = "RoleName" if kind == "role" else "UserName"
    entity_name = request.get(entity_param, required=True)
    name = request.get("PolicyName", required=True)
    ptype = policy_type(request)
    action = f"ram:{verb}PolicyTo{kind.capitalize()}" if verb == "Attach" else f"ram:DetachPolicyFrom{kind.capitalize()}"
    fake.require(request, action, ram_arn(account, kind, entity_name))
    fake.require(request, action, f"acs:ram:*:system:policy/{name}" if ptype == "System" else ram_arn(account, "policy", name))
    entity = find_role(account, entity_name) if kind == "role" else find_user(account, entity_name)
    policy = find_policy(account, name, ptype)
    key = (ptype, name)
    label = "Role" if kind == "role" else "User"
    if verb == "Attach":
        if key in entity.policies:
            raise Fault(409, f"EntityAlreadyExists.{label}.Policy", f"The policy has already been attached to the {kind}.")
        entity.policies[key] = now()
        if policy is not None:
            policy.attachments[(kind, entity.name.lower() if kind == "role" else entity.name)] = entity.policies[key]
    else:
        if key not in entity.policies:
            raise Fault(404, f"EntityNotExist.{label}.Policy", f"The policy is not attached to the {kind}.")
        del entity.policies[key]
        if policy is not None:
            policy.attachments.pop((kind, entity.name.lower() if kind == "role" else entity.name), None)
    return {}


def attach_policy_to_role(fake, request):
    return _attach(fake, request, "role", "Attach")


def detach_policy_from_role(fake, request):
    return _attach(fake, request, "role", "Detach")


def attach_policy_to_user(fake, request):
    return _attach(fake, request, "user", "Attach")


def list_policies_for_role(fake, request):
    account = request.caller.account
    name = request.get("RoleName", required=True)
    fake.require(request, "ram:ListPoliciesForRole", ram_arn(account, "role", name))
    role = find_role(account, name)
    out = []
    for (ptype, policy_name), attached in role.policies.items():
        policy = account.policies.get(policy_name) if ptype == "Custom" else None
        out.append({"PolicyName": policy_name, "PolicyType": ptype,
                    "Description": policy.description if policy else "",
                    "DefaultVersion": policy.default if policy else "v1", "AttachDate": stamp(attached)})
    return {"Policies": {"Policy": out}}


# --- RAM: users and access keys (seeding) --------------------------------------------------


def create_user(fake, request):
    account = request.caller.account
    name = checked_name(request, "UserName")
    fake.require(request, "ram:CreateUser", ram_arn(account, "user", name))
    if name in account.users:
        raise Fault(409, "EntityAlreadyExists.User", "The user does already EXIST.")
    user = User(name, numeric_id(16), request.get("DisplayName") or name, request.get("Comments") or "", now())
    account.users[name] = user
    return {"User": {"UserId": user.user_id, "UserName": name, "DisplayName": user.display_name,
                     "Comments": user.comments, "CreateDate": stamp(user.created)}}


def create_access_key(fake, request):
    account = request.caller.account
    name = request.get("UserName")
    if not name:
        if request.caller.kind != "user":
            raise missing("UserName")
        name = request.caller.name
    fake.require(request, "ram:CreateAccessKey", ram_arn(account, "user", name))
    user = find_user(account, name)
    if len(user.keys) >= 2:
        raise Fault(409, "LimitExceeded.User.AccessKey", "The access key count of the user access keys beyond the current limits.")
    key_id, secret = "LTAI" + random_text(20), random_text(30)
    user.keys[key_id] = (secret, now())
    return {"AccessKey": {"AccessKeyId": key_id, "AccessKeySecret": secret, "Status": "Active",
                          "CreateDate": stamp(user.keys[key_id][1])}}


# --- RAM: tags ----------------------------------------------------------------------------

TAG_TYPES = {"role": "role", "policy": "policy", "user": "user"}


def request_tags(request):
    tags = json_list(request, "Tag")
    out = {}
    for tag in tags:
        if not isinstance(tag, dict) or not tag.get("Key"):
            raise Fault(400, "InvalidParameter.Tag", "The parameter - \"Tag\" is incorrect: every tag needs a Key.")
        key, value = str(tag["Key"]), str(tag.get("Value", ""))
        if len(key) > 128 or len(value) > 128:
            raise Fault(400, "InvalidParameter.Tag.Length", "The tag key or value beyond the length limit.")
        if key.lower().startswith(("acs:", "aliyun")):
            raise Fault(400, "InvalidParameter.Tag.Key", f"The tag key {key} can not start with acs: or aliyun.")
        out[key] = value
    if len(out) > MAX_TAGS:
        raise Fault(409, "LimitExceeded.Tag", "The count of tags beyond the current limits.")
    return out


def tag_targets(fake, request, action):
    account = request.caller.account
    resource_type = request.get("ResourceType", required=True)
    if resource_type not in TAG_TYPES:
        raise Fault(400, "InvalidParameter.ResourceType", "The parameter - \"ResourceType\" is incorrect.")
    names = json_list(request, "ResourceNames")
    if not names and action != "ram:ListTagResources":
        raise missing("ResourceNames")
    if len(names) > 50:
        raise Fault(400, "InvalidParameter.ResourceNames.Length", "The parameter - \"ResourceNames\" beyond the length limit.")
    targets = []
    for name in names:
        fake.require(request, action, ram_arn(account, resource_type, name))
        if resource_type == "role":
            targets.append(find_role(account, str(name)).name)
        elif resource_type == "policy":
            find_policy(account, str(name))
            targets.append(str(name))
        else:
            targets.append(find_user(account, str(name)).name)
    return account, resource_type, targets


def tag_resources(fake, request):
    account, resource_type, targets = tag_targets(fake, request, "ram:TagResources")
    tags = request_tags(request)
    if not tags:
        raise missing("Tag")
    for name in targets:
        current = account.tags.get((resource_type, name), {})
        merged = {**current, **tags}
        if len(merged) > MAX_TAGS:
            raise Fault(409, "LimitExceeded.Tag", "The count of tags beyond the current limits.")
    for name in targets:
        account.tags[(resource_type, name)] = {**account.tags.get((resource_type, name), {}), **tags}
    return {}


def untag_resources(fake, request):
    account, resource_type, targets = tag_targets(fake, request, "ram:UntagResources")
    keys = json_list(request, "TagKeys")
    remove_all = (request.get("All") or "false").lower() == "true"
    if not keys and not remove_all:
        raise missing("TagKeys")
    for name in targets:
        current = account.tags.get((resource_type, name), {})
        account.tags[(resource_type, name)] = {} if remove_all else {k: v for k, v in current.items() if k not in keys}
    return {}


def list_tag_resources(fake, request):
    account = request.caller.account
    names = json_list(request, "ResourceNames")
    if not names:
        fake.require(request, "ram:ListTagResources", f"acs:ram:*:{account.id}:*")
    account, resource_type, targets = tag_targets(fake, request, "ram:ListTagResources")
    wanted = request_tags(request) if request.get("Tag") else {}
    try:
        size = int(request.get("PageSize") or 50)
    except ValueError:
        size = -1
    if not 1 <= size <= 100:
        raise Fault(400, "InvalidParameter.PageSize", "The parameter - \"PageSize\" MUST be in the range of 1 and 100.")
    rows = []
    for (kind, name), tags in sorted(account.tags.items()):
        if kind != resource_type or (targets and name not in targets):
            continue
        if wanted and not all(tags.get(k) == v or (v == "" and k in tags) for k, v in wanted.items()):
            continue
        rows += [{"ResourceType": kind, "ResourceName": name, "TagKey": k, "TagValue": v} for k, v in sorted(tags.items())]
    start = decode_token(request.get("NextToken"))
    page = rows[start:start + size]
    out = {"TagResources": page}
    if start + size < len(rows):
        out["NextToken"] = encode_token(start + size)
    return out


def encode_token(offset):
    return f"fake-{offset}-{random_text(8)}"


def decode_token(token):
    if not token:
        return 0
    match = re.fullmatch(r"fake-(\d+)-[A-Za-z0-9]{8}", token)
    if not match:
        raise Fault(400, "InvalidParameter.NextToken", "The parameter - \"NextToken\" is incorrect.")
    return int(match.group(1))


# --- IMS: OIDC providers ------------------------------------------------------------------


def provider_fields(account, provider):
    return {"OIDCProviderName": provider.name, "Arn": account.provider_arn(provider.name),
            "IssuerUrl": provider.issuer_url, "ClientIds": ",".join(provider.client_ids),
            "Fingerprints": ",".join(provider.fingerprints), "Description": provider.description,
            "IssuanceLimitTime": provider.issuance_limit_time,
            "CreateDate": stamp(provider.created), "UpdateDate": stamp(provider.updated),
            "GmtCreate": stamp(provider.created), "GmtModified": stamp(provider.updated)}


def create_oidc_provider(fake, request):
    account = request.caller.account
    name = checked_name(request, "OIDCProviderName")
    fake.require(request, "ram:CreateOIDCProvider", f"acs:ram::{account.id}:oidc-provider/{name}")
    issuer = request.get("IssuerUrl", required=True)
    if not issuer.startswith("https://") or len(issuer) > 255:
        raise Fault(400, "InvalidParameter.IssuerUrl", "The parameter - \"IssuerUrl\" must be an https URL of at most 255 characters.")
    client_ids = [c for c in (request.get("ClientIds") or "").split(",") if c]
    fingerprints = [f for f in (request.get("Fingerprints") or "").split(",") if f]
    if len(client_ids) > 50 or len(fingerprints) > 5:
        raise Fault(409, "LimitExceeded.OIDCProvider", "Too many client IDs (50) or fingerprints (5).")
    try:
        limit = int(request.get("IssuanceLimitTime") or 12)
    except ValueError:
        limit = -1
    if not 1 <= limit <= 168:
        raise Fault(400, "InvalidParameter.IssuanceLimitTime", "The parameter - \"IssuanceLimitTime\" MUST be in the range of 1 and 168.")
    if name in account.providers:
        raise Fault(409, "EntityAlreadyExists.OIDCProvider", f"The OIDC provider already exists: {name}.")
    if len(account.providers) >= 100:
        raise Fault(409, "LimitExceeded.OIDCProvider", "The count of OIDC providers beyond the current limits.")
    when = now()
    provider = OIDCProvider(name, issuer, client_ids, fingerprints, checked_description(request), limit, when, when)
    account.providers[name] = provider
    return {"OIDCProvider": provider_fields(account, provider)}


def get_oidc_provider(fake, request):
    account = request.caller.account
    name = request.get("OIDCProviderName", required=True)
    fake.require(request, "ram:GetOIDCProvider", f"acs:ram::{account.id}:oidc-provider/{name}")
    provider = account.providers.get(name)
    if provider is None:
        raise Fault(404, "EntityNotExist.OIDCProvider", f"The OIDC provider not exists: {name}.")
    return {"OIDCProvider": provider_fields(account, provider)}


def list_oidc_providers(fake, request):
    account = request.caller.account
    fake.require(request, "ram:ListOIDCProviders", "*")
    try:
        size = int(request.get("MaxItems") or 100)
    except ValueError:
        size = -1
    if not 1 <= size <= 1000:
        raise Fault(400, "InvalidParameter.MaxItems", "The parameter - \"MaxItems\" MUST be in the range of 1 and 1000.")
    providers = sorted(account.providers.values(), key=lambda p: p.name)
    start = decode_token(request.get("Marker"))
    page = providers[start:start + size]
    truncated = start + size < len(providers)
    out = {"OIDCProviders": {"OIDCProvider": [provider_fields(account, p) for p in page]}, "IsTruncated": truncated}
    if truncated:
        out["Marker"] = encode_token(start + size)
    return out


# --- STS ----------------------------------------------------------------------------------


def get_caller_identity(fake, request):
    caller = request.caller
    request.decide("sts:GetCallerIdentity", "*", caller.arn, "Allow", "no authorization (as STS)")
    out = {"AccountId": caller.account_id, "Arn": caller.arn}
    if caller.kind == "root":
        out.update({"IdentityType": "Account", "PrincipalId": caller.account_id})
    elif caller.kind == "user":
        user = caller.account.users[caller.name]
        out.update({"IdentityType": "RAMUser", "PrincipalId": user.user_id, "UserId": user.user_id})
    else:
        session = caller.session
        out.update({"IdentityType": "AssumedRoleUser", "PrincipalId": f"{session.role_id}:{session.session_name}",
                    "RoleId": session.role_id})
    return out


ROLE_ARN = re.compile(r"^acs:ram::(\d+):role/([^/]+)$")
PROVIDER_ARN = re.compile(r"^acs:ram::(\d+):oidc-provider/([^/]+)$")


def sts_target(fake, request):
    """(account, role name as named, session name, duration) of an Assume* request."""
    role_arn = request.get("RoleArn", required=True)
    match = ROLE_ARN.match(role_arn)
    if not match:
        raise Fault(400, "InvalidParameter.RoleArn", "The parameter RoleArn is wrongly formed.")
    session_name = request.get("RoleSessionName")
    if request.action == "AssumeRole" or session_name:
        session_name = checked_name(request, "RoleSessionName", session_name or "")
    if request.get("Policy"):
        raise Fault(400, "InvalidParameter.Policy", "Session policies are not modelled by the test bed's fake.")
    try:
        duration = int(request.get("DurationSeconds") or 3600)
    except ValueError:
        duration = -1
    if duration < 900:
        raise Fault(400, "InvalidParameter.DurationSeconds", "The Min/Max value of DurationSeconds is 15min/1hr.")
    return match.group(1), match.group(2), session_name, duration


def issue(fake, account, role, session_name, duration):
    if duration > role.max_session_duration:
        raise Fault(400, "InvalidParameter.DurationSeconds",
                    f"The Min/Max value of DurationSeconds is 15min/{role.max_session_duration // 3600}hr.")
    expiration = now() + datetime.timedelta(seconds=duration)
    session = Session("STS." + random_text(28), random_text(44), "CAIS" + random_text(360, string.ascii_letters + string.digits + "+/"),
                      account.id, role.name.lower(), role.name, role.role_id, session_name, expiration)
    fake.sessions[session.access_key_id] = session
    return {
        "Credentials": {"AccessKeyId": session.access_key_id, "AccessKeySecret": session.secret,
                        "SecurityToken": session.token, "Expiration": stamp(expiration)},
        "AssumedRoleUser": {"Arn": f"{account.role_arn(role)}/{session_name}",
                            "AssumedRoleId": f"{role.role_id}:{session_name}"},
    }


def trust_decision(request, role, account, principal, context, derived_by):
    try:
        result = ram_policy.evaluate(role.trust, "sts:AssumeRole", account.role_arn(role), context, principal)
    except ram_policy.PolicyError:
        result = ram_policy.IMPLICIT_DENY
    request.decide("sts:AssumeRole", account.role_arn(role), json.dumps(principal), result, derived_by)
    return result == ram_policy.ALLOW


def assume_role(fake, request):
    caller = request.caller
    account_id, role_name, session_name, duration = sts_target(fake, request)
    role_arn = f"acs:ram::{account_id}:role/{role_name.lower()}"
    external_id = request.get("ExternalId")
    if external_id is not None and not re.fullmatch(r"[\w+=,.@:\/-]{2,1224}", external_id):
        raise Fault(400, "InvalidParameter.ExternalId", "The parameter ExternalId is wrongly formed.")
    context = {"sts:RoleSessionName": session_name}
    if external_id is not None:
        context["sts:ExternalId"] = external_id
    fake.require(request, "sts:AssumeRole", role_arn, context)
    account = fake.accounts.get(account_id)
    role = account.roles.get(role_name.lower()) if account else None
    if role is None:
        raise Fault(404, "EntityNotExist.Role", f"The role not exists: {role_arn}.")
    principal = {"RAM": [f"acs:ram::{caller.account_id}:root", caller.principal_arn]}
    trust_context = {**context, "acs:SourceIp": request.environ.get("REMOTE_ADDR", ""),
                     "acs:SecureTransport": "true" if request.secure else "false", "acs:PrincipalARN": caller.principal_arn}
    if not trust_decision(request, role, account, principal, trust_context, "ram_policy.py: the role's trust policy"):
        raise Fault(403, "NoPermission", "You are not authorized to do this action. You should be authorized by RAM.")
    return issue(fake, account, role, session_name, duration)


def oidc_refused(code, message, status=400):
    return Fault(status, f"AuthenticationFail.{code}", message)


def assume_role_with_oidc(fake, request):
    import web_identity

    account_id, role_name, session_name, duration = sts_target(fake, request)
    provider_arn = request.get("OIDCProviderArn", required=True)
    token = request.get("OIDCToken", required=True)
    match = PROVIDER_ARN.match(provider_arn)
    if not match:
        raise Fault(400, "InvalidParameter.OIDCProviderArn", "The parameter OIDCProviderArn is wrongly formed.")
    account = fake.accounts.get(account_id)
    provider = account.providers.get(match.group(2)) if account and match.group(1) == account_id else None
    if provider is None:
        raise oidc_refused("NoPermission", "No such OIDC Provider registered.", 403)
    try:
        header, claims, signing_input, signature = web_identity.parse(token)
    except web_identity.Refused:
        raise oidc_refused("OIDCToken.Invalid", "The OIDC token is not a JSON Web Token.") from None
    issuer = claims.get("iss")
    if issuer != provider.issuer_url:
        raise oidc_refused("OIDCToken.IssuerNotMatch", "The issuer in the OIDC Token doesn't match the OIDC Provider registered.")
    try:
        key = fake.keys.key(issuer, header.get("kid"))
    except web_identity.Refused as refused:
        if refused.message == web_identity.NO_KEY:
            raise oidc_refused("OIDCToken.IssuerConfigurationBroken",
                               f"Get public keys from OIDC Provider failed, the issuer is {issuer}.") from None
        raise oidc_refused("OIDCToken.Invalid", "The OIDC token's key id is not among the provider's keys.") from None
    try:
        web_identity.check_signature(header, key, signing_input, signature)
    except web_identity.Refused:
        raise oidc_refused("OIDCToken.Invalid", "The signature of the OIDC token is invalid.") from None
    try:
        web_identity.check_times(claims)
    except web_identity.Refused as refused:
        if refused.code == "ExpiredTokenException":
            raise oidc_refused("OIDCToken.Expired", "This JsonWebToken is expired.") from None
        raise oidc_refused("OIDCToken.Invalid", f"The OIDC token is invalid: {refused.message}.") from None
    iat = claims.get("iat")
    if isinstance(iat, (int, float)) and iat < time.time() - provider.issuance_limit_time * 3600:
        raise oidc_refused("OIDCToken.Invalid", "The OIDC token was issued before the provider's IssuanceLimitTime.")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    audience = next((a for a in audiences if a in provider.client_ids), None)
    if audience is None:
        raise oidc_refused("OIDCToken.AudienceNotMatch", "Invalid audience.")
    role = account.roles.get(role_name.lower())
    if role is None:
        raise Fault(404, "EntityNotExist.Role", f"The role not exists: acs:ram::{account_id}:role/{role_name}.")
    context = {"oidc:iss": issuer, "oidc:aud": audience, "oidc:sub": str(claims.get("sub", "")),
               "acs:SourceIp": request.environ.get("REMOTE_ADDR", ""),
               "acs:SecureTransport": "true" if request.secure else "false"}
    if not trust_decision(request, role, account, {"Federated": [account.provider_arn(provider.name)]}, context,
                          "ram_policy.py: the role's trust policy (AssumeRoleWithOIDC)"):
        raise oidc_refused("NoPermission", "There is no permission", 403)
    answer = issue(fake, account, role, session_name or f"oidc-{random_text(8).lower()}", duration)
    answer["OIDCTokenInfo"] = {
        "Issuer": issuer, "Subject": str(claims.get("sub", "")), "ClientIds": ",".join(audiences),
        "IssuanceTime": stamp(datetime.datetime.fromtimestamp(iat, datetime.timezone.utc)) if isinstance(iat, (int, float)) else "",
        "ExpirationTime": stamp(datetime.datetime.fromtimestamp(claims["exp"], datetime.timezone.utc)),
        "VerificationInfo": "Success",
    }
    return answer


# --- ACK ----------------------------------------------------------------------------------


def describe_cluster_detail(fake, request):
    account = request.caller.account
    cluster_id = CLUSTER_PATH.match(request.path).group(1)
    cluster = account.clusters.get(cluster_id)
    region = cluster.region if cluster else "*"
    fake.require(request, "cs:DescribeClusterDetail", f"acs:cs:{region}:{account.id}:cluster/{cluster_id}")
    if cluster is None:
        raise Fault(404, "ErrorClusterNotFound", f"cluster {cluster_id} not found")
    rrsa = {"enabled": True, "issuer": cluster.issuer, "audience": STS_AUDIENCE, "oidc_name": cluster.oidc_name,
            "oidc_arn": account.provider_arn(cluster.oidc_name), "jwks_url": f"{cluster.issuer}/keys.json",
            "open_api_configuration_url": f"{cluster.issuer}/.well-known/openid-configuration",
            "max_oidc_token_expiration": "12h"}
    meta = {"Capabilities": {}, "RRSAConfig": rrsa, "KubernetesVersion": "1.35.1-aliyun.1", "ExtraCertSAN": None}
    created = cluster.created.strftime("%Y-%m-%dT%H:%M:%S+08:00")
    return {
        "cluster_id": cluster.cluster_id, "name": cluster.name, "region_id": cluster.region, "state": "running",
        "cluster_type": "ManagedKubernetes", "profile": "Default", "cluster_spec": "ack.pro.small",
        "current_version": "1.35.1-aliyun.1", "init_version": "1.35.1-aliyun.1", "network_mode": "vpc",
        "vpc_id": "vpc-bucketwiretestbed0", "vswitch_id": "vsw-bucketwiretestbed0", "zone_id": f"{cluster.region}-k",
        "resource_group_id": "rg-bucketwiretestbed", "deletion_protection": False, "size": 1,
        "created": created, "updated": created, "tags": [], "rrsa_config": rrsa, "meta_data": json.dumps(meta),
    }


@dataclass
class Operation:
    handler: object
    action: str  # the RAM action it is authorized as (documentation; the handler decides)
    resource: str
    anonymous: bool = False


OPERATIONS = {
    ("ram", "CreatePolicy"): Operation(create_policy, "ram:CreatePolicy", "acs:ram:*:<account>:policy/<PolicyName>"),
    ("ram", "GetPolicy"): Operation(get_policy, "ram:GetPolicy", "acs:ram:*:<account>:policy/<PolicyName> (System: acs:ram:*:system:policy/<PolicyName>)"),
    ("ram", "GetPolicyVersion"): Operation(get_policy_version, "ram:GetPolicyVersion", "acs:ram:*:<account>:policy/<PolicyName>"),
    ("ram", "CreatePolicyVersion"): Operation(create_policy_version, "ram:CreatePolicyVersion", "acs:ram:*:<account>:policy/<PolicyName>"),
    ("ram", "ListPolicyVersions"): Operation(list_policy_versions, "ram:ListPolicyVersions", "acs:ram:*:<account>:policy/<PolicyName>"),
    ("ram", "DeletePolicyVersion"): Operation(delete_policy_version, "ram:DeletePolicyVersion", "acs:ram:*:<account>:policy/<PolicyName>"),
    ("ram", "DeletePolicy"): Operation(delete_policy, "ram:DeletePolicy", "acs:ram:*:<account>:policy/<PolicyName>"),
    ("ram", "CreateRole"): Operation(create_role, "ram:CreateRole", "acs:ram:*:<account>:role/<RoleName>"),
    ("ram", "GetRole"): Operation(get_role, "ram:GetRole", "acs:ram:*:<account>:role/<RoleName>"),
    ("ram", "UpdateRole"): Operation(update_role, "ram:UpdateRole", "acs:ram:*:<account>:role/<RoleName>"),
    ("ram", "ListRoles"): Operation(list_roles, "ram:ListRoles", "acs:ram:*:<account>:role/*"),
    ("ram", "ListPolicies"): Operation(list_policies, "ram:ListPolicies", "acs:ram:*:<account>:policy/*"),
    ("ram", "DeleteRole"): Operation(delete_role, "ram:DeleteRole", "acs:ram:*:<account>:role/<RoleName>"),
    ("ram", "AttachPolicyToRole"): Operation(attach_policy_to_role, "ram:AttachPolicyToRole", "acs:ram:*:<account>:role/<RoleName> and acs:ram:*:<account>:policy/<PolicyName>"),
    ("ram", "DetachPolicyFromRole"): Operation(detach_policy_from_role, "ram:DetachPolicyFromRole", "acs:ram:*:<account>:role/<RoleName> and acs:ram:*:<account>:policy/<PolicyName>"),
    ("ram", "ListPoliciesForRole"): Operation(list_policies_for_role, "ram:ListPoliciesForRole", "acs:ram:*:<account>:role/<RoleName>"),
    ("ram", "TagResources"): Operation(tag_resources, "ram:TagResources", "acs:ram:*:<account>:<ResourceType>/<name>, each"),
    ("ram", "UntagResources"): Operation(untag_resources, "ram:UntagResources", "acs:ram:*:<account>:<ResourceType>/<name>, each"),
    ("ram", "ListTagResources"): Operation(list_tag_resources, "ram:ListTagResources", "acs:ram:*:<account>:<ResourceType>/<name>, each; without ResourceNames acs:ram:*:<account>:*"),
    ("ram", "CreateUser"): Operation(create_user, "ram:CreateUser", "acs:ram:*:<account>:user/<UserName>"),
    ("ram", "CreateAccessKey"): Operation(create_access_key, "ram:CreateAccessKey", "acs:ram:*:<account>:user/<UserName>"),
    ("ram", "AttachPolicyToUser"): Operation(attach_policy_to_user, "ram:AttachPolicyToUser", "acs:ram:*:<account>:user/<UserName> and the policy"),
    ("ims", "CreateOIDCProvider"): Operation(create_oidc_provider, "ram:CreateOIDCProvider", "acs:ram::<account>:oidc-provider/<OIDCProviderName>"),
    ("ims", "GetOIDCProvider"): Operation(get_oidc_provider, "ram:GetOIDCProvider", "acs:ram::<account>:oidc-provider/<OIDCProviderName>"),
    ("ims", "ListOIDCProviders"): Operation(list_oidc_providers, "ram:ListOIDCProviders", "*"),
    ("sts", "GetCallerIdentity"): Operation(get_caller_identity, "(none)", "(none)"),
    ("sts", "AssumeRole"): Operation(assume_role, "sts:AssumeRole", "acs:ram::<role account>:role/<rolename>, then the role's trust policy"),
    ("sts", "AssumeRoleWithOIDC"): Operation(assume_role_with_oidc, "(anonymous)", "the role's trust policy only", anonymous=True),
    ("cs", "DescribeClusterDetail"): Operation(describe_cluster_detail, "cs:DescribeClusterDetail", "acs:cs:<region>:<account>:cluster/<ClusterId>"),
}


class OSSPrincipals:
    """The OSS fake's Principals (tests/testbed/alibaba/oss.py): this fake's keys and sessions.
    `refused` is oss.CredentialRefused."""

    def __init__(self, fake, refused):
        self.fake, self.refused = fake, refused

    def caller(self, access_key_id, security_token):
        try:
            return self.fake.caller_of(access_key_id, security_token)
        except Fault as fault:
            code = "SecurityTokenExpired" if fault.code.endswith(".Expired") else "InvalidSecurityToken"
            raise self.refused(code, fault.message) from None


class StaticKeys:
    """Keys for one issuer from a JWKS file (standalone runs without an apiserver):
    {"issuer": ..., "keys": [...]}."""

    def __init__(self, path):
        import web_identity

        with open(path) as f:
            doc = json.load(f)
        self.issuer = doc["issuer"]
        self.keys = {k.get("kid"): web_identity.public_key(k) for k in doc["keys"]}

    def key(self, issuer, kid):
        import web_identity

        if issuer != self.issuer:
            raise web_identity.Refused(400, "InvalidIdentityToken", web_identity.NO_KEY)
        if kid in self.keys:
            return self.keys[kid]
        raise web_identity.invalid("The token's key id (kid) is not among the identity provider's keys")


def serve(fake, host, port, insecure_port=None):
    import logging

    from werkzeug.serving import make_server

    # Requests are logged to the request log without their parameters (OIDC tokens); werkzeug's
    # own access log would print them.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    servers = [make_server(host, port, fake, threaded=True)]
    if insecure_port:
        servers.append(make_server(host, insecure_port, fake, threaded=True))
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


def main(argv=None):
    parser = argparse.ArgumentParser(description="The test bed's Alibaba Cloud RAM/IMS/STS/ACK fake")
    parser.add_argument("--config", required=True)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument("--insecure-port", type=int)
    args = parser.parse_args(argv)
    with open(args.config) as f:
        config = json.load(f)
    jwks = os.environ.get("ALIBABA_FAKE_JWKS_FILE")
    fake = AlibabaFake(config, insecure_ports=[args.insecure_port] if args.insecure_port else [],
                       request_log=os.environ.get("ALIBABA_FAKE_REQUEST_LOG"),
                       keys=StaticKeys(jwks) if jwks else None)
    app = fake
    oss_log = os.environ.get("OSS_FAKE_REQUEST_LOG")
    if oss_log is not None:
        # The OSS fake (oss.py) on the same ports: one endpoint for every Alibaba Cloud host,
        # as the operator's --alibaba-endpoint-url resolves them all to one address.
        import oss
        import oss_policy

        oss_fake = oss.OSSFake(OSSPrincipals(fake, oss.CredentialRefused),
                               insecure_ports=[args.insecure_port] if args.insecure_port else [],
                               request_log=oss_log, policy_evaluator=oss_policy.evaluate)
        app = by_host(fake, oss_fake)
    print(f"alibaba fake: serving on {args.host}:{args.port}", flush=True)
    serve(app, args.host, args.port, args.insecure_port)


# `<bucket>.oss-<region>[-internal].aliyuncs.com`, `<bucket>.s3.oss-<region>...` and the service
# hosts without a bucket: OSS's; every other host (ram., sts., cs.<region>.) the control plane's.
OSS_HOST = re.compile(r"^([a-z0-9-]+\.)?(s3\.)?oss-[a-z0-9-]+\.aliyuncs\.com$")


def by_host(control_plane, oss_fake):
    def app(environ, start_response):
        host = environ.get("HTTP_HOST", "").lower().rsplit(":", 1)[0]
        target = oss_fake if OSS_HOST.match(host) else control_plane
        return target(environ, start_response)

    return app


if __name__ == "__main__":
    main()
