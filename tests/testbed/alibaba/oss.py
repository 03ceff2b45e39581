"""FAKE: Alibaba Cloud Object Storage Service (OSS), for the test bed: a WSGI application.

This is a hand-written fake, not an emulator: no OSS emulator exists to run here. It answers the
calls bucketwire's operator and Milvus make, in the wire format of Alibaba's official Python SDK
alibabacloud-oss-v2 1.4.1 (its models/ and operations/ are the authority for request and answer
shapes) and, for the S3-compatible API Milvus uses, of botocore's S3 model. Its wire format is
pinned by tests/testbed/alibaba/oss_wire_test.py, which drives it with both SDKs. OSS.md beside
this file has the operation -> RAM action table with sources.

Mounting: `OSSFake(principals, insecure_ports={port})` is a WSGI application. Serve it on two
ports of 127.0.0.1: requests that arrive on a port in `insecure_ports` count as plain HTTP
(`acs:SecureTransport` = false), all others stand for OSS's HTTPS endpoints (`true`), as
tests/testbed/moto_launcher.py's MOTO_INSECURE_PORT does for AWS. `serve()` does that. Clients
keep the real OSS host names (virtual-host style) and reach the fake as an HTTP proxy: the fake
answers absolute-form request targets (`GET http://<bucket>.oss-cn-hangzhou.aliyuncs.com/key`).

Hosts: `<bucket>.oss-<region>[-internal].aliyuncs.com` and `<bucket>.s3.oss-<region>[-internal].aliyuncs.com`
for buckets, `oss-<region>[-internal].aliyuncs.com` / `s3.oss-<region>.aliyuncs.com` for the
service (ListBuckets). Path-style requests (a bucket in the path of a service host) are refused
with SecondLevelDomainForbidden, as OSS does (milvus-io/milvus#26884). A bucket addressed through
another region's endpoint is refused with AccessDenied naming the right Endpoint.

Interface contract (implemented by the RAM/STS fake, tests/testbed/alibaba/; test scaffolding in
oss_wire_test.py):

    class Principals:
        def caller(self, access_key_id: str, security_token: str | None) -> Caller | None
            # None: the AccessKey ID is unknown (InvalidAccessKeyId). For STS credentials the
            # token must be checked here (raise CredentialRefused("InvalidSecurityToken" or
            # "SecurityTokenExpired", message) to refuse); for a long-term key a token is ignored.

    class Caller:
        account_id: str           # UID of the Alibaba Cloud account the identity belongs to
        arn: str                  # acs:ram::<uid>:root | acs:ram::<uid>:user/<name> | acs:ram::<uid>:assumed-role/<role>/<session>
        access_key_secret: str    # the signing secret: the fake verifies signatures with it
        principal_type: str       # "Account" | "SubUser" | "AssumedRole" (AuthPrincipalType in AccessDeniedDetail)
        principal_ids: list[str]  # what a bucket policy's Principal may name for this caller: the
                                  # account UID for the root, the RAM user's UID, the assumed-role
                                  # ARN `arn:sts::<uid>:assumed-role/<role>/<session>` for a role
        def allows(self, action: str, resource: str, context: dict) -> "Allow" | "Deny" | "ImplicitDeny"
            # the identity side (RAM policies of the user or role, STS session policy); an
            # account's root answers "Allow" to everything on its own account's resources.

Authorization, per request, as OSS documents it (https://www.alibabacloud.com/help/en/oss/user-guide/how-oss-works-with-ram):
the action of the operation (OSS.md) on `acs:oss:*:<bucket owner uid>:<bucket>` or
`.../<bucket>/<key>`, with the context acs:SecureTransport, acs:SourceIp, acs:CurrentTime and, for
listings, oss:Prefix / oss:Delimiter. The caller's identity decision and the bucket policy's
(evaluated for the caller's principal_ids; `Principal: ["*"]` with a Condition binds the owner
too) combine: an explicit Deny in either refuses; otherwise an identity Allow of the bucket
owner's account, a bucket policy Allow (which grants to other accounts' principals too:
cross-account), or the bucket ACL (public-read: GetObject, ListObjects; public-read-write: also
writes; ignored while BlockPublicAccess is on) allows; else an implicit deny. Refusals are
AccessDenied 403 with OSS's AccessDeniedDetail (AuthAction, NoPermissionType, PolicyType,
AuthPrincipal*), EC and RecommendDoc. Bucket policies are evaluated by oss_policy.evaluate, or by
the `policy_evaluator` given (tests/testbed/alibaba/ram_policy.py's, once it exists).

What it models: buckets (PutBucket: x-oss-acl, CreateBucketConfiguration StorageClass /
DataRedundancyType, InvalidBucketName, BucketAlreadyExists 409 for another account, 200 with the
ACL updated for the owner, as https://help.aliyun.com/document_detail/31959.html documents), GetBucketInfo,
GetBucketLocation, DeleteBucket (BucketNotEmpty 409 while objects, versions, delete markers or
multipart uploads remain), Put/GetBucketAcl, Put/Get/DeleteBucketPublicAccessBlock,
Put/Get/DeleteBucketEncryption (AES256, KMS with KMSMasterKeyID, SM4;
NoSuchServerSideEncryptionRule), Put/Get/DeleteBucketPolicy (NoSuchBucketPolicy), Put/GetBucketVersioning,
Put/Get/DeleteBucketTags, ListObjects (v1 and v2: prefix, delimiter, max-keys, marker /
continuation-token / start-after, encoding-type=url), ListObjectVersions, ListMultipartUploads,
ListBuckets; objects (PutObject, GetObject with Range -> 206, HeadObject, DeleteObject with
versionId, DeleteMultipleObjects, InitiateMultipartUpload, UploadPart, CompleteMultipartUpload,
AbortMultipartUpload, ListParts), in memory, with versioning as OSS documents it (Enabled: a new
version id per write, DELETE adds a delete marker; Suspended: writes replace the `null` version,
DELETE leaves a `null` delete marker; DELETE ?versionId removes that version for good). Native
answers carry x-oss-request-id, x-oss-version-id, x-oss-hash-crc64ecma (CRC-64/XZ, which the SDK
checks); S3 answers carry the x-amz-* equivalents. Content-MD5, when sent, is checked (InvalidDigest).

Conditional writes: native `x-oss-forbid-overwrite: true` on PutObject / InitiateMultipartUpload /
CompleteMultipartUpload refuses an existing key with 409 FileAlreadyExists, and is ignored in a
versioned (Enabled or Suspended) bucket (both as alibabacloud-oss-go-sdk-v2's ForbidOverwrite
documents). Native PutObject with If-Match / If-None-Match / If-Modified-Since /
If-Unmodified-Since is refused 400 NotImplemented with <Header>, as OSS documents
(https://help.aliyun.com/en/oss/user-guide/0017-00000245). On the S3-compatible API,
`If-None-Match: *` answers 412 PreconditionFailed when the key exists (`s3_if_none_match=
"precondition"`, the default, as S3 does). Whether real OSS's S3-compatible API honours it is
UNVERIFIED: no OSS page says it does, 0017-00000245 says PutObject does not implement the
header natively, and milvus-storage uses x-oss-forbid-overwrite rather than If-None-Match for
aliyun; `s3_if_none_match="not-implemented"` makes the S3 API answer like the native one.

Signatures (oss_sig.py): OSS V4 for the native API, AWS SigV4 for the S3 API, both verified
against the raw request; unknown keys are InvalidAccessKeyId, bad signatures SignatureDoesNotMatch.
aws-chunked uploads are refused (OSS wants the signed streaming variant; milvus-storage sets
requestChecksumCalculation=WHEN_REQUIRED for OSS).

The request log: with `request_log` (default: the env var OSS_FAKE_REQUEST_LOG) every request is
appended to that file as one JSON line: time, method, host, path, query, protocol ("oss" or "s3"),
operation, accessKeyId, caller (ARN), secure, status, error (code), and decisions (action,
resource, identity, bucketPolicy, acl, result) — so tests can count calls, writes and refusals.

Not modelled: OSS signature V1/V2 and presigned URLs, object ACLs, tagging and symlinks,
CopyObject / UploadPartCopy, AppendObject, lifecycle, CORS, referer, logging, WORM, replication,
server-side encryption of the bytes (the rule is kept and reported, objects are stored as sent),
KMS key existence, resource groups, bucket quotas (TooManyBuckets), RAM's implicit grants to
services, rate limits.
"""

import base64
import datetime
import hashlib
import json
import os
import re
import secrets
import sys
import threading
import uuid
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import oss_policy  # noqa: E402
import oss_sig  # noqa: E402

REQUEST_LOG_ENV = "OSS_FAKE_REQUEST_LOG"
MIN_PART_SIZE = 100 * 1024  # OSS: every part but the last is at least 100 KB
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
HOST = re.compile(
    r"^(?:(?P<bucket>[a-z0-9][a-z0-9-]*[a-z0-9])\.)?(?P<s3>s3\.)?oss-(?P<region>[a-z0-9-]+?)(?P<internal>-internal)?\.aliyuncs\.com$"
)
ACLS = ("private", "public-read", "public-read-write")
STORAGE_CLASSES = ("Standard", "IA", "Archive", "ColdArchive", "DeepColdArchive")
REASONS = {200: "OK", 204: "No Content", 206: "Partial Content", 304: "Not Modified", 400: "Bad Request",
           403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
           411: "Length Required", 412: "Precondition Failed", 416: "Requested Range Not Satisfiable",
           500: "Internal Server Error", 501: "Not Implemented"}

# Operation -> the RAM action OSS authorizes it as (sources in OSS.md).
ACTIONS = {
    "ListBuckets": "oss:ListBuckets",
    "PutBucket": "oss:PutBucket",
    "GetBucketInfo": "oss:GetBucketInfo",
    "HeadBucket": "oss:GetBucketInfo",
    "GetBucketLocation": "oss:GetBucketLocation",
    "DeleteBucket": "oss:DeleteBucket",
    "PutBucketAcl": "oss:PutBucketAcl",
    "GetBucketAcl": "oss:GetBucketAcl",
    "PutBucketPublicAccessBlock": "oss:PutBucketPublicAccessBlock",
    "GetBucketPublicAccessBlock": "oss:GetBucketPublicAccessBlock",
    "DeleteBucketPublicAccessBlock": "oss:DeleteBucketPublicAccessBlock",
    "PutBucketEncryption": "oss:PutBucketEncryption",
    "GetBucketEncryption": "oss:GetBucketEncryption",
    "DeleteBucketEncryption": "oss:DeleteBucketEncryption",
    "PutBucketPolicy": "oss:PutBucketPolicy",
    "GetBucketPolicy": "oss:GetBucketPolicy",
    "DeleteBucketPolicy": "oss:DeleteBucketPolicy",
    "PutBucketVersioning": "oss:PutBucketVersioning",
    "GetBucketVersioning": "oss:GetBucketVersioning",
    "PutBucketTags": "oss:PutBucketTagging",
    "GetBucketTags": "oss:GetBucketTagging",
    "DeleteBucketTags": "oss:DeleteBucketTagging",
    "ListObjects": "oss:ListObjects",
    "ListObjectsV2": "oss:ListObjects",
    "ListObjectVersions": "oss:ListObjectVersions",
    "ListMultipartUploads": "oss:ListMultipartUploads",
    "PutObject": "oss:PutObject",
    "GetObject": "oss:GetObject",
    "HeadObject": "oss:GetObject",
    "DeleteObject": "oss:DeleteObject",
    "DeleteMultipleObjects": "oss:DeleteObject",
    "InitiateMultipartUpload": "oss:PutObject",
    "UploadPart": "oss:PutObject",
    "CompleteMultipartUpload": "oss:PutObject",
    "AbortMultipartUpload": "oss:AbortMultipartUpload",
    "ListParts": "oss:ListParts",
}
# With ?versionId, reads and deletes of one version are their own actions.
VERSION_ACTIONS = {"GetObject": "oss:GetObjectVersion", "HeadObject": "oss:GetObjectVersion", "DeleteObject": "oss:DeleteObjectVersion"}
READS = {"oss:GetObject", "oss:ListObjects"}
WRITES = {"oss:PutObject", "oss:DeleteObject", "oss:AbortMultipartUpload", "oss:ListParts", "oss:ListMultipartUploads"}


class CredentialRefused(Exception):
    """Raised by a Principals implementation to refuse credentials it knows (e.g. a bad STS token)."""

    def __init__(self, code, message, status=403):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class Failure(Exception):
    """An OSS error answer: HTTP status, Code, Message and extra XML elements."""

    def __init__(self, status, code, message, extra=None, ec=None, headers=None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.extra = extra or {}
        self.ec = ec
        self.headers = headers or []


def no_such_bucket(name):
    return Failure(404, "NoSuchBucket", "The specified bucket does not exist.", {"BucketName": name})


def no_such_key(key, extra_headers=None):
    return Failure(404, "NoSuchKey", "The specified key does not exist.", {"Key": key}, headers=extra_headers)


def malformed(message="The XML you provided was not well-formed or did not validate against our published schema."):
    return Failure(400, "MalformedXML", message)


# --- CRC-64/XZ (what OSS calls crc64ecma; checked by the SDK) -----------------------------------

_CRC_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0xC96C5795D7870F42 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc64(data, crc=0):
    crc ^= 0xFFFFFFFFFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF


# --- state ------------------------------------------------------------------------------------


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _iso(ts):
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _http_date(ts):
    return ts.strftime("%a, %d %b %Y %H:%M:%S GMT")


def _version_id():
    return base64.urlsafe_b64encode(b"\x08\x01" + secrets.token_bytes(30)).decode().rstrip("=")


class Version:
    def __init__(self, key, version_id, data=None, content_type=None, meta=None, etag=None, object_type="Normal", delete_marker=False, owner=""):
        self.key = key
        self.version_id = version_id
        self.data = data
        self.content_type = content_type or "application/octet-stream"
        self.meta = meta or {}
        self.delete_marker = delete_marker
        self.last_modified = _now()
        self.object_type = object_type
        self.owner = owner
        if data is not None:
            self.etag = etag or '"' + hashlib.md5(data).hexdigest().upper() + '"'
            self.crc = str(crc64(data))


class Upload:
    def __init__(self, key, upload_id, content_type, meta, forbid_overwrite):
        self.key = key
        self.upload_id = upload_id
        self.content_type = content_type
        self.meta = meta
        self.forbid_overwrite = forbid_overwrite
        self.initiated = _now()
        self.parts = {}  # number -> (etag, data, last_modified)


class Bucket:
    def __init__(self, name, owner, region, acl, storage_class, redundancy):
        self.name = name
        self.owner = owner
        self.region = region
        self.acl = acl
        self.storage_class = storage_class
        self.redundancy = redundancy
        self.created = _now()
        self.block_public_access = None
        self.encryption = None  # {"SSEAlgorithm": ..., "KMSMasterKeyID": ..., "KMSDataEncryption": ...}
        self.policy = None  # the document as sent
        self.versioning = None  # None | "Enabled" | "Suspended"
        self.tags = []  # [(key, value)]
        self.objects = {}  # key -> [Version], oldest first
        self.uploads = {}  # upload id -> Upload

    def current(self, key):
        versions = self.objects.get(key)
        return versions[-1] if versions else None

    def live(self, key):
        cur = self.current(key)
        return cur if cur is not None and not cur.delete_marker else None

    def empty(self):
        return not any(self.objects.values()) and not self.uploads


# --- XML --------------------------------------------------------------------------------------


def _xml(root, children):
    """<root> with children: a list of (tag, value) where value is str, bool, int, None (empty
    element), or a list of (tag, value) pairs (nested)."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n', _element(root, children)]
    return "".join(out).encode()


def _element(tag, value):
    if value is None:
        return f"<{tag}/>"
    if isinstance(value, bool):
        value = "true" if value else "false"
    if isinstance(value, list):
        return f"<{tag}>" + "".join(_element(t, v) for t, v in value) + f"</{tag}>"
    return f"<{tag}>{escape(str(value))}</{tag}>"


def _parse_xml(body, root):
    try:
        tree = ET.fromstring(body)
    except ET.ParseError:
        raise malformed() from None
    if tree.tag.split("}")[-1] != root:
        raise malformed(f"The root element must be {root}.")
    return tree


def _text(node, path, default=None):
    # Tolerates S3's namespace on the elements.
    found = node.find(path)
    if found is None:
        parts = path.split("/")
        found = node
        for part in parts:
            nxt = None
            for child in list(found):
                if child.tag.split("}")[-1] == part:
                    nxt = child
                    break
            if nxt is None:
                return default
            found = nxt
    return found.text if found.text is not None else ""


def _children(node, name):
    return [c for c in list(node) if c.tag.split("}")[-1] == name]


# --- the application --------------------------------------------------------------------------


class Request:
    """What the fake knows about one request."""

    def __init__(self, environ, body, insecure_ports):
        self.environ = environ
        self.body = body
        self.method = environ["REQUEST_METHOD"].upper()
        target = environ.get("REQUEST_URI") or environ.get("RAW_URI") or (quote(environ.get("PATH_INFO", "")) + ("?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else ""))
        if target.startswith(("http://", "https://")):
            parts = urlsplit(target)
            target = parts.path + ("?" + parts.query if parts.query else "")
        self.raw_path, _, self.raw_query = target.partition("?")
        self.raw_path = self.raw_path or "/"
        self.query = dict(parse_qsl(self.raw_query, keep_blank_values=True))
        headers = {}
        for name, value in environ.items():
            if name.startswith("HTTP_"):
                headers[name[5:].replace("_", "-").lower()] = value
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        if environ.get("CONTENT_LENGTH"):
            headers["content-length"] = environ["CONTENT_LENGTH"]
        self.headers = headers
        self.host = headers.get("host", "").lower()
        self.hostname = self.host.rsplit(":", 1)[0] if ":" in self.host and not self.host.endswith("]") else self.host
        self.secure = str(environ.get("SERVER_PORT")) not in {str(p) for p in insecure_ports}
        self.request_id = uuid.uuid4().hex[:24].upper()
        self.source_ip = environ.get("REMOTE_ADDR", "")


class OSSFake:
    def __init__(self, principals, insecure_ports=(), request_log=None, policy_evaluator=None, s3_if_none_match="precondition"):
        self.principals = principals
        self.insecure_ports = set(insecure_ports)
        self.evaluate_policy = policy_evaluator or oss_policy.evaluate
        self.s3_if_none_match = s3_if_none_match
        self.buckets = {}
        self.lock = threading.RLock()
        path = request_log if request_log is not None else os.environ.get(REQUEST_LOG_ENV)
        self._log = open(path, "a", buffering=1) if path else None
        self._log_lock = threading.Lock()

    # WSGI
    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        if not length and environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            body = environ["wsgi.input"].read()
        request = Request(environ, body, self.insecure_ports)
        entry = {"time": _iso(_now()), "method": request.method, "host": request.host, "path": request.raw_path,
                 "query": request.raw_query, "protocol": "", "operation": "", "accessKeyId": "", "caller": "",
                 "secure": request.secure, "decisions": []}
        request.log = entry
        try:
            status, headers, payload = self._handle(request)
            error = None
        except Failure as failure:
            status, headers, payload = self._error(request, failure)
            error = failure.code
        headers = [("x-oss-request-id", request.request_id), ("Date", _http_date(_now())), ("Server", "AliyunOSS")] + headers
        if getattr(request, "protocol", "oss") == "s3":
            headers.append(("x-amz-request-id", request.request_id))
        if request.method == "HEAD":
            headers.append(("Content-Length", str(getattr(request, "head_length", 0))))
            payload = b""
        else:
            headers.append(("Content-Length", str(len(payload))))
        entry["status"] = status
        if error:
            entry["error"] = error
        if self._log is not None:
            with self._log_lock:
                self._log.write(json.dumps(entry) + "\n")
        start_response(f"{status} {REASONS.get(status, 'Error')}", headers)
        return [payload]

    def _error(self, request, failure):
        children = [("Code", failure.code), ("Message", failure.message), ("RequestId", request.request_id), ("HostId", request.hostname)]
        for tag, value in failure.extra.items():
            children.append((tag, value))
        if failure.ec:
            children += [("EC", failure.ec), ("RecommendDoc", f"https://api.aliyun.com/troubleshoot?q={failure.ec}")]
        payload = _xml("Error", children)
        headers = [("Content-Type", "application/xml")] + failure.headers
        if failure.ec:
            headers.append(("x-oss-ec", failure.ec))
        if request.method == "HEAD":
            headers.append(("x-oss-err", base64.b64encode(payload).decode()))
        return failure.status, headers, payload

    # --- routing ------------------------------------------------------------------------------

    def _handle(self, request):
        m = HOST.match(request.hostname)
        if not m:
            raise Failure(400, "InvalidArgument", f"The host {request.hostname} is not an OSS endpoint this fake serves.")
        bucket_name, region = m.group("bucket"), m.group("region")
        request.region = region
        auth = request.headers.get("authorization", "")
        if auth.startswith("AWS4-"):
            request.protocol = "s3"
        elif auth:
            request.protocol = "oss"
        else:
            request.protocol = "s3" if m.group("s3") else "oss"
        request.log["protocol"] = request.protocol
        path = request.raw_path
        key = unquote(path[1:]) if len(path) > 1 else None
        if bucket_name is None and key is not None:
            raise Failure(403, "SecondLevelDomainForbidden", "Please use virtual hosted style to access.", ec="0003-00000803")
        operation = self._operation(request, bucket_name, key)
        request.operation = operation
        request.log["operation"] = operation
        caller = self._authenticate(request, bucket_name, key)
        handler = getattr(self, "_op_" + operation, None)
        if handler is None:
            raise Failure(501, "NotImplemented", f"{operation} is not implemented by this fake.")
        if bucket_name is None:
            return handler(request, caller)
        if operation == "PutBucket":
            return handler(request, caller, bucket_name)
        with self.lock:
            bucket = self.buckets.get(bucket_name)
        if bucket is None:
            raise no_such_bucket(bucket_name)
        if bucket.region != region:
            raise Failure(
                403, "AccessDenied",
                "The bucket you are attempting to access must be addressed using the specified endpoint. Please send all future requests to this endpoint.",
                {"Bucket": bucket_name, "Endpoint": f"oss-{bucket.region}.aliyuncs.com"}, ec="0003-00000001")
        return handler(request, caller, bucket, key) if key is not None else handler(request, caller, bucket)

    def _operation(self, request, bucket, key):
        q, method = request.query, request.method
        if bucket is None:
            if method == "GET":
                return "ListBuckets"
            raise Failure(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
        if key is None:
            subs = {
                "PUT": [("acl", "PutBucketAcl"), ("publicAccessBlock", "PutBucketPublicAccessBlock"), ("encryption", "PutBucketEncryption"),
                        ("policy", "PutBucketPolicy"), ("versioning", "PutBucketVersioning"), ("tagging", "PutBucketTags")],
                "GET": [("bucketInfo", "GetBucketInfo"), ("location", "GetBucketLocation"), ("acl", "GetBucketAcl"),
                        ("publicAccessBlock", "GetBucketPublicAccessBlock"), ("encryption", "GetBucketEncryption"),
                        ("policy", "GetBucketPolicy"), ("versioning", "GetBucketVersioning"), ("tagging", "GetBucketTags"),
                        ("versions", "ListObjectVersions"), ("uploads", "ListMultipartUploads")],
                "DELETE": [("publicAccessBlock", "DeleteBucketPublicAccessBlock"), ("encryption", "DeleteBucketEncryption"),
                           ("policy", "DeleteBucketPolicy"), ("tagging", "DeleteBucketTags")],
                "POST": [("delete", "DeleteMultipleObjects")],
            }.get(method, [])
            for sub, op in subs:
                if sub in q:
                    return op
            default = {"PUT": "PutBucket", "DELETE": "DeleteBucket", "HEAD": "HeadBucket"}
            if method == "GET":
                return "ListObjectsV2" if q.get("list-type") == "2" else "ListObjects"
            if method in default:
                return default[method]
            raise Failure(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
        if method == "PUT":
            if "uploadId" in q and "partNumber" in q:
                return "UploadPart"
            if request.headers.get("x-oss-copy-source") or request.headers.get("x-amz-copy-source"):
                return "CopyObject"
            for sub in ("acl", "tagging", "symlink", "append"):
                if sub in q:
                    return {"acl": "PutObjectAcl", "tagging": "PutObjectTagging", "symlink": "PutSymlink", "append": "AppendObject"}[sub]
            return "PutObject"
        if method == "GET":
            return "ListParts" if "uploadId" in q else "GetObject"
        if method == "HEAD":
            return "HeadObject"
        if method == "DELETE":
            return "AbortMultipartUpload" if "uploadId" in q else "DeleteObject"
        if method == "POST":
            if "uploads" in q:
                return "InitiateMultipartUpload"
            if "uploadId" in q:
                return "CompleteMultipartUpload"
            if "append" in q:
                return "AppendObject"
        raise Failure(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")

    # --- authentication and authorization -----------------------------------------------------

    def _authenticate(self, request, bucket, key):
        try:
            signed = oss_sig.parse(request.headers.get("authorization", ""), request.headers)
        except oss_sig.SignatureError as error:
            raise Failure(error.status, error.code, error.message, error.extra) from None
        if signed is None:
            return None  # anonymous
        request.log["accessKeyId"] = signed.access_key_id
        try:
            caller = self.principals.caller(signed.access_key_id, signed.security_token)
        except CredentialRefused as refused:
            raise Failure(refused.status, refused.code, refused.message) from None
        if caller is None:
            raise Failure(403, "InvalidAccessKeyId", "The OSS Access Key Id you provided does not exist in our records.",
                          {"OSSAccessKeyId": signed.access_key_id}, ec="0002-00000902")
        request.log["caller"] = caller.arn
        try:
            if signed.protocol == "oss":
                signed.verify(caller.access_key_secret, request.method, bucket, key, request.raw_query, request.body, request.region)
            else:
                signed.verify(caller.access_key_secret, request.method, request.raw_path, request.raw_query, request.body, request.host)
        except oss_sig.SignatureError as error:
            extra = dict(error.extra)
            if error.code == "SignatureDoesNotMatch":
                extra = {"OSSAccessKeyId": signed.access_key_id, **extra}
            raise Failure(error.status, error.code, error.message, extra) from None
        return caller

    def _context(self, request, extra=None):
        context = {
            "acs:SecureTransport": "true" if request.secure else "false",
            "acs:SourceIp": request.source_ip,
            "acs:CurrentTime": _iso(_now()),
        }
        context.update(extra or {})
        return context

    def _authorize(self, request, caller, action, owner, resource, bucket=None, extra_context=None):
        context = self._context(request, extra_context)
        identity = caller.allows(action, resource, context) if caller is not None else "ImplicitDeny"
        policy = "ImplicitDeny"
        if bucket is not None and bucket.policy:
            principal_ids = list(caller.principal_ids) if caller is not None else []
            policy = self.evaluate_policy(bucket.policy, action, resource, context, principal_ids)
        acl = "ImplicitDeny"
        if bucket is not None and not bucket.block_public_access:
            if (bucket.acl in ("public-read", "public-read-write") and action in READS) or (bucket.acl == "public-read-write" and action in WRITES):
                acl = "Allow"
        if "Deny" in (identity, policy):
            result = "ExplicitDeny"
        elif (identity == "Allow" and caller is not None and caller.account_id == owner) or policy == "Allow" or acl == "Allow":
            result = "Allow"
        else:
            result = "ImplicitDeny"
        request.log["decisions"].append({"action": action, "resource": resource, "identity": identity,
                                         "bucketPolicy": policy, "acl": acl, "result": result})
        if result == "Allow":
            return
        if caller is None:
            raise Failure(403, "AccessDenied", "You have no right to access this object because of bucket acl.", ec="0003-00000001")
        if result == "ExplicitDeny":
            if identity == "Deny" and policy == "Deny":
                policy_type, ec = "AccountLevelIdentityBasedPolicy", "0003-00000203"
            elif identity == "Deny":
                policy_type, ec = "AccountLevelIdentityBasedPolicy", "0003-00000201"
            else:
                policy_type, ec = "BucketPolicy", "0003-00000202"
            message = "Access denied by bucket policy." if policy == "Deny" else "Access denied by authorization policy."
        else:
            policy_type, ec = "AccountLevelIdentityBasedPolicy", "0003-00000001"
            message = f"You are forbidden to {action}."
        detail = [("PolicyType", policy_type), ("AuthPrincipalOwnerId", caller.account_id),
                  ("AuthPrincipalType", caller.principal_type), ("AuthPrincipalDisplayName", caller.arn),
                  ("NoPermissionType", "ExplicitDeny" if result == "ExplicitDeny" else "ImplicitDeny"), ("AuthAction", action)]
        raise Failure(403, "AccessDenied", message, {"AccessDeniedDetail": detail}, ec=ec)

    def _require(self, request, caller, bucket, key=None, action=None, extra_context=None):
        action = action or ACTIONS[request.operation]
        resource = f"acs:oss:*:{bucket.owner}:{bucket.name}" + (f"/{key}" if key is not None else "")
        self._authorize(request, caller, action, bucket.owner, resource, bucket, extra_context)

    # --- helpers -------------------------------------------------------------------------------

    def _pfx(self, request):
        return "x-amz-" if request.protocol == "s3" else "x-oss-"

    def _check_md5(self, request):
        md5 = request.headers.get("content-md5")
        if md5 is not None and base64.b64encode(hashlib.md5(request.body).digest()).decode() != md5.strip():
            raise Failure(400, "InvalidDigest", "The Content-MD5 you specified was invalid.", {"Content-MD5": md5})

    def _owner(self, account):
        return [("ID", account), ("DisplayName", account)]

    def _meta(self, request):
        meta = {}
        for name, value in request.headers.items():
            for prefix in ("x-oss-meta-", "x-amz-meta-"):
                if name.startswith(prefix):
                    meta[name[len(prefix):]] = value
        return meta

    # --- service ------------------------------------------------------------------------------

    def _op_ListBuckets(self, request, caller):
        if caller is None:
            raise Failure(403, "AccessDenied", "Anonymous access is forbidden for this operation.", ec="0003-00000001")
        self._authorize(request, caller, "oss:ListBuckets", caller.account_id, f"acs:oss:*:{caller.account_id}:*")
        prefix = request.query.get("prefix", "")
        with self.lock:
            mine = sorted((b for b in self.buckets.values() if b.owner == caller.account_id and b.name.startswith(prefix)), key=lambda b: b.name)
        if request.protocol == "s3":
            items = [("Bucket", [("Name", b.name), ("CreationDate", _iso(b.created))]) for b in mine]
            return 200, [("Content-Type", "application/xml")], _xml("ListAllMyBucketsResult", [("Owner", self._owner(caller.account_id)), ("Buckets", items)])
        items = [("Bucket", [("CreationDate", _iso(b.created)), ("ExtranetEndpoint", f"oss-{b.region}.aliyuncs.com"),
                             ("IntranetEndpoint", f"oss-{b.region}-internal.aliyuncs.com"), ("Location", f"oss-{b.region}"),
                             ("Name", b.name), ("Region", b.region), ("StorageClass", b.storage_class)]) for b in mine]
        children = [("Owner", self._owner(caller.account_id)), ("Buckets", items)]
        if prefix:
            children.insert(0, ("Prefix", prefix))
        return 200, [("Content-Type", "application/xml")], _xml("ListAllMyBucketsResult", children)

    # --- buckets ------------------------------------------------------------------------------

    def _op_PutBucket(self, request, caller, name):
        if caller is None:
            raise Failure(403, "AccessDenied", "Anonymous access is forbidden for this operation.", ec="0003-00000001")
        if not BUCKET_NAME.match(name):
            raise Failure(400, "InvalidBucketName", "The specified bucket is not valid.", {"BucketName": name})
        with self.lock:
            existing = self.buckets.get(name)
        # Authorized in the caller's own account (the name is global: another account's bucket of
        # that name is a conflict, not a resource of the caller's); the owner's bucket policy applies.
        mine = existing if existing is not None and existing.owner == caller.account_id else None
        self._authorize(request, caller, "oss:PutBucket", caller.account_id, f"acs:oss:*:{caller.account_id}:{name}", mine)
        acl = request.headers.get("x-oss-acl") or request.headers.get("x-amz-acl")
        if acl is not None and acl not in ACLS:
            raise Failure(400, "InvalidArgument", "no such bucket access control exists", {"ArgumentName": "x-oss-acl", "ArgumentValue": acl})
        storage_class, redundancy = "Standard", "LRS"
        if request.body and request.protocol == "oss":
            self._check_md5(request)
            tree = _parse_xml(request.body, "CreateBucketConfiguration")
            storage_class = _text(tree, "StorageClass") or "Standard"
            redundancy = _text(tree, "DataRedundancyType") or "LRS"
            if storage_class not in STORAGE_CLASSES:
                raise Failure(400, "InvalidArgument", f"Invalid storage class {storage_class}.", {"ArgumentName": "StorageClass", "ArgumentValue": storage_class})
            if redundancy not in ("LRS", "ZRS"):
                raise Failure(400, "InvalidArgument", f"Invalid data redundancy type {redundancy}.")
        with self.lock:
            existing = self.buckets.get(name)
            if existing is not None:
                if existing.owner != caller.account_id:
                    raise Failure(409, "BucketAlreadyExists", "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.", {"BucketName": name})
                # The owner again: OSS answers 200 and updates the bucket's metadata (its ACL).
                if acl is not None:
                    existing.acl = acl
                return 200, [("Location", f"/{name}")], b""
            self.buckets[name] = Bucket(name, caller.account_id, request.region, acl or "private", storage_class, redundancy)
        return 200, [("Location", f"/{name}")], b""

    def _op_HeadBucket(self, request, caller, bucket):
        self._require(request, caller, bucket)
        return 200, [("x-oss-bucket-region", bucket.region), ("x-amz-bucket-region", bucket.region)], b""

    def _op_GetBucketInfo(self, request, caller, bucket):
        self._require(request, caller, bucket)
        with self.lock:
            sse = [("SSEAlgorithm", "None")]
            if bucket.encryption:
                sse = [(k, bucket.encryption[k]) for k in ("SSEAlgorithm", "KMSMasterKeyID", "KMSDataEncryption") if bucket.encryption.get(k)]
            info = [
                ("AccessMonitor", "Disabled"), ("CreationDate", _iso(bucket.created)),
                ("ExtranetEndpoint", f"oss-{bucket.region}.aliyuncs.com"), ("IntranetEndpoint", f"oss-{bucket.region}-internal.aliyuncs.com"),
                ("Location", f"oss-{bucket.region}"), ("StorageClass", bucket.storage_class),
                ("TransferAcceleration", "Disabled"), ("CrossRegionReplication", "Disabled"), ("Name", bucket.name),
                ("ResourceGroupId", "rg-default-id"), ("DataRedundancyType", bucket.redundancy),
                ("Owner", self._owner(bucket.owner)), ("AccessControlList", [("Grant", bucket.acl)]),
                ("ServerSideEncryptionRule", sse), ("BucketPolicy", [("LogBucket", None), ("LogPrefix", None)]),
                ("BlockPublicAccess", bool(bucket.block_public_access)), ("Comment", None),
            ]
            if bucket.versioning:
                info.insert(12, ("Versioning", bucket.versioning))
        return 200, [("Content-Type", "application/xml")], _xml("BucketInfo", [("Bucket", info)])

    def _op_GetBucketLocation(self, request, caller, bucket):
        self._require(request, caller, bucket)
        return 200, [("Content-Type", "application/xml")], _xml("LocationConstraint", f"oss-{bucket.region}")

    def _op_DeleteBucket(self, request, caller, bucket):
        self._require(request, caller, bucket)
        with self.lock:
            if not bucket.empty():
                raise Failure(409, "BucketNotEmpty", "The bucket you tried to delete is not empty.", {"BucketName": bucket.name})
            self.buckets.pop(bucket.name, None)
        return 204, [], b""

    def _op_PutBucketAcl(self, request, caller, bucket):
        self._require(request, caller, bucket)
        acl = request.headers.get("x-oss-acl")
        if acl not in ACLS:
            raise Failure(400, "InvalidArgument", "no such bucket access control exists", {"ArgumentName": "x-oss-acl", "ArgumentValue": str(acl)})
        if acl != "private" and bucket.block_public_access:
            raise Failure(403, "AccessDenied", "Put public bucket acl is not allowed while BlockPublicAccess is enabled.")
        bucket.acl = acl
        return 200, [], b""

    def _op_GetBucketAcl(self, request, caller, bucket):
        self._require(request, caller, bucket)
        return 200, [("Content-Type", "application/xml")], _xml("AccessControlPolicy", [("Owner", self._owner(bucket.owner)), ("AccessControlList", [("Grant", bucket.acl)])])

    def _op_PutBucketPublicAccessBlock(self, request, caller, bucket):
        self._require(request, caller, bucket)
        self._check_md5(request)
        tree = _parse_xml(request.body, "PublicAccessBlockConfiguration")
        value = (_text(tree, "BlockPublicAccess") or "").strip().lower()
        if value not in ("true", "false"):
            raise malformed("BlockPublicAccess must be true or false.")
        bucket.block_public_access = value == "true"
        return 200, [], b""

    def _op_GetBucketPublicAccessBlock(self, request, caller, bucket):
        self._require(request, caller, bucket)
        return 200, [("Content-Type", "application/xml")], _xml("PublicAccessBlockConfiguration", [("BlockPublicAccess", bool(bucket.block_public_access))])

    def _op_DeleteBucketPublicAccessBlock(self, request, caller, bucket):
        self._require(request, caller, bucket)
        bucket.block_public_access = None
        return 204, [], b""

    def _op_PutBucketEncryption(self, request, caller, bucket):
        self._require(request, caller, bucket)
        self._check_md5(request)
        tree = _parse_xml(request.body, "ServerSideEncryptionRule")
        algorithm = _text(tree, "ApplyServerSideEncryptionByDefault/SSEAlgorithm")
        key_id = _text(tree, "ApplyServerSideEncryptionByDefault/KMSMasterKeyID")
        data_encryption = _text(tree, "ApplyServerSideEncryptionByDefault/KMSDataEncryption")
        if algorithm not in ("AES256", "KMS", "SM4"):
            raise Failure(400, "InvalidEncryptionAlgorithmError", "The Encryption request you specified is not valid. Supported value: AES256/KMS/SM4.")
        if key_id and algorithm != "KMS":
            raise Failure(400, "InvalidArgument", "KMSMasterKeyID is not applicable if the default sse algorithm is not KMS.")
        bucket.encryption = {"SSEAlgorithm": algorithm, "KMSMasterKeyID": key_id or None, "KMSDataEncryption": data_encryption or None}
        return 200, [], b""

    def _op_GetBucketEncryption(self, request, caller, bucket):
        self._require(request, caller, bucket)
        if not bucket.encryption:
            raise Failure(404, "NoSuchServerSideEncryptionRule", "The server side encryption configuration was not found.", {"BucketName": bucket.name})
        rule = [(k, bucket.encryption[k]) for k in ("SSEAlgorithm", "KMSMasterKeyID", "KMSDataEncryption") if bucket.encryption.get(k)]
        return 200, [("Content-Type", "application/xml")], _xml("ServerSideEncryptionRule", [("ApplyServerSideEncryptionByDefault", rule)])

    def _op_DeleteBucketEncryption(self, request, caller, bucket):
        self._require(request, caller, bucket)
        bucket.encryption = None
        return 204, [], b""

    def _op_PutBucketPolicy(self, request, caller, bucket):
        self._require(request, caller, bucket)
        try:
            document = oss_policy.parse(request.body)
        except oss_policy.PolicyError as error:
            raise Failure(400, "InvalidPolicyDocument", f"Invalid Policy: {error}") from None
        statements = document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]
        if any("Principal" not in s for s in statements):
            raise Failure(400, "InvalidPolicyDocument", "Invalid Policy: a bucket policy statement needs a Principal.")
        if document.get("Version") != "1":
            raise Failure(400, "InvalidPolicyDocument", "Invalid Policy: Version must be \"1\".")
        bucket.policy = request.body.decode("utf-8")
        return 200, [], b""

    def _op_GetBucketPolicy(self, request, caller, bucket):
        self._require(request, caller, bucket)
        if not bucket.policy:
            raise Failure(404, "NoSuchBucketPolicy", "The bucket policy does not exist.", {"BucketName": bucket.name})
        return 200, [("Content-Type", "application/json")], bucket.policy.encode()

    def _op_DeleteBucketPolicy(self, request, caller, bucket):
        self._require(request, caller, bucket)
        bucket.policy = None
        return 204, [], b""

    def _op_PutBucketVersioning(self, request, caller, bucket):
        self._require(request, caller, bucket)
        self._check_md5(request)
        tree = _parse_xml(request.body, "VersioningConfiguration")
        status = _text(tree, "Status")
        if status not in ("Enabled", "Suspended"):
            raise Failure(400, "IllegalVersioningConfigurationException", "The Versioning element must be specified.")
        bucket.versioning = status
        return 200, [], b""

    def _op_GetBucketVersioning(self, request, caller, bucket):
        self._require(request, caller, bucket)
        children = [("Status", bucket.versioning)] if bucket.versioning else []
        return 200, [("Content-Type", "application/xml")], _xml("VersioningConfiguration", children)

    def _op_PutBucketTags(self, request, caller, bucket):
        self._require(request, caller, bucket)
        self._check_md5(request)
        tree = _parse_xml(request.body, "Tagging")
        tags = []
        for tagset in _children(tree, "TagSet"):
            for tag in _children(tagset, "Tag"):
                k, v = _text(tag, "Key"), _text(tag, "Value", "")
                if not k or len(k) > 64 or len(v) > 128 or k.startswith(("aliyun", "acs:", "http://", "https://")):
                    raise Failure(400, "InvalidTag", f"The tag {k!r} is not valid.")
                tags.append((k, v))
        if len(tags) > 20:
            raise Failure(400, "BadRequest", "Bucket tags exceed the maximum of 20.")
        if len({k for k, _ in tags}) != len(tags):
            raise Failure(400, "InvalidTag", "Cannot provide multiple Tags with the same key.")
        bucket.tags = tags
        return 200, [], b""

    def _op_GetBucketTags(self, request, caller, bucket):
        self._require(request, caller, bucket)
        tags = [("Tag", [("Key", k), ("Value", v)]) for k, v in bucket.tags]
        return 200, [("Content-Type", "application/xml")], _xml("Tagging", [("TagSet", tags)])

    def _op_DeleteBucketTags(self, request, caller, bucket):
        self._require(request, caller, bucket)
        only = request.query.get("tagging", "")
        if only:
            drop = set(only.split(","))
            bucket.tags = [(k, v) for k, v in bucket.tags if k not in drop]
        else:
            bucket.tags = []
        return 204, [], b""

    # --- listings -----------------------------------------------------------------------------

    def _max(self, request, name, default=100, limit=1000):
        raw = request.query.get(name, str(default))
        try:
            value = int(raw)
        except ValueError:
            raise Failure(400, "InvalidArgument", f"Argument {name} must be an integer.", {"ArgumentName": name, "ArgumentValue": raw}) from None
        if value < 0 or value > limit:
            raise Failure(400, "InvalidArgument", f"Argument {name} must be between 0 and {limit}.", {"ArgumentName": name, "ArgumentValue": raw})
        return value

    def _list_keys(self, bucket, prefix, delimiter, after, limit):
        """(entries, prefixes, truncated, last): entries (key, Version) after `after` in key order."""
        with self.lock:
            keys = sorted(k for k, vs in bucket.objects.items() if vs and not vs[-1].delete_marker and k.startswith(prefix) and k > after)
            live = {k: bucket.objects[k][-1] for k in keys}
        entries, prefixes, count, last = [], [], 0, None
        seen = set()
        for k in keys:
            if count >= limit:
                return entries, prefixes, True, last
            if delimiter:
                cut = k.find(delimiter, len(prefix))
                if cut >= 0:
                    p = k[: cut + len(delimiter)]
                    if p not in seen:
                        seen.add(p)
                        prefixes.append(p)
                        count += 1
                    last = k
                    continue
            entries.append((k, live[k]))
            count += 1
            last = k
        return entries, prefixes, False, last

    def _contents(self, v, url, owner=None):
        children = [("Key", url(v.key)), ("LastModified", _iso(v.last_modified)), ("ETag", v.etag), ("Type", v.object_type),
                    ("Size", len(v.data)), ("StorageClass", "Standard")]
        if owner:
            children.append(("Owner", self._owner(owner)))
        return ("Contents", children)

    def _op_ListObjectsV2(self, request, caller, bucket):
        q = request.query
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        self._require(request, caller, bucket, extra_context={"oss:Prefix": prefix, "oss:Delimiter": delimiter})
        limit = self._max(request, "max-keys")
        encoded = q.get("encoding-type") == "url"
        url = (lambda s: quote(s, safe="")) if encoded else (lambda s: s)
        after = q.get("start-after", "")
        token = q.get("continuation-token")
        if token:
            try:
                after = max(after, base64.urlsafe_b64decode(token.encode()).decode())
            except Exception:
                raise Failure(400, "InvalidArgument", "The continuation token provided is incorrect.", {"ArgumentName": "continuation-token"}) from None
        entries, prefixes, truncated, last = self._list_keys(bucket, prefix, delimiter, after, limit)
        fetch_owner = q.get("fetch-owner") == "true"
        children = [("Name", bucket.name), ("Prefix", url(prefix)), ("MaxKeys", limit)]
        if q.get("start-after"):
            children.append(("StartAfter", url(q["start-after"])))
        if token:
            children.append(("ContinuationToken", token))
        if delimiter:
            children.append(("Delimiter", url(delimiter)))
        if encoded:
            children.append(("EncodingType", "url"))
        children.append(("IsTruncated", truncated))
        if truncated:
            children.append(("NextContinuationToken", base64.urlsafe_b64encode(last.encode()).decode()))
        children.append(("KeyCount", len(entries) + len(prefixes)))
        children += [self._contents(v, url, bucket.owner if fetch_owner else None) for _, v in entries]
        children += [("CommonPrefixes", [("Prefix", url(p))]) for p in prefixes]
        return 200, [("Content-Type", "application/xml")], _xml("ListBucketResult", children)

    def _op_ListObjects(self, request, caller, bucket):
        q = request.query
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        self._require(request, caller, bucket, extra_context={"oss:Prefix": prefix, "oss:Delimiter": delimiter})
        limit = self._max(request, "max-keys")
        encoded = q.get("encoding-type") == "url"
        url = (lambda s: quote(s, safe="")) if encoded else (lambda s: s)
        marker = q.get("marker", "")
        entries, prefixes, truncated, last = self._list_keys(bucket, prefix, delimiter, marker, limit)
        children = [("Name", bucket.name), ("Prefix", url(prefix)), ("Marker", url(marker)), ("MaxKeys", limit),
                    ("Delimiter", url(delimiter)), ("IsTruncated", truncated)]
        if encoded:
            children.append(("EncodingType", "url"))
        if truncated:
            children.append(("NextMarker", url(last)))
        children += [self._contents(v, url, bucket.owner) for _, v in entries]
        children += [("CommonPrefixes", [("Prefix", url(p))]) for p in prefixes]
        return 200, [("Content-Type", "application/xml")], _xml("ListBucketResult", children)

    def _op_ListObjectVersions(self, request, caller, bucket):
        q = request.query
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        self._require(request, caller, bucket, extra_context={"oss:Prefix": prefix, "oss:Delimiter": delimiter})
        limit = self._max(request, "max-keys")
        encoded = q.get("encoding-type") == "url"
        url = (lambda s: quote(s, safe="")) if encoded else (lambda s: s)
        key_marker, vid_marker = q.get("key-marker", ""), q.get("version-id-marker", "")
        with self.lock:
            rows = []
            for k in sorted(bucket.objects):
                if not k.startswith(prefix):
                    continue
                versions = bucket.objects[k]
                for i, v in enumerate(reversed(versions)):
                    rows.append((k, v, i == 0))
        # Skip up to and including the markers.
        if key_marker:
            if vid_marker:
                index = next((i for i, (k, v, _) in enumerate(rows) if k == key_marker and v.version_id == vid_marker), None)
                rows = rows[index + 1:] if index is not None else [r for r in rows if r[0] > key_marker]
            else:
                rows = [r for r in rows if r[0] > key_marker]
        items, prefixes, seen, truncated, next_key, next_vid = [], [], set(), False, None, None
        count = 0
        for k, v, latest in rows:
            if delimiter:
                cut = k.find(delimiter, len(prefix))
                if cut >= 0:
                    p = k[: cut + len(delimiter)]
                    if p not in seen:
                        if count >= limit:
                            truncated = True
                            break
                        seen.add(p)
                        prefixes.append(p)
                        count += 1
                    continue
            if count >= limit:
                truncated = True
                break
            count += 1
            next_key, next_vid = k, v.version_id
            if v.delete_marker:
                items.append(("DeleteMarker", [("Key", url(k)), ("VersionId", v.version_id), ("IsLatest", latest),
                                               ("LastModified", _iso(v.last_modified)), ("Owner", self._owner(bucket.owner))]))
            else:
                items.append(("Version", [("Key", url(k)), ("VersionId", v.version_id), ("IsLatest", latest),
                                          ("LastModified", _iso(v.last_modified)), ("ETag", v.etag), ("Type", v.object_type),
                                          ("Size", len(v.data)), ("StorageClass", "Standard"), ("Owner", self._owner(bucket.owner))]))
        children = [("Name", bucket.name), ("Prefix", url(prefix)), ("KeyMarker", url(key_marker)), ("VersionIdMarker", vid_marker),
                    ("MaxKeys", limit), ("Delimiter", url(delimiter)), ("IsTruncated", truncated)]
        if encoded:
            children.append(("EncodingType", "url"))
        if truncated and next_key is not None:
            children += [("NextKeyMarker", url(next_key)), ("NextVersionIdMarker", next_vid)]
        children += items
        children += [("CommonPrefixes", [("Prefix", url(p))]) for p in prefixes]
        return 200, [("Content-Type", "application/xml")], _xml("ListVersionsResult", children)

    def _op_ListMultipartUploads(self, request, caller, bucket):
        q = request.query
        prefix = q.get("prefix", "")
        self._require(request, caller, bucket)
        limit = self._max(request, "max-uploads", 1000, 1000)
        encoded = q.get("encoding-type") == "url"
        url = (lambda s: quote(s, safe="")) if encoded else (lambda s: s)
        key_marker, id_marker = q.get("key-marker", ""), q.get("upload-id-marker", "")
        with self.lock:
            uploads = sorted((u for u in bucket.uploads.values() if u.key.startswith(prefix)), key=lambda u: (u.key, u.initiated, u.upload_id))
        if key_marker:
            uploads = [u for u in uploads if u.key > key_marker or (u.key == key_marker and id_marker and u.upload_id > id_marker)]
        truncated = len(uploads) > limit
        page = uploads[:limit]
        children = [("Bucket", bucket.name), ("KeyMarker", url(key_marker)), ("UploadIdMarker", id_marker)]
        children += [("NextKeyMarker", url(page[-1].key) if truncated and page else ""), ("NextUploadIdMarker", page[-1].upload_id if truncated and page else "")]
        children += [("Delimiter", url(q.get("delimiter", ""))), ("Prefix", url(prefix)), ("MaxUploads", limit), ("IsTruncated", truncated)]
        if encoded:
            children.append(("EncodingType", "url"))
        children += [("Upload", [("Key", url(u.key)), ("UploadId", u.upload_id), ("StorageClass", "Standard"), ("Initiated", _iso(u.initiated))]) for u in page]
        return 200, [("Content-Type", "application/xml")], _xml("ListMultipartUploadsResult", children)

    # --- objects ------------------------------------------------------------------------------

    def _conditional_put(self, request, bucket, key):
        """The conditional-write headers of a PutObject, as OSS answers them (see the module docstring)."""
        conditionals = [h for h in ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since") if h in request.headers]
        if conditionals:
            if request.protocol == "s3" and self.s3_if_none_match == "precondition" and conditionals == ["if-none-match"]:
                if request.headers["if-none-match"].strip() != "*":
                    raise Failure(501, "NotImplemented", "A header you provided implies functionality that is not implemented.", {"Header": "If-None-Match"})
                if bucket.live(key) is not None:
                    raise Failure(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold.", {"Condition": "If-None-Match"})
            else:
                header = {"if-match": "If-Match", "if-none-match": "If-None-Match", "if-modified-since": "If-Modified-Since", "if-unmodified-since": "If-Unmodified-Since"}[conditionals[0]]
                raise Failure(400, "NotImplemented", "A header you provided implies functionality that is not implemented.", {"Header": header})
        self._forbid_overwrite(request, bucket, key)

    def _forbid_overwrite(self, request, bucket, key):
        value = request.headers.get("x-oss-forbid-overwrite")
        if value is None:
            return
        if value.lower() not in ("true", "false"):
            raise Failure(400, "InvalidArgument", "x-oss-forbid-overwrite must be true or false.", ec="0017-00000279")
        if value.lower() == "true" and bucket.versioning is None and bucket.live(key) is not None:
            raise Failure(409, "FileAlreadyExists", "The object you specified already exists and can not be overwritten.")

    def _store(self, bucket, version):
        """A new current version of version.key, with OSS's versioning semantics. Under the lock."""
        versions = bucket.objects.setdefault(version.key, [])
        if bucket.versioning == "Enabled":
            version.version_id = _version_id()
        else:
            version.version_id = "null"
            versions[:] = [v for v in versions if v.version_id != "null"]
        versions.append(version)
        return version

    def _object_headers(self, request, bucket, v):
        pfx = self._pfx(request)
        headers = [("Content-Type", v.content_type), ("ETag", v.etag), ("Last-Modified", _http_date(v.last_modified)),
                   ("Accept-Ranges", "bytes"), ("x-oss-object-type", v.object_type), ("x-oss-storage-class", "Standard"),
                   ("x-oss-hash-crc64ecma", v.crc)]
        if bucket.versioning:
            headers.append((pfx + "version-id", v.version_id))
        if bucket.encryption:
            headers.append((pfx + "server-side-encryption", bucket.encryption["SSEAlgorithm"] if request.protocol == "oss" else {"AES256": "AES256", "KMS": "aws:kms"}.get(bucket.encryption["SSEAlgorithm"], bucket.encryption["SSEAlgorithm"])))
        headers += [(pfx + "meta-" + k, val) for k, val in v.meta.items()]
        return headers

    def _op_PutObject(self, request, caller, bucket, key):
        self._require(request, caller, bucket, key)
        if request.headers.get("content-encoding", "").lower() == "aws-chunked" or "x-amz-decoded-content-length" in request.headers:
            raise Failure(400, "InvalidArgument", "aws-chunked uploads are not supported; sign with STREAMING-AWS4-HMAC-SHA256-PAYLOAD or send the body as is.", ec="0017-00000804")
        self._check_md5(request)
        with self.lock:
            self._conditional_put(request, bucket, key)
            v = self._store(bucket, Version(key, None, request.body, request.headers.get("content-type"), self._meta(request), owner=bucket.owner))
        headers = [("ETag", v.etag), ("x-oss-hash-crc64ecma", v.crc), ("Content-MD5", base64.b64encode(hashlib.md5(v.data).digest()).decode())]
        if bucket.versioning:
            headers.append((self._pfx(request) + "version-id", v.version_id))
        return 200, headers, b""

    def _find_version(self, request, bucket, key):
        vid = request.query.get("versionId")
        with self.lock:
            if vid:
                v = next((v for v in bucket.objects.get(key, []) if v.version_id == vid), None)
                if v is None:
                    raise Failure(404, "NoSuchVersion", "The specified version does not exist.", {"Key": key, "VersionId": vid})
                if v.delete_marker:
                    raise Failure(405, "MethodNotAllowed", "The specified method is not allowed against this resource.",
                                  headers=[(self._pfx(request) + "delete-marker", "true"), (self._pfx(request) + "version-id", vid)])
                return v
            cur = bucket.current(key)
        if cur is None:
            raise no_such_key(key)
        if cur.delete_marker:
            raise no_such_key(key, [(self._pfx(request) + "delete-marker", "true"), (self._pfx(request) + "version-id", cur.version_id)])
        return cur

    def _object_action(self, request):
        return VERSION_ACTIONS[request.operation] if request.query.get("versionId") else None

    def _op_GetObject(self, request, caller, bucket, key):
        self._require(request, caller, bucket, key, action=self._object_action(request))
        v = self._find_version(request, bucket, key)
        headers = self._object_headers(request, bucket, v)
        data = v.data
        rng = request.headers.get("range")
        if rng:
            parsed = _range(rng, len(data))
            if parsed is None:
                if request.headers.get("x-oss-range-behavior", "").lower() == "standard" or request.protocol == "s3":
                    raise Failure(416, "InvalidRange", "The requested range is not satisfiable.", {"RangeRequested": rng, "ActualObjectSize": len(data)},
                                  headers=[("Content-Range", f"bytes */{len(data)}")])
            else:
                start, end = parsed
                headers = [h for h in headers if h[0] != "x-oss-hash-crc64ecma"]
                headers.append(("Content-Range", f"bytes {start}-{end}/{len(data)}"))
                return 206, headers, data[start:end + 1]
        return 200, headers, data

    def _op_HeadObject(self, request, caller, bucket, key):
        self._require(request, caller, bucket, key, action=self._object_action(request))
        v = self._find_version(request, bucket, key)
        request.head_length = len(v.data)
        return 200, self._object_headers(request, bucket, v), b""

    def _delete(self, request, bucket, key, vid):
        """Deletes as OSS does; returns the response headers. Under the lock."""
        pfx = self._pfx(request)
        versions = bucket.objects.get(key, [])
        if vid:
            victim = next((v for v in versions if v.version_id == vid), None)
            if victim is None:
                if vid != "null" and bucket.versioning is None:
                    raise Failure(400, "InvalidArgument", "Invalid version id specified", {"ArgumentName": "versionId", "ArgumentValue": vid})
                return [(pfx + "version-id", vid)]
            versions.remove(victim)
            if not versions:
                bucket.objects.pop(key, None)
            headers = [(pfx + "version-id", vid)]
            if victim.delete_marker:
                headers.append((pfx + "delete-marker", "true"))
            return headers
        if bucket.versioning is None:
            bucket.objects.pop(key, None)
            return []
        marker = Version(key, None, delete_marker=True, owner=bucket.owner)
        if bucket.versioning == "Enabled":
            marker.version_id = _version_id()
        else:
            marker.version_id = "null"
            versions[:] = [v for v in versions if v.version_id != "null"]
        bucket.objects.setdefault(key, versions).append(marker)
        bucket.objects[key] = versions
        return [(pfx + "delete-marker", "true"), (pfx + "version-id", marker.version_id)]

    def _op_DeleteObject(self, request, caller, bucket, key):
        self._require(request, caller, bucket, key, action=self._object_action(request))
        with self.lock:
            headers = self._delete(request, bucket, key, request.query.get("versionId"))
        return 204, headers, b""

    def _op_DeleteMultipleObjects(self, request, caller, bucket):
        if "content-md5" not in request.headers:
            raise Failure(400, "InvalidRequest", "Missing required header for this request: Content-MD5.")
        self._check_md5(request)
        tree = _parse_xml(request.body, "Delete")
        quiet = (_text(tree, "Quiet") or "false").lower() == "true"
        encoded = request.query.get("encoding-type") == "url"
        url = (lambda s: quote(s, safe="")) if encoded else (lambda s: s)
        results = []
        for obj in _children(tree, "Object"):
            key, vid = _text(obj, "Key"), _text(obj, "VersionId")
            action = "oss:DeleteObjectVersion" if vid else "oss:DeleteObject"
            try:
                self._require(request, caller, bucket, key, action=action)
                with self.lock:
                    headers = dict(self._delete(request, bucket, key, vid))
            except Failure as failure:
                results.append(("Error", [("Key", url(key)), ("Code", failure.code), ("Message", failure.message)]))
                continue
            if not quiet:
                item = [("Key", url(key))]
                if vid:
                    item.append(("VersionId", vid))
                pfx = self._pfx(request)
                if headers.get(pfx + "delete-marker"):
                    item += [("DeleteMarker", True), ("DeleteMarkerVersionId", headers.get(pfx + "version-id"))]
                results.append(("Deleted", item))
        children = results + ([("EncodingType", "url")] if encoded else [])
        return 200, [("Content-Type", "application/xml")], _xml("DeleteResult", children)

    def _op_InitiateMultipartUpload(self, request, caller, bucket, key):
        self._require(request, caller, bucket, key)
        with self.lock:
            self._forbid_overwrite(request, bucket, key)
            upload = Upload(key, uuid.uuid4().hex.upper(), request.headers.get("content-type"), self._meta(request),
                            request.headers.get("x-oss-forbid-overwrite", "").lower() == "true")
            bucket.uploads[upload.upload_id] = upload
        encoded = request.query.get("encoding-type") == "url"
        children = [("Bucket", bucket.name), ("Key", quote(key, safe="") if encoded else key), ("UploadId", upload.upload_id)]
        if encoded:
            children.append(("EncodingType", "url"))
        return 200, [("Content-Type", "application/xml")], _xml("InitiateMultipartUploadResult", children)

    def _upload(self, request, bucket, key):
        uid = request.query.get("uploadId", "")
        upload = bucket.uploads.get(uid)
        if upload is None or upload.key != key:
            raise Failure(404, "NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.", {"UploadId": uid})
        return upload

    def _op_UploadPart(self, request, caller, bucket, key):
        self._require(request, caller, bucket, key)
        try:
            number = int(request.query.get("partNumber", ""))
        except ValueError:
            number = 0
        if not 1 <= number <= 10000:
            raise Failure(400, "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive.", {"ArgumentName": "partNumber"})
        self._check_md5(request)
        etag = '"' + hashlib.md5(request.body).hexdigest().upper() + '"'
        with self.lock:
            upload = self._upload(request, bucket, key)
            upload.parts[number] = (etag, request.body, _now())
        return 200, [("ETag", etag), ("x-oss-hash-crc64ecma", str(crc64(request.body))),
                     ("Content-MD5", base64.b64encode(hashlib.md5(request.body).digest()).decode())], b""

    def _op_CompleteMultipartUpload(self, request, caller, bucket, key):
        self._require(request, caller, bucket, key)
        with self.lock:
            upload = self._upload(request, bucket, key)
            if request.headers.get("x-oss-complete-all", "").lower() == "yes":
                chosen = sorted(upload.parts)
            else:
                tree = _parse_xml(request.body, "CompleteMultipartUpload")
                chosen = []
                for part in _children(tree, "Part"):
                    try:
                        number = int(_text(part, "PartNumber") or "")
                    except ValueError:
                        raise malformed() from None
                    etag = (_text(part, "ETag") or "").strip()
                    stored = upload.parts.get(number)
                    if stored is None or stored[0].strip('"').upper() != etag.strip('"').upper():
                        raise Failure(400, "InvalidPart", "One or more of the specified parts could not be found or the specified entity tag might not have matched the part's entity tag.",
                                      {"PartNumber": number, "ETag": etag})
                    if chosen and number <= chosen[-1]:
                        raise Failure(400, "InvalidPartOrder", "The list of parts was not in ascending order. Parts must be ordered by part number.")
                    chosen.append(number)
                if not chosen:
                    raise malformed("You must specify at least one part.")
            for number in chosen[:-1]:
                if len(upload.parts[number][1]) < MIN_PART_SIZE:
                    raise Failure(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size.", {"PartNumber": number, "MinSizeAllowed": MIN_PART_SIZE})
            if upload.forbid_overwrite or request.headers.get("x-oss-forbid-overwrite"):
                if upload.forbid_overwrite and "x-oss-forbid-overwrite" not in request.headers:
                    request.headers["x-oss-forbid-overwrite"] = "true"
                self._forbid_overwrite(request, bucket, key)
            data = b"".join(upload.parts[n][1] for n in chosen)
            digest = hashlib.md5(b"".join(hashlib.md5(upload.parts[n][1]).digest() for n in chosen)).hexdigest().upper()
            etag = f'"{digest}-{len(chosen)}"'
            v = self._store(bucket, Version(key, None, data, upload.content_type, upload.meta, etag=etag, object_type="Multipart", owner=bucket.owner))
            bucket.uploads.pop(upload.upload_id, None)
        encoded = request.query.get("encoding-type") == "url"
        children = []
        if encoded:
            children.append(("EncodingType", "url"))
        children += [("Location", f"http://{bucket.name}.oss-{bucket.region}.aliyuncs.com/{quote(key)}"), ("Bucket", bucket.name),
                     ("Key", quote(key, safe="") if encoded else key), ("ETag", v.etag)]
        headers = [("Content-Type", "application/xml"), ("x-oss-hash-crc64ecma", v.crc)]
        if bucket.versioning:
            headers.append((self._pfx(request) + "version-id", v.version_id))
        return 200, headers, _xml("CompleteMultipartUploadResult", children)

    def _op_AbortMultipartUpload(self, request, caller, bucket, key):
        self._require(request, caller, bucket, key)
        with self.lock:
            upload = self._upload(request, bucket, key)
            bucket.uploads.pop(upload.upload_id, None)
        return 204, [], b""

    def _op_ListParts(self, request, caller, bucket, key):
        self._require(request, caller, bucket, key)
        limit = self._max(request, "max-parts", 1000, 1000)
        try:
            marker = int(request.query.get("part-number-marker", "0") or 0)
        except ValueError:
            raise Failure(400, "InvalidArgument", "part-number-marker must be an integer.") from None
        with self.lock:
            upload = self._upload(request, bucket, key)
            numbers = [n for n in sorted(upload.parts) if n > marker]
            parts = [(n, upload.parts[n]) for n in numbers]
        truncated = len(parts) > limit
        page = parts[:limit]
        encoded = request.query.get("encoding-type") == "url"
        children = [("Bucket", bucket.name), ("Key", quote(key, safe="") if encoded else key), ("UploadId", upload.upload_id),
                    ("StorageClass", "Standard"), ("PartNumberMarker", marker),
                    ("NextPartNumberMarker", page[-1][0] if page else marker), ("MaxParts", limit), ("IsTruncated", truncated)]
        if encoded:
            children.append(("EncodingType", "url"))
        children += [("Part", [("PartNumber", n), ("LastModified", _iso(p[2])), ("ETag", p[0]), ("HashCrc64ecma", str(crc64(p[1]))), ("Size", len(p[1]))]) for n, p in page]
        return 200, [("Content-Type", "application/xml")], _xml("ListPartsResult", children)


def _range(header, size):
    """(start, end) inclusive for a single `bytes=` range, or None when it is not satisfiable / not valid."""
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None
    if m.group(1) == "":
        n = int(m.group(2))
        if n == 0 or size == 0:
            return None
        return max(0, size - n), size - 1
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        return None
    return start, min(end, size - 1)


def serve(app, host="127.0.0.1", secure_port=0, insecure_port=0):
    """Serves `app` on two ports of `host` (threaded werkzeug servers in daemon threads); the
    insecure one is added to app.insecure_ports. Returns (secure_server, insecure_server)."""
    from werkzeug.serving import make_server

    servers = []
    for port in (secure_port, insecure_port):
        server = make_server(host, port, app, threaded=True)
        threading.Thread(target=server.serve_forever, name=f"oss-fake-{server.server_port}", daemon=True).start()
        servers.append(server)
    app.insecure_ports.add(servers[1].server_port)
    return servers[0], servers[1]
