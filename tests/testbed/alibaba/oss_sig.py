"""Request signatures for the OSS fake (tests/testbed/alibaba/oss.py): OSS Signature V4 for the
native API and AWS Signature V4 for OSS's S3-compatible API, each checked against the bytes that
arrived (the raw request target, the raw query string, the headers, the body).

OSS V4 (https://www.alibabacloud.com/help/en/oss/developer-reference/recommend-to-use-signature-version-4;
the reference implementation that page names for Python is alibabacloud_oss_v2/signer/v4.py):

    Authorization: OSS4-HMAC-SHA256 Credential=<ak>/<yyyymmdd>/<region>/oss/aliyun_v4_request[,AdditionalHeaders=<h1;h2>],Signature=<hex>

    CanonicalRequest = VERB \n CanonicalURI \n CanonicalQuery \n CanonicalHeaders \n AdditionalHeaders \n x-oss-content-sha256
      CanonicalURI   = URI-encode("/" + bucket + "/" + key), "/" kept; "/" alone without a bucket
      CanonicalQuery = pairs URI-encoded (unreserved characters kept), sorted, "k=v", or "k" for an empty value
      CanonicalHeaders = every x-oss-* header, content-type, content-md5 and the AdditionalHeaders,
                         lowercased, sorted, "k:v\\n", values trimmed
    StringToSign = "OSS4-HMAC-SHA256" \n x-oss-date \n <yyyymmdd>/<region>/oss/aliyun_v4_request \n hex(sha256(CanonicalRequest))
    key = HMAC(HMAC(HMAC(HMAC("aliyun_v4" + secret, date), region), "oss"), "aliyun_v4_request")

Checked: the algorithm, the credential scope (product `oss`, terminator, the date equal to
x-oss-date's day, the region equal to the endpoint's region), x-oss-date present and within 15
minutes of now (RequestTimeTooSkewed), x-oss-content-sha256 present and, unless UNSIGNED-PAYLOAD,
equal to the body's SHA-256, AdditionalHeaders well formed (no empty names) and present, and the
signature itself (SignatureDoesNotMatch, with the StringToSign OSS echoes).

AWS SigV4 (the S3-compatible API): recomputed with botocore's own S3SigV4Auth over the signed
headers as received, the raw path and the query re-encoded canonically (as AWS decodes and
re-encodes it, which tests/testbed/moto_launcher.py does too). Checked: the scope's service `s3`,
x-amz-date within 15 minutes, x-amz-content-sha256 equal to the body's SHA-256 unless
UNSIGNED-PAYLOAD, and the signature. The scope region is not compared with the endpoint's
region: OSS's own error samples show `us-east-1` scopes against `oss-cn-hangzhou` hosts, so OSS
appears not to enforce it (UNVERIFIED).

Not modelled: OSS V1 (`OSS ak:signature`, HMAC-SHA1) and V2, query-string (presigned) signatures
of either kind, and aws-chunked streaming signatures (refused by oss.py).
"""

import datetime
import hashlib
import hmac
from urllib.parse import quote, unquote

UNSIGNED = "UNSIGNED-PAYLOAD"
MAX_SKEW = datetime.timedelta(minutes=15)


class SignatureError(Exception):
    """A refusal of the signature: OSS's error code, HTTP status, message and extra XML fields."""

    def __init__(self, code, message, status=403, extra=None):
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.extra = extra or {}


def _uri_encode(value, keep_slash=False):
    return quote(value, safe="/" if keep_slash else "")


def canonical_query(raw_query):
    """The query decoded and re-encoded as OSS V4 and AWS SigV4 both canonicalize it: pairs in
    sorted order, unreserved characters kept, everything else percent-encoded."""
    pairs = []
    if raw_query:
        for part in raw_query.split("&"):
            if not part:
                continue
            key, _, value = part.partition("=")
            pairs.append((_uri_encode(unquote(key)), _uri_encode(unquote(value))))
    return sorted(pairs)


def _parse_fields(text):
    fields = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name.strip()] = value.strip()
    return fields


def _parse_amz_date(value, header):
    try:
        return datetime.datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        raise SignatureError("AccessDenied", f"Invalid date format in header {header}: {value!r}.", 403) from None


def _check_skew(signed_at):
    now = datetime.datetime.now(datetime.timezone.utc)
    if abs(now - signed_at) > MAX_SKEW:
        raise SignatureError(
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
            403,
            {"RequestTime": signed_at.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "ServerTime": now.strftime("%Y-%m-%dT%H:%M:%S.000Z")},
        )


def _check_payload(declared, body, header):
    if declared is None:
        raise SignatureError("InvalidArgument", f"Missing required header for this request: {header}.", 400)
    if declared in (UNSIGNED,):
        return
    if declared.startswith("STREAMING-"):
        raise SignatureError("InvalidArgument", f"{header}: streaming (aws-chunked) payloads are not accepted by this fake: {declared}", 400)
    if declared.lower() != hashlib.sha256(body).hexdigest():
        raise SignatureError("InvalidArgument", f"The {header} you specified did not match what we received.", 400)


class OSSV4:
    """A request signed with OSS Signature V4 in the Authorization header."""

    protocol = "oss"

    def __init__(self, authorization, headers):
        self.headers = headers  # lowercased name -> value
        algorithm, _, rest = authorization.partition(" ")
        if algorithm != "OSS4-HMAC-SHA256":
            raise SignatureError("InvalidArgument", f"Unsupported signature algorithm {algorithm}.", 400)
        fields = _parse_fields(rest)
        credential = fields.get("Credential", "")
        self.signature = fields.get("Signature", "")
        if not credential or not self.signature:
            raise SignatureError("InvalidArgument", "The Authorization header must contain Credential and Signature.", 400)
        parts = credential.split("/")
        if len(parts) != 5:
            raise SignatureError("InvalidArgument", f"Invalid credential in Authorization header: {credential}.", 400)
        self.access_key_id, self.scope_date, self.scope_region, self.scope_product, terminator = parts
        if terminator != "aliyun_v4_request" or self.scope_product != "oss":
            raise SignatureError("InvalidArgument", f"Invalid credential scope in Authorization header: {credential}.", 400)
        self.additional = None
        if "AdditionalHeaders" in fields:
            names = fields["AdditionalHeaders"].split(";")
            if fields["AdditionalHeaders"] == "" or any(n == "" for n in names):
                raise SignatureError("InvalidArgument", "AdditionalHeaders contains an empty header name.", 400)
            self.additional = [n.lower() for n in names]
        self.security_token = headers.get("x-oss-security-token")

    def verify(self, secret, method, bucket, key, raw_query, body, region):
        headers = self.headers
        oss_date = headers.get("x-oss-date")
        if oss_date is None:
            raise SignatureError("AccessDenied", "Missing required header for this request: x-oss-date.", 403)
        signed_at = _parse_amz_date(oss_date, "x-oss-date")
        if oss_date[:8] != self.scope_date:
            raise SignatureError("SignatureDoesNotMatch", "The date in the credential scope does not match x-oss-date.", 403)
        if self.scope_region != region:
            raise SignatureError("InvalidArgument", f"Invalid signing region in Authorization header: {self.scope_region}, expected {region}.", 400)
        _check_skew(signed_at)
        _check_payload(headers.get("x-oss-content-sha256"), body, "x-oss-content-sha256")
        additional = sorted(set(self.additional or []))
        for name in additional:
            if name not in headers:
                raise SignatureError("SignatureDoesNotMatch", f"The additional header {name} is not in the request.", 403)

        uri = "/"
        if bucket is not None:
            uri += bucket + "/"
        if key is not None:
            uri += key
        canonical_uri = _uri_encode(uri, keep_slash=True)
        query = "&".join(f"{k}={v}" if v else k for k, v in canonical_query(raw_query))
        names = sorted(n for n in headers if n.startswith("x-oss-") or n in ("content-type", "content-md5") or n in additional)
        canonical_headers = "".join(f"{n}:{headers[n].strip()}\n" for n in names)
        canonical = "\n".join([method, canonical_uri, query, canonical_headers, ";".join(additional), headers["x-oss-content-sha256"]])
        scope = f"{self.scope_date}/{self.scope_region}/oss/aliyun_v4_request"
        string_to_sign = "\n".join(["OSS4-HMAC-SHA256", oss_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        k = hmac.new(("aliyun_v4" + secret).encode(), self.scope_date.encode(), hashlib.sha256).digest()
        for part in (self.scope_region, "oss", "aliyun_v4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(k, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, self.signature):
            raise SignatureError(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
                403,
                {"StringToSign": string_to_sign, "SignatureProvided": self.signature, "CanonicalRequest": canonical},
            )


class AWSV4:
    """A request to the S3-compatible API signed with AWS Signature V4 in the Authorization header."""

    protocol = "s3"

    def __init__(self, authorization, headers):
        self.headers = headers
        algorithm, _, rest = authorization.partition(" ")
        if algorithm != "AWS4-HMAC-SHA256":
            raise SignatureError("InvalidArgument", f"Unsupported signature algorithm {algorithm}.", 400)
        fields = _parse_fields(rest)
        credential = fields.get("Credential", "")
        self.signature = fields.get("Signature", "")
        self.signed_headers = [h for h in fields.get("SignedHeaders", "").split(";") if h]
        parts = credential.split("/")
        if len(parts) != 5 or not self.signature or not self.signed_headers:
            raise SignatureError("AuthorizationHeaderMalformed", "The authorization header is malformed.", 400)
        self.access_key_id, self.scope_date, self.scope_region, service, terminator = parts
        if service != "s3" or terminator != "aws4_request":
            raise SignatureError("AuthorizationHeaderMalformed", f"The authorization header is malformed; the credential scope {credential} is not for s3.", 400)
        if "host" not in self.signed_headers:
            raise SignatureError("AccessDenied", "Host must be a signed header.", 403)
        self.security_token = headers.get("x-amz-security-token")

    def verify(self, secret, method, raw_path, raw_query, body, host):
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        headers = self.headers
        amz_date = headers.get("x-amz-date")
        if amz_date is None:
            raise SignatureError("AccessDenied", "Missing required header for this request: x-amz-date.", 403)
        _check_skew(_parse_amz_date(amz_date, "x-amz-date"))
        _check_payload(headers.get("x-amz-content-sha256"), body, "x-amz-content-sha256")
        signed = {}
        for name in self.signed_headers:
            if name == "host":
                signed["host"] = host
            elif name in headers:
                signed[name] = headers[name]
            else:
                raise SignatureError("AccessDenied", f"The signed header {name} is not in the request.", 403)
        query = "&".join(f"{k}={v}" for k, v in canonical_query(raw_query))
        url = f"http://{host}{raw_path}" + (f"?{query}" if query else "")
        request = AWSRequest(method=method, url=url, headers=signed, data=body)
        request.context["timestamp"] = amz_date
        auth = S3SigV4Auth(Credentials(self.access_key_id, secret), "s3", self.scope_region)
        auth._modify_request_before_signing = lambda r: None  # verify only; change nothing
        canonical = auth.canonical_request(request)
        string_to_sign = auth.string_to_sign(request, canonical)
        expected = auth.signature(string_to_sign, request)
        if not hmac.compare_digest(expected, self.signature):
            raise SignatureError(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
                403,
                {"StringToSign": string_to_sign, "SignatureProvided": self.signature, "CanonicalRequest": canonical},
            )


def parse(authorization, headers):
    """The signature of a request (OSSV4 / AWSV4), None for an anonymous one."""
    if not authorization:
        return None
    if authorization.startswith("OSS4-HMAC-SHA256 "):
        return OSSV4(authorization, headers)
    if authorization.startswith("AWS4-HMAC-SHA256 "):
        return AWSV4(authorization, headers)
    if authorization.startswith("OSS "):
        raise SignatureError("InvalidArgument", "OSS signature V1 is not accepted by this fake (not modelled): sign with V4.", 400)
    raise SignatureError("InvalidArgument", "Authorization header is invalid.", 400)
