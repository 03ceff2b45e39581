"""Request signatures for the test bed's Alibaba Cloud control-plane FAKE (control_plane.py),
checked against the bytes that arrived.

V3, ACS3-HMAC-SHA256 (what alibabacloud-tea-openapi 0.4.x sends by default for every RPC and
ROA call: alibabacloud_tea_openapi/utils.py `get_authorization`; Alibaba's "Request syntax and
signature method V3"):

    Authorization: ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=<h1;h2;...>,Signature=<hex>
    CanonicalRequest = METHOD \n path \n CanonicalQuery \n CanonicalHeaders \n SignedHeaders \n x-acs-content-sha256
      CanonicalQuery   = query keys sorted, "k=v" joined by "&", values percent-encoded (only
                         unreserved characters and "~" kept)
      CanonicalHeaders = each signed header, lowercased, value trimmed, "k:v\n", sorted
    StringToSign = "ACS3-HMAC-SHA256" \n hex(sha256(CanonicalRequest))
    Signature = hex(HMAC-SHA256(AccessKeySecret, StringToSign))

Checked: the algorithm; host, x-acs-action, x-acs-version, x-acs-date, x-acs-signature-nonce
and x-acs-content-sha256 present, and every x-acs-* header sent signed; x-acs-content-sha256
equal to the body's SHA-256; x-acs-date within 15 minutes of now (InvalidTimeStamp.Expired); a
nonce used once only (SignatureNonceUsed); the signature (SignatureDoesNotMatch).

V2, the RPC "signature method V1" (HMAC-SHA1; what the SDKs' `do_rpcrequest` path signs, e.g.
with signature_algorithm 'v2'): Signature = base64(HMAC-SHA1(secret + "&",
METHOD & %2F & percent(sorted canonical query of every parameter but Signature))). Checked the
same way (Timestamp, SignatureNonce, SignatureMethod HMAC-SHA1, SignatureVersion 1.0).

Error codes and messages are those of Alibaba's OpenAPI gateway as SDK users quote them:
SignatureDoesNotMatch (400), IncompleteSignature (400), InvalidTimeStamp.Expired (400),
SignatureNonceUsed (400); the caller's key is then looked up by control_plane.py
(InvalidAccessKeyId.NotFound 404, InvalidSecurityToken.* 400).

Not modelled: ACS3-HMAC-SM3 and ACS3-RSA-SHA256, bearer tokens, query-string (presigned) V3.
"""

import base64
import datetime
import hashlib
import hmac
import threading
from collections import OrderedDict
from urllib.parse import parse_qsl, quote

ALGORITHM = "ACS3-HMAC-SHA256"
SKEW = datetime.timedelta(minutes=15)
REQUIRED_V3 = ("host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256")


class SignatureError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _encode(text):
    return quote(text, safe="~", encoding="utf-8")


class Nonces:
    """The nonces seen in the last SKEW, so a replayed request is refused."""

    def __init__(self, limit=100000):
        self.lock = threading.Lock()
        self.seen = OrderedDict()
        self.limit = limit

    def use(self, nonce):
        with self.lock:
            if nonce in self.seen:
                raise SignatureError(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
            self.seen[nonce] = True
            while len(self.seen) > self.limit:
                self.seen.popitem(last=False)


NONCES = Nonces()


def _check_time(text, now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    try:
        when = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        raise SignatureError(400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted.") from None
    if abs(now - when) > SKEW:
        raise SignatureError(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")


def parse_v3(authorization):
    """(access key id, signed header names, signature) of a V3 Authorization header."""
    algorithm, _, rest = authorization.partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureError(400, "IncompleteSignature", f"The request signature algorithm {algorithm!r} is not supported by this fake.")
    fields = {}
    for part in rest.split(","):
        key, eq, value = part.strip().partition("=")
        if not eq:
            raise SignatureError(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards.")
        fields[key] = value
    if not all(fields.get(k) for k in ("Credential", "SignedHeaders", "Signature")):
        raise SignatureError(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards.")
    return fields["Credential"], fields["SignedHeaders"].split(";"), fields["Signature"]


def canonical_query(raw_query):
    pairs = sorted(parse_qsl(raw_query, keep_blank_values=True))
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in pairs)


def verify_v3(method, path, raw_query, headers, body, secret_of):
    """The access key id of a correctly signed V3 request, else raises SignatureError.
    `headers`: lowercased names -> values; `secret_of(ak)`: the secret, or raises."""
    access_key_id, signed, signature = parse_v3(headers.get("authorization", ""))
    for name in REQUIRED_V3:
        if name not in headers:
            raise SignatureError(400, "IncompleteSignature", f"The request signature does not conform to Aliyun standards: header {name} is missing.")
    unsigned = [h for h in headers if h.startswith("x-acs-") and h not in signed]
    if unsigned or "host" not in signed:
        missing = unsigned[0] if unsigned else "host"
        raise SignatureError(400, "IncompleteSignature", f"The request signature does not conform to Aliyun standards: header {missing} is not signed.")
    if signed != sorted(signed):
        raise SignatureError(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards: SignedHeaders are not sorted.")
    payload = hashlib.sha256(body).hexdigest()
    if headers["x-acs-content-sha256"] != payload:
        raise SignatureError(400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation: x-acs-content-sha256 is not the body's SHA-256.")
    _check_time(headers["x-acs-date"])
    secret = secret_of(access_key_id)
    canonical_headers = "".join(f"{h}:{headers.get(h, '').strip()}\n" for h in signed)
    canonical = "\n".join([method, path or "/", canonical_query(raw_query), canonical_headers, ";".join(signed), payload])
    to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    expected = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise SignatureError(400, "SignatureDoesNotMatch", f"Specified signature is not matched with our calculation. server string to sign is:{to_sign}")
    NONCES.use(headers["x-acs-signature-nonce"])
    return access_key_id


def verify_v2(method, params, secret_of):
    """The access key id of a correctly signed RPC V2 request (`params`: query and form merged)."""
    for name in ("AccessKeyId", "Signature", "SignatureMethod", "SignatureVersion", "SignatureNonce", "Timestamp"):
        if not params.get(name):
            raise SignatureError(400, "IncompleteSignature", f"The request signature does not conform to Aliyun standards: {name} is missing.")
    if params["SignatureMethod"] != "HMAC-SHA1" or params["SignatureVersion"] != "1.0":
        raise SignatureError(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards: only HMAC-SHA1 1.0.")
    _check_time(params["Timestamp"])
    secret = secret_of(params["AccessKeyId"])
    query = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(params.items()) if k != "Signature")
    to_sign = f"{method}&%2F&{_encode(query)}"
    expected = base64.b64encode(hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
    if not hmac.compare_digest(expected, params["Signature"]):
        raise SignatureError(400, "SignatureDoesNotMatch", f"Specified signature is not matched with our calculation. server string to sign is:{to_sign}")
    NONCES.use(params["SignatureNonce"])
    return params["AccessKeyId"]
