"""Starts moto's server as the store of AWS state, with authorization decided by an IAM policy
simulator instead of moto's evaluator, and the corrections moto's authentication needs.

Authorization (tests/testbed/authorization.py): every signed request is allowed or denied by
@cloud-copilot/iam-simulate from the caller's identity policies and permissions boundary, the
bucket policy, the role's trust policy or the KMS key policy, and a request context derived as AWS
derives it. moto's own evaluator (moto/iam/access_control.py, check_action_permitted) is
replaced, not patched.

Web identity: sts:AssumeRoleWithWebIdentity is unsigned on AWS by design (the token is the
credential). moto would demand a signature; here it is exempt from signing and goes to
tests/testbed/web_identity.py, which checks the token and the role's trust policy as STS does.

Authentication corrections:
1. moto checks signatures against a body it rebuilds: the form re-encoded by Python for
   form-encoded requests (its Flask request has consumed the raw body; aws-sdk-rust encodes
   some characters of policy documents differently), and the parsed parameters for requests
   without a body (REST GETs such as eks:DescribeCluster), and with the query string it
   received already percent-decoded (`prefix=files/` where the client signed `files%2F`).
   Valid signatures then fail. Here the signature is checked against the bytes that were sent,
   and the query is canonically re-encoded, as AWS does.
2. Partitions: the test bed has one administrator, created in the `aws` partition. A China or
   GovCloud account would have its own; here a user access key that is unknown in the request's
   partition is looked up in `aws`, so the same credentials work in every partition (the
   resources themselves, and their ARNs, stay in the partition of the request). Likewise moto
   files the credentials of an unsigned AssumeRoleWithWebIdentity under `aws`, as it cannot tell
   which partition's STS endpoint was meant; temporary credentials unknown in the request's
   partition are looked up in the others and then act in the request's partition.
3. IAM refuses a permissions boundary that names no policy (CreateRole,
   PutRolePermissionsBoundary: NoSuchEntity); moto stores the ARN, leaving a role bounded by
   nothing that exists.
4. GetAccountAuthorizationDetails pages as IAM does: at most MaxItems entities (users, groups,
   roles and policies together; 100 unless asked, 1000 at most) per answer, with IsTruncated and
   a Marker to go on from. moto answers everything at once, whatever MaxItems says, which at
   ten thousand integrations is one answer of tens of megabytes that IAM never sends.

Plain HTTP: with MOTO_INSECURE_PORT set, the same emulator also listens on that port, and
requests arriving there have `aws:SecureTransport` = false. The main port stands for AWS's HTTPS
endpoints (`aws:SecureTransport` = true): the test bed talks plain HTTP on loopback where every
SDK would reach AWS over TLS.

The request log: with MOTO_REQUEST_LOG set, every request the emulator answers is appended to
that file as one JSON line: method, path, query, the form's Action and the RoleName, PolicyArn or
PolicyName it names for query-protocol services, the X-Amz-Target operation for JSON-protocol ones
such as KMS, the signing access key, the HTTP status, and the authorization decisions taken for it
(`decisions`: action, resource, principal, result), and for an error answer its error code
(`error`). Tests count writes and decisions from it, so
"zero writes to that bucket" is the emulator's word, not the operator's own metrics.

EKS Pod Identity: the five pod identity association operations of EKS and EKS Auth's
AssumeRoleForPodIdentity are answered by a fake (tests/testbed/eks_pod_identity.py), routed by
path before moto's own routes, with the same signature check, authorization and request log.

Usage is that of `moto_server` (e.g. `moto_launcher.py -H 127.0.0.1 -p 5000`).
"""

import os
import sys
import threading
from urllib.parse import parse_qsl, quote

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import authorization  # noqa: E402
import eks_pod_identity  # noqa: E402
import web_identity  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from moto.core.authorization import ActionAuthenticatorMixin  # noqa: E402
from moto.core.responses import BaseResponse  # noqa: E402
from moto.iam import access_control  # noqa: E402
from moto.iam.access_control import CreateAccessKeyFailure, IAMRequestBase, PermissionResult  # noqa: E402
from moto.iam.models import IAMBackend  # noqa: E402
from moto.iam.responses import IamResponse  # noqa: E402
from moto.s3.models import FakeBucket  # noqa: E402


def check_action_permitted(self, resource):
    authorization.authorize(self, resource)


IAMRequestBase.check_action_permitted = check_action_permitted


def bucket_policy_not_decided_here(self, action, resource):
    """moto also evaluates bucket policies itself, before and after authorization, with its own
    evaluator; the simulator already decided with the bucket policy, so here it abstains."""
    return PermissionResult.NEUTRAL


FakeBucket.get_permission = bucket_policy_not_decided_here


def _require_boundary_policy(backend, permissions_boundary):
    """IAM refuses a permissions boundary that names no policy; moto would store it, and the
    role would then be bounded by nothing that exists."""
    if permissions_boundary and permissions_boundary not in backend.managed_policies:
        from moto.iam.exceptions import NotFoundException

        raise NotFoundException(f"Scope ARN: {permissions_boundary} does not exist or is not attachable.")


_create_role = IAMBackend.create_role
_put_role_permissions_boundary = IAMBackend.put_role_permissions_boundary


def create_role(self, role_name, assume_role_policy_document, path, permissions_boundary, *args, **kwargs):
    _require_boundary_policy(self, permissions_boundary)
    return _create_role(self, role_name, assume_role_policy_document, path, permissions_boundary, *args, **kwargs)


def put_role_permissions_boundary(self, role_name, permissions_boundary):
    _require_boundary_policy(self, permissions_boundary)
    return _put_role_permissions_boundary(self, role_name, permissions_boundary)


IAMBackend.create_role = create_role
IAMBackend.put_role_permissions_boundary = put_role_permissions_boundary


def get_account_authorization_details(self):
    """IAM's paging of GetAccountAuthorizationDetails (correction 4): the entities in one
    order, MaxItems at a time; the Marker is the offset of the next one."""
    from moto.core.responses import ActionResult
    from moto.iam.exceptions import ValidationError

    details = self.backend.get_account_authorization_details(self._get_param("Filter", []))
    lists = [
        ("UserDetailList", list(details["users"])),
        ("GroupDetailList", list(details["groups"])),
        ("RoleDetailList", list(details["roles"])),
        ("Policies", list(details["managed_policies"])),
    ]
    try:
        max_items = int(self._get_param("MaxItems") or 100)
        start = int(self._get_param("Marker") or 0)
    except ValueError:
        raise ValidationError("Invalid MaxItems or Marker")
    if not 1 <= max_items <= 1000:
        raise ValidationError("MaxItems must be between 1 and 1000")
    end = start + max_items
    result, offset = {}, 0
    for name, items in lists:
        result[name] = items[max(start - offset, 0) : max(end - offset, 0)]
        offset += len(items)
    result["IsTruncated"] = end < offset
    if end < offset:
        result["Marker"] = str(end)
    return ActionResult(result)


IamResponse.get_account_authorization_details = get_account_authorization_details

_authorize_normal_action = ActionAuthenticatorMixin._authenticate_and_authorize_normal_action


def authorize_normal_action(self, resource="*"):
    if self._get_action() == "AssumeRoleWithWebIdentity":
        # Unsigned on AWS too: the token is the credential, checked as STS checks it.
        form = {k: (v[0] if isinstance(v, list) and v else v) for k, v in self.querystring.items()}
        try:
            web_identity.verify(form, self.current_account, "aws")
        except web_identity.Refused as refused:
            raise authorization.denial("query", refused.message, refused.code, refused.status)
        return None
    return _authorize_normal_action(self, resource)


ActionAuthenticatorMixin._authenticate_and_authorize_normal_action = authorize_normal_action

_setup_class = BaseResponse.setup_class


def setup_class(self, request, full_url, headers, use_raw_body=False):
    raw = None
    if "werkzeug" in str(type(request)) and request.mimetype == "application/x-www-form-urlencoded":
        raw = request.get_data(cache=True)  # cached, so the form is still parsed from it
    _setup_class(self, request, full_url, headers, use_raw_body)
    if raw:
        self.raw_body = raw  # correction 1: only the signature check reads raw_body


BaseResponse.setup_class = setup_class


def create_aws_request(self):
    signed_headers = self._get_string_between("SignedHeaders=", ",", self._headers["Authorization"]).split(";")
    headers = self._create_headers_for_aws_request(signed_headers, self._headers)
    body = self._body if self._body is not None else b""
    path, _, query = self._path.partition("?")
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        path += "?" + "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in pairs)
    request = AWSRequest(method=self._method, url=path, data=body, headers=headers)
    request.context["timestamp"] = headers["X-Amz-Date"]
    return request


IAMRequestBase._create_aws_request = create_aws_request

_create_access_key = access_control.create_access_key


PARTITIONS = ["aws", "aws-cn", "aws-us-gov"]


def create_access_key(account_id, partition, access_key_id, headers):
    try:
        return _create_access_key(account_id, partition, access_key_id, headers)
    except CreateAccessKeyFailure:
        if access_key_id.startswith("AKIA"):
            if partition == "aws":
                raise
            return _create_access_key(account_id, "aws", access_key_id, headers)
        for other in PARTITIONS:
            if other == partition:
                continue
            try:
                key = _create_access_key(account_id, other, access_key_id, headers)
            except CreateAccessKeyFailure:
                continue
            key.partition = partition  # the role, and the request, are in this partition
            return key
        raise


access_control.create_access_key = create_access_key

def wrap_application(log_path, insecure_port):
    """Wraps moto's WSGI application: each request starts with a fresh authorization record
    (and its transport: plain HTTP on `insecure_port`), and, with `log_path`, is appended to
    the request log with the decisions taken for it."""
    import io
    import json
    import re

    from moto.server import DomainDispatcherApplication

    lock = threading.Lock()
    out = open(log_path, "a", buffering=1) if log_path else None
    dispatch = DomainDispatcherApplication.__call__

    def call(self, environ, start_response):
        authorization.begin_request(secure_transport=str(environ.get("SERVER_PORT")) != str(insecure_port))
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        form = {}
        if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            form = dict(parse_qsl(body.decode("utf-8", "replace")))
        query = environ.get("QUERY_STRING", "")
        action = form.get("Action") or dict(parse_qsl(query)).get("Action", "")
        # JSON-protocol services (KMS) name the operation in a header: TrentService.DescribeKey.
        action = action or environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2]
        # The IAM entity a query-protocol request names, so tests can count writes to it.
        target = form.get("RoleName") or form.get("PolicyArn") or form.get("PolicyName") or ""
        auth = environ.get("HTTP_AUTHORIZATION", "")
        key = auth.split("Credential=", 1)[1].split("/", 1)[0] if "Credential=" in auth else ""
        entry = {"method": environ["REQUEST_METHOD"], "path": environ.get("PATH_INFO", ""),
                 "query": query, "action": action, "target": target, "accessKey": key, "host": environ.get("HTTP_HOST", "")}

        def respond(status, headers, exc_info=None):
            entry["status"] = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        fake = eks_pod_identity.handle(environ, body)
        if fake is not None:
            # EKS pod identity associations and EKS Auth: the fake in eks_pod_identity.py.
            status, headers, payload, operation = fake
            entry["action"] = operation
            reasons = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 409: "Conflict"}
            respond(f"{status} {reasons.get(status, 'Error')}", headers + [("Content-Length", str(len(payload)))])
            result = [payload]
        else:
            result = dispatch(self, environ, respond)
        entry["decisions"] = authorization.take_decisions()
        if entry.get("status", 500) >= 400:
            # An error body is small and complete: keep its error code in the log.
            answer = b"".join(result)
            if hasattr(result, "close"):
                result.close()
            result = [answer]
            code = re.search(rb"<Code>([^<]+)</Code>|\"__type\":\s*\"([^\"]+)\"", answer)
            entry["error"] = (code.group(1) or code.group(2)).decode() if code else ""
        if out is not None:
            with lock:
                out.write(json.dumps(entry) + "\n")
        return result

    DomainDispatcherApplication.__call__ = call


def serve_insecure(host, port):
    """The same emulator on a second port, whose requests count as plain HTTP."""
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    server = make_server(host, port, DomainDispatcherApplication(create_backend_app), threaded=True)
    threading.Thread(target=server.serve_forever, name="insecure-port", daemon=True).start()


if __name__ == "__main__":
    from moto.server import main

    insecure_port = os.environ.get("MOTO_INSECURE_PORT")
    wrap_application(os.environ.get("MOTO_REQUEST_LOG"), insecure_port)
    if insecure_port:
        host = sys.argv[sys.argv.index("-H") + 1] if "-H" in sys.argv else "127.0.0.1"
        serve_insecure(host, int(insecure_port))

    main(sys.argv[1:])
