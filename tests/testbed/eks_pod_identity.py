"""FAKE: EKS pod identity associations and EKS Auth's AssumeRoleForPodIdentity, for the test bed.

This is a hand-written fake, not an emulator: moto 5.2.5 implements neither API and LocalStack's
community edition has no EKS. It answers exactly the calls bucketwire makes, in the wire format of
their AWS service models (botocore/data/eks and botocore/data/eks-auth, rest-json; pinned by
tests/eks_fake.rs, which drives it with boto3's `eks` and `eks-auth` clients), from inside the moto
launcher (same endpoint, routed by path before moto's own routes):

- EKS (service `eks`): CreatePodIdentityAssociation, ListPodIdentityAssociations,
  DescribePodIdentityAssociation, UpdatePodIdentityAssociation, DeletePodIdentityAssociation.
  Associations live in memory per account, region and cluster; the cluster must exist in moto's
  EKS state (ResourceNotFoundException). One association per namespace and ServiceAccount
  (ResourceInUseException). List returns summaries without the role, as EKS does, and pages with
  maxResults/nextToken.
- EKS Auth (service `eks-auth`): AssumeRoleForPodIdentity.

What it verifies, as the real services do:
- Every request is SigV4-signed (moto's signature check, with the launcher's corrections) and
  authorized by the test bed's IAM policy simulator (authorization.py) for the caller's policies:
  eks:CreatePodIdentityAssociation / eks:ListPodIdentityAssociations on the cluster ARN,
  Describe/Update/Delete on the association ARN (with aws:ResourceTag/* of the association),
  eks:TagResource on the new association for tags given at creation, iam:PassRole on the role
  with iam:PassedToService = pods.eks.amazonaws.com for Create and Update, and
  eks-auth:AssumeRoleForPodIdentity on the cluster ARN. Request tags are in aws:RequestTag/* and
  aws:TagKeys. A refusal is AccessDeniedException with AWS's wording, naming the action.
- AssumeRoleForPodIdentity verifies the ServiceAccount token: a JWT signed by one of the test
  apiserver's keys (web_identity.py's key fetching: the apiserver's OIDC discovery), issued by
  the cluster's issuer (moto's cluster `identity.oidc.issuer`, which the apiserver signs with), not
  expired, with the audience `pods.eks.amazonaws.com` (InvalidTokenException,
  ExpiredTokenException); finds the association of the token's namespace and ServiceAccount
  (ResourceNotFoundException); then decides the role's trust policy with the simulator as STS
  would for the service principal `pods.eks.amazonaws.com`: sts:AssumeRole and sts:TagSession,
  both required, with the session tags EKS sets (aws:RequestTag/eks-cluster-arn,
  eks-cluster-name, kubernetes-namespace, kubernetes-service-account, and kubernetes-pod-name /
  kubernetes-pod-uid when the token is bound to a Pod) and aws:TagKeys (AccessDeniedException);
  and only then issues credentials from moto's STS (an assumed-role session of that role, which
  the test bed then authorizes as that role).

Not modelled: the Pod Identity Agent and EKS's webhook that points Pods at it (the operator calls
EKS Auth itself to validate), target roles and role chaining (`targetRoleArn`), `disableSessionTags`
(accepted, ignored), session tags as principal tags in later requests, whether the role exists at
association time, idempotency tokens, throttling.
"""

import json
import re
import secrets
import string
import threading
import time
import uuid
from urllib.parse import parse_qsl

import authorization
import web_identity

ASSOCIATIONS = re.compile(r"^/clusters/([^/]+)/pod-identity-associations(?:/([^/]+))?/?$")
ASSUME = re.compile(r"^/clusters/([^/]+)/assume-role-for-pod-identity/?$")
PRINCIPAL = "pods.eks.amazonaws.com"
AUDIENCE = "pods.eks.amazonaws.com"

_lock = threading.Lock()
# (account, region, cluster) -> {association id: association dict}
_associations = {}


class Failure(Exception):
    """An error answer: the model's error shape, its HTTP status and a message."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def not_found(message):
    return Failure(404, "ResourceNotFoundException", message)


def invalid_parameter(message):
    return Failure(400, "InvalidParameterException", message)


def invalid_token(message):
    return Failure(400, "InvalidTokenException", message)


def operation_of(method, path):
    """The operation a request is for, or None when it is not one of the fake's."""
    m = ASSOCIATIONS.match(path)
    if m:
        single = m.group(2) is not None
        return {
            ("POST", False): "CreatePodIdentityAssociation",
            ("GET", False): "ListPodIdentityAssociations",
            ("GET", True): "DescribePodIdentityAssociation",
            ("POST", True): "UpdatePodIdentityAssociation",
            ("DELETE", True): "DeletePodIdentityAssociation",
        }.get((method, single))
    if ASSUME.match(path) and method == "POST":
        return "AssumeRoleForPodIdentity"
    return None


def handle(environ, body):
    """(status, headers, body bytes, operation) for a request this fake answers, else None."""
    method = environ["REQUEST_METHOD"]
    path = environ.get("PATH_INFO", "")
    operation = operation_of(method, path)
    if operation is None:
        return None
    try:
        status, answer = _answer(environ, body, method, path, operation)
        payload = json.dumps(answer).encode()
        return status, [("Content-Type", "application/json")], payload, operation
    except Failure as failure:
        payload = json.dumps({"__type": failure.code, "message": failure.message}).encode()
        headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", failure.code)]
        return failure.status, headers, payload, operation


# --- the caller: signature and policies ------------------------------------------------------


def _caller(environ, body, method, path, service):
    """Authenticates the SigV4 signature as moto does and returns (IAM request, Caller)."""
    from moto.iam.access_control import IAMRequest
    from moto.iam.models import get_account_id_from
    from werkzeug.datastructures import EnvironHeaders
    from werkzeug.exceptions import HTTPException

    headers = EnvironHeaders(environ)
    auth = headers.get("Authorization", "")
    if "Credential=" not in auth:
        raise Failure(403, "AccessDeniedException", "Missing Authentication Token")
    key = auth.split("Credential=", 1)[1].split("/", 1)[0]
    query = environ.get("QUERY_STRING", "")
    full = path + ("?" + query if query else "")
    try:
        request = IAMRequest(
            account_id=get_account_id_from(key),
            method=method,
            path=full,
            data=dict(parse_qsl(query)),
            body=body,
            headers=headers,
            action="",
        )
        request.check_signature()
    except HTTPException as error:
        code = "InvalidSignatureException" if "Signature" in type(error).__name__ else "UnrecognizedClientException"
        raise Failure(403, code, f"The request signature or credentials are not valid ({type(error).__name__})")
    if request._service != service:
        raise Failure(403, "InvalidSignatureException", f"signed for {request._service}, not {service}")
    return request, authorization.caller_of(request)


def _require(caller, action, resource, context=None):
    check = authorization.Check(action, resource, context, derived_by="eks_pod_identity.py (fake)")
    decision = authorization.simulate(caller, check)
    if not decision.allowed:
        policy_type = decision.policy_type
        if decision.result == "ExplicitlyDenied":
            policy_type = f"explicit {policy_type}"
        message = authorization.access_denied_message(caller.arn, action, resource, policy_type)
        raise Failure(403, "AccessDeniedException", message)


def _pass_role_context(role_arn, account):
    """iam:PassRole as IAM authorizes it: the service the role goes to, and the role's own tags
    (aws:ResourceTag/*, which the operator's policy conditions on); a role that does not exist has
    none, and EKS then refuses it for the missing role or the missing tag."""
    context = {"iam:PassedToService": PRINCIPAL}
    try:
        partition, role_account, role_name = web_identity.role_of(role_arn, account, "aws")
        role = web_identity.iam_backend(role_account, partition).get_role(role_name)
    except Exception:
        return context
    for key, value in authorization._tags(role.tags).items():
        context[f"aws:ResourceTag/{key}"] = value
    return context


def _tag_context(tags):
    context = {f"aws:RequestTag/{k}": v for k, v in tags.items()}
    if tags:
        context["aws:TagKeys"] = list(tags)
    return context


# --- state ------------------------------------------------------------------------------------


def _cluster(account, region, name):
    from moto.eks.models import eks_backends

    cluster = eks_backends[account][region].clusters.get(name)
    if cluster is None:
        raise not_found(f"No cluster found for name: {name}.")
    return cluster


def _new_id():
    alphabet = string.ascii_lowercase + string.digits
    return "a-" + "".join(secrets.choice(alphabet) for _ in range(17))


def _summary(a):
    return {k: a[k] for k in ("clusterName", "namespace", "serviceAccount", "associationArn", "associationId", "ownerArn") if k in a}


def _get(store, cluster, association_id):
    found = store.get(association_id)
    if found is None:
        raise not_found(f"Pod identity association {association_id} not found in cluster {cluster}")
    return found


def _json(body):
    if not body:
        return {}
    try:
        parsed = json.loads(body)
    except ValueError:
        raise Failure(400, "InvalidRequestException", "the request body is not JSON") from None
    if not isinstance(parsed, dict):
        raise Failure(400, "InvalidRequestException", "the request body is not a JSON object")
    return parsed


# --- the operations ---------------------------------------------------------------------------


def _answer(environ, body, method, path, operation):
    if operation == "AssumeRoleForPodIdentity":
        return _assume_role_for_pod_identity(environ, body, method, path)
    request, caller = _caller(environ, body, method, path, "eks")
    account, region = caller.account_id, request._region
    m = ASSOCIATIONS.match(path)
    name, association_id = m.group(1), m.group(2)
    cluster = _cluster(account, region, name)
    cluster_arn = cluster.arn
    with _lock:
        store = _associations.setdefault((account, region, name), {})
    if operation == "CreatePodIdentityAssociation":
        params = _json(body)
        for field in ("namespace", "serviceAccount", "roleArn"):
            if not isinstance(params.get(field), str) or not params[field]:
                raise invalid_parameter(f"{field} is required")
        tags = params.get("tags") or {}
        if not isinstance(tags, dict):
            raise invalid_parameter("tags must be a map")
        new_id = _new_id()
        arn = cluster_arn.replace(":cluster/", ":podidentityassociation/", 1) + "/" + new_id
        _require(caller, "eks:CreatePodIdentityAssociation", cluster_arn, _tag_context(tags))
        if tags:
            _require(caller, "eks:TagResource", arn, _tag_context(tags))
        _require(caller, "iam:PassRole", params["roleArn"], _pass_role_context(params["roleArn"], account))
        now = time.time()
        with _lock:
            for existing in store.values():
                if existing["namespace"] == params["namespace"] and existing["serviceAccount"] == params["serviceAccount"]:
                    raise Failure(409, "ResourceInUseException", f"Association already exists: {existing['associationId']}")
            association = {
                "clusterName": name,
                "namespace": params["namespace"],
                "serviceAccount": params["serviceAccount"],
                "roleArn": params["roleArn"],
                "associationArn": arn,
                "associationId": new_id,
                "tags": {str(k): str(v) for k, v in tags.items()},
                "createdAt": now,
                "modifiedAt": now,
                "disableSessionTags": bool(params.get("disableSessionTags", False)),
            }
            store[new_id] = association
        return 200, {"association": association}
    if operation == "ListPodIdentityAssociations":
        query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
        _require(caller, "eks:ListPodIdentityAssociations", cluster_arn)
        try:
            limit = int(query.get("maxResults", "100"))
        except ValueError:
            raise invalid_parameter("maxResults must be a number") from None
        if not 1 <= limit <= 100:
            raise invalid_parameter("maxResults must be between 1 and 100")
        with _lock:
            matching = sorted(
                (
                    a
                    for a in store.values()
                    if query.get("namespace") in (None, a["namespace"])
                    and query.get("serviceAccount") in (None, a["serviceAccount"])
                ),
                key=lambda a: a["associationId"],
            )
        start = 0
        if query.get("nextToken"):
            ids = [a["associationId"] for a in matching]
            token = query["nextToken"]
            if token not in ids:
                raise invalid_parameter("The nextToken is not valid")
            start = ids.index(token)
        page = matching[start : start + limit]
        answer = {"associations": [_summary(a) for a in page]}
        if start + limit < len(matching):
            answer["nextToken"] = matching[start + limit]["associationId"]
        return 200, answer
    with _lock:
        association = dict(_get(store, name, association_id))
    resource_context = {f"aws:ResourceTag/{k}": v for k, v in association["tags"].items()}
    arn = association["associationArn"]
    if operation == "DescribePodIdentityAssociation":
        _require(caller, "eks:DescribePodIdentityAssociation", arn, resource_context)
        return 200, {"association": association}
    if operation == "UpdatePodIdentityAssociation":
        params = _json(body)
        _require(caller, "eks:UpdatePodIdentityAssociation", arn, resource_context)
        if "roleArn" in params:
            if not isinstance(params["roleArn"], str) or not params["roleArn"]:
                raise invalid_parameter("roleArn must be a role ARN")
            _require(caller, "iam:PassRole", params["roleArn"], _pass_role_context(params["roleArn"], account))
        with _lock:
            stored = _get(store, name, association_id)
            if "roleArn" in params:
                stored["roleArn"] = params["roleArn"]
            if "disableSessionTags" in params:
                stored["disableSessionTags"] = bool(params["disableSessionTags"])
            stored["modifiedAt"] = time.time()
            association = dict(stored)
        return 200, {"association": association}
    # DeletePodIdentityAssociation
    _require(caller, "eks:DeletePodIdentityAssociation", arn, resource_context)
    with _lock:
        association = store.pop(association_id, None)
    if association is None:
        raise not_found(f"Pod identity association {association_id} not found in cluster {name}")
    return 200, {"association": association}


def _assume_role_for_pod_identity(environ, body, method, path):
    request, caller = _caller(environ, body, method, path, "eks-auth")
    account, region = caller.account_id, request._region
    name = ASSUME.match(path).group(1)
    cluster = _cluster(account, region, name)
    _require(caller, "eks-auth:AssumeRoleForPodIdentity", cluster.arn)
    token = _json(body).get("token")
    if not isinstance(token, str) or not token:
        raise invalid_parameter("token is required")

    # The token, as EKS Auth verifies it.
    try:
        header, claims, signing_input, signature = web_identity.parse(token)
        issuer = cluster.identity["oidc"]["issuer"]
        if claims.get("iss") != issuer:
            raise invalid_token(f"The token was not issued by cluster {name}")
        key = web_identity.KEYS.key(issuer, header.get("kid"))
        web_identity.check_signature(header, key, signing_input, signature)
        web_identity.check_times(claims)
    except web_identity.Refused as refused:
        if refused.code == "ExpiredTokenException":
            raise Failure(400, "ExpiredTokenException", refused.message) from None
        raise invalid_token(refused.message) from None
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if AUDIENCE not in audiences:
        raise invalid_token(f"The token's audience {audiences} does not include {AUDIENCE}")
    subject = str(claims.get("sub", ""))
    parts = subject.split(":")
    if len(parts) != 4 or parts[:2] != ["system", "serviceaccount"]:
        raise invalid_token(f"The token's subject {subject} is not a ServiceAccount")
    namespace, service_account = parts[2], parts[3]
    bound = claims.get("kubernetes.io", {}).get("pod") or {}

    with _lock:
        store = _associations.get((account, region, name), {})
        association = next(
            (dict(a) for a in store.values() if a["namespace"] == namespace and a["serviceAccount"] == service_account),
            None,
        )
    if association is None:
        raise not_found(f"No pod identity association for {namespace}/{service_account} in cluster {name}")

    # The role's trust policy, as STS decides it for the EKS service principal.
    role_arn = association["roleArn"]
    role_partition, role_account, role_name = web_identity.role_of(role_arn, account, "aws")
    try:
        role = web_identity.iam_backend(role_account, role_partition).get_role(role_name)
    except Exception:
        raise Failure(403, "AccessDeniedException", f"{PRINCIPAL} is not authorized to perform: sts:AssumeRole on resource: {role_arn}") from None
    tags = {
        "eks-cluster-arn": cluster.arn,
        "eks-cluster-name": name,
        "kubernetes-namespace": namespace,
        "kubernetes-service-account": service_account,
    }
    if bound.get("name"):
        tags["kubernetes-pod-name"] = bound["name"]
    if bound.get("uid"):
        tags["kubernetes-pod-uid"] = bound["uid"]
    trust = authorization._document(role.assume_role_policy_document)
    for action in ("sts:AssumeRole", "sts:TagSession"):
        decision = _trust_decision(action, role, role_account, trust, tags)
        if not decision.allowed:
            raise Failure(
                403,
                "AccessDeniedException",
                f"{PRINCIPAL} is not authorized to perform: {action} on resource: {role_arn}: the role's trust policy does not allow it",
            )

    from moto.sts.models import sts_backends

    session = f"eks-{name}-{bound.get('name') or service_account}-{uuid.uuid4()}"[:64]
    assumed = sts_backends[role_account][role_partition].assume_role(
        region_name=region,
        role_session_name=session,
        role_arn=role_arn,
        policy=None,
        duration=21600,
        external_id=None,
    )
    return 200, {
        "subject": {"namespace": namespace, "serviceAccount": service_account},
        "audience": AUDIENCE,
        "podIdentityAssociation": {
            "associationArn": association["associationArn"],
            "associationId": association["associationId"],
        },
        "assumedRoleUser": {"arn": assumed.arn, "assumeRoleId": assumed.user_id},
        "credentials": {
            "sessionToken": assumed.session_token,
            "secretAccessKey": assumed.secret_access_key,
            "accessKeyId": assumed.access_key_id,
            "expiration": assumed.expiration.timestamp(),
        },
    }


def _trust_decision(action, role, role_account, trust, tags):
    context = _tag_context(tags)
    context["aws:PrincipalServiceName"] = PRINCIPAL
    context["aws:PrincipalIsAWSService"] = "true"
    simulation = {
        "request": {
            "principal": PRINCIPAL,
            "action": action,
            "resource": {"resource": role.arn, "accountId": role_account},
            "contextVariables": context,
        },
        "identityPolicies": [],
        "serviceControlPolicies": [],
        "resourceControlPolicies": [],
        "resourcePolicy": trust,
    }
    decision = authorization.decide(simulation)
    authorization.record_decision({
        "action": action,
        "resource": role.arn,
        "principal": PRINCIPAL,
        "result": decision.result,
        "derivedBy": "eks_pod_identity.py (fake): the role's trust policy",
    })
    return decision
