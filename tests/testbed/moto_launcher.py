"""Starts moto's server with five corrections, so that IAM enforcement behaves as on AWS, and
one convenience for a test bed with a single administrator.

1. moto 5.1/5.2 do not know the `Bool` condition operator and then ignore the condition,
   so `Deny ... Condition {"Bool": {"aws:SecureTransport": "false"}}` denies everything.
   Here `Bool` is evaluated, and `aws:SecureTransport` is "true": the test bed talks plain
   HTTP to the emulator on loopback, standing in for AWS, which every SDK reaches over HTTPS.
2. moto treats a statement whose condition is not met as an explicit Deny, whatever its
   Effect (moto/iam/access_control.py, IAMPolicyStatement.is_action_permitted). On AWS such
   a statement simply does not apply; here it is NEUTRAL.
3. With IAM enforcement on, moto demands a signature on every request and answers the unsigned
   sts:AssumeRoleWithWebIdentity with a 500. On AWS that call is unsigned by design (the web
   identity token is the credential), so it is exempt here. moto does not check the token or
   the role's trust policy: web_identity.verify does, as STS does, and a refusal is answered
   as STS's XML error.
4. moto checks signatures against a body it rebuilds: the form re-encoded by Python for
   form-encoded requests (its Flask request has consumed the raw body; aws-sdk-rust encodes
   some characters of policy documents differently), and the parsed parameters for requests
   without a body (REST GETs such as eks:DescribeCluster), and with the query string it
   received already percent-decoded (`prefix=files/` where the client signed `files%2F`).
   Valid signatures then fail. Here the signature is checked against the bytes that were sent,
   and the query is canonically re-encoded, as AWS does.
5. moto authorizes HeadBucket as `s3:HeadBucket` (moto/s3/responses.py, ACTION_MAP), an action
   that does not exist: no real policy grants it, so every HeadBucket under enforcement is
   denied. On AWS HeadBucket is authorized by `s3:ListBucket`; here it is too.

Conveniences for partitions: the test bed has one administrator, created in the `aws`
partition. A China or GovCloud account would have its own; here a user access key that is
unknown in the request's partition is looked up in `aws`, so the same credentials work in every
partition (the resources themselves, and their ARNs, stay in the partition of the request).
Likewise moto files the credentials of an unsigned AssumeRoleWithWebIdentity under `aws`, as it
cannot tell which partition's STS endpoint was meant; temporary credentials unknown in the
request's partition are looked up in the others and then act in the request's partition.

The request log: with MOTO_REQUEST_LOG set, every request the emulator answers is appended to
that file as one JSON line (method, path, query, the form's Action and the RoleName, PolicyArn or PolicyName it names
for query-protocol services, the X-Amz-Target operation for JSON-protocol ones such as KMS, the signing access key and the HTTP status), before any of the above runs. Tests count writes
from it, so "zero writes to that bucket" is the emulator's word, not the operator's own metrics.

Everything else is moto as released. Usage is that of `moto_server`
(e.g. `moto_launcher.py -H 127.0.0.1 -p 5000`).
"""

import sys
import uuid
from urllib.parse import parse_qsl, quote
from xml.sax.saxutils import escape

from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.responses import BaseResponse
from moto.iam import policy_conditions
from botocore.awsrequest import AWSRequest
from moto.iam import access_control
from moto.iam.access_control import CreateAccessKeyFailure, IAMPolicyStatement, IAMRequestBase, PermissionResult
from moto.s3 import responses as s3_responses
from werkzeug.exceptions import HTTPException

import web_identity

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

_authorize_normal_action = ActionAuthenticatorMixin._authenticate_and_authorize_normal_action


def authorize_normal_action(self, resource="*"):
    if self._get_action() == "AssumeRoleWithWebIdentity":
        # correction 3: unsigned on AWS too; the token and the trust policy are checked instead.
        form = {k: v[0] for k, v in self.querystring.items() if v}
        try:
            web_identity.verify(form, self.current_account, self.partition)
        except web_identity.Refused as refused:
            raise STSError(refused) from None
        return None
    return _authorize_normal_action(self, resource)


ActionAuthenticatorMixin._authenticate_and_authorize_normal_action = authorize_normal_action


class STSError(HTTPException):
    """A refusal in STS's own XML error shape (plain text, no CDATA: aws-sdk-rust reads no
    message from moto's CDATA-wrapped one)."""

    def __init__(self, refused):
        super().__init__()
        self.code = refused.status
        self.description = (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            f"<Error><Type>Sender</Type><Code>{escape(refused.code)}</Code>"
            f"<Message>{escape(refused.message)}</Message></Error>"
            f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
        )

_setup_class = BaseResponse.setup_class


def setup_class(self, request, full_url, headers, use_raw_body=False):
    raw = None
    if "werkzeug" in str(type(request)) and request.mimetype == "application/x-www-form-urlencoded":
        raw = request.get_data(cache=True)  # cached, so the form is still parsed from it
    _setup_class(self, request, full_url, headers, use_raw_body)
    if raw:
        self.raw_body = raw  # correction 4: only the signature check reads raw_body


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

# correction 5: HeadBucket is authorized by s3:ListBucket, as on AWS.
s3_responses.ACTION_MAP["BUCKET"]["HEAD"]["DEFAULT"] = "ListBucket"

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

def log_requests(path):
    """Wraps moto's WSGI application so that every request is appended to `path`."""
    import io
    import json
    import threading

    from moto.server import DomainDispatcherApplication

    lock = threading.Lock()
    out = open(path, "a", buffering=1)
    dispatch = DomainDispatcherApplication.__call__

    def call(self, environ, start_response):
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
            with lock:
                out.write(json.dumps(entry) + "\n")
            return start_response(status, headers, exc_info)

        return dispatch(self, environ, respond)

    DomainDispatcherApplication.__call__ = call


if __name__ == "__main__":
    import os

    from moto.server import main

    if os.environ.get("MOTO_REQUEST_LOG"):
        log_requests(os.environ["MOTO_REQUEST_LOG"])

    main(sys.argv[1:])
