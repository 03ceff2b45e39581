"""Pins the wire format of the test bed's OSS fake (oss.py) by driving it with Alibaba's official
OSS SDK, alibabacloud-oss-v2 1.4.1 (OSS Signature V4, virtual-host addressing; its models parse
every answer), for the native API, and with boto3's S3 client (SigV4, virtual-host style, region
cn-hangzhou) for the S3-compatible data plane Milvus uses. A field, status, error shape or
signature rule the fake gets wrong fails here. Plain script, no pytest:

    target/testbed/venv/bin/python tests/testbed/alibaba/oss_wire_test.py

Prints one JSON line of the checks passed; exits 1 with the first failed check otherwise.

The fake runs in-process on two free ports of 127.0.0.1 ("secure" stands for HTTPS, "insecure"
is plain HTTP for acs:SecureTransport). Both SDKs keep the real host names
(<bucket>.oss-cn-hangzhou.aliyuncs.com) and reach the fake as an HTTP proxy (the SDK's
`proxy_host`, botocore's `proxies`): the request line is absolute-form and the Host header is the
one the SDK would send to OSS, so the signature covers exactly what real OSS would see; only the
TCP destination differs. The endpoints are http:// because an https:// endpoint through a proxy
is a CONNECT tunnel with TLS inside, which the fake does not terminate.

Test scaffolding, not a model of RAM: `ScaffoldPrincipals` / `ScaffoldCaller` implement oss.py's
Principals interface with a fixed table of keys (two accounts' root keys, a RAM user, an STS
assumed-role session with its token) and identity policies decided by oss_policy.evaluate. The
RAM/STS fake in tests/testbed/alibaba/ replaces them in the test bed.
"""

import hashlib
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import alibabacloud_oss_v2 as oss_sdk  # noqa: E402
import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

import oss  # noqa: E402
import oss_policy  # noqa: E402

REGION = "cn-hangzhou"
OWNER, OTHER = "1234567890123456", "6543210987654321"
CHECKS = []


def check(name, ok, detail=""):
    if not ok:
        print(json.dumps({"failed": name, "detail": str(detail)[:2000], "passed": len(CHECKS)}))
        sys.exit(1)
    CHECKS.append(name)


# --- test scaffolding: the Principals interface ---------------------------------------------


class ScaffoldCaller:
    def __init__(self, account_id, arn, secret, principal_type, principal_ids, policies):
        self.account_id, self.arn, self.access_key_secret = account_id, arn, secret
        self.principal_type, self.principal_ids, self.policies = principal_type, principal_ids, policies

    def allows(self, action, resource, context):
        if self.principal_type == "Account":
            return "Allow" if f":{self.account_id}:" in resource else "ImplicitDeny"
        results = [oss_policy.evaluate(p, action, resource, context) for p in self.policies]
        return "Deny" if "Deny" in results else "Allow" if "Allow" in results else "ImplicitDeny"


class ScaffoldPrincipals:
    def __init__(self):
        self.keys = {}

    def add(self, key_id, secret, caller_args, token=None):
        self.keys[key_id] = (secret, token, caller_args)

    def caller(self, access_key_id, security_token):
        entry = self.keys.get(access_key_id)
        if entry is None:
            return None
        secret, token, args = entry
        if token is not None and security_token != token:
            raise oss.CredentialRefused("InvalidSecurityToken", "The security token you provided is invalid.")
        return ScaffoldCaller(*args[:2], secret, *args[2:])


def allow(*actions, resource="acs:oss:*:*:*"):
    return json.dumps({"Version": "1", "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": [resource, resource + "/*"] if not resource.endswith("*") else [resource]}]})


PRINCIPALS = ScaffoldPrincipals()
PRINCIPALS.add("LTAIowner", "owner-secret", (OWNER, f"acs:ram::{OWNER}:root", "Account", [OWNER], []))
PRINCIPALS.add("LTAIother", "other-secret", (OTHER, f"acs:ram::{OTHER}:root", "Account", [OTHER], []))
PRINCIPALS.add("LTAIreader", "reader-secret", (OWNER, f"acs:ram::{OWNER}:user/reader", "SubUser", ["203000000000000001"],
                                                [allow("oss:GetObject", "oss:ListObjects", "oss:GetBucketInfo")]))
ROLE_SESSION = f"arn:sts::{OWNER}:assumed-role/milvus/session-1"
PRINCIPALS.add("STS.milvus", "sts-secret", (OWNER, f"acs:ram::{OWNER}:assumed-role/milvus/session-1", "AssumedRole", [ROLE_SESSION],
                                            [allow("oss:GetBucketInfo", "oss:ListObjects", "oss:GetObject", "oss:PutObject", "oss:DeleteObject",
                                                   "oss:AbortMultipartUpload", "oss:ListParts", "oss:ListMultipartUploads")]), token="sts-token-1")


# --- clients ---------------------------------------------------------------------------------


def native(port, key="LTAIowner", secret="owner-secret", token=None):
    cfg = oss_sdk.config.load_default()
    cfg.credentials_provider = oss_sdk.credentials.StaticCredentialsProvider(key, secret, token)
    cfg.region = REGION
    cfg.endpoint = f"oss-{REGION}.aliyuncs.com"
    cfg.disable_ssl = True
    # A str proxy_host becomes {"http://": ...}, a key requests never looks up; a dict goes to requests as is.
    cfg.proxy_host = {"http": f"http://127.0.0.1:{port}"}
    cfg.retry_max_attempts = 1
    return oss_sdk.Client(cfg)


def s3(port, key="LTAIowner", secret="owner-secret", token=None, style="virtual"):
    return boto3.client(
        "s3", region_name=REGION, endpoint_url=f"http://oss-{REGION}.aliyuncs.com",
        aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token,
        config=Config(signature_version="s3v4", s3={"addressing_style": style}, proxies={"http": f"http://127.0.0.1:{port}"},
                      request_checksum_calculation="when_required", response_checksum_validation="when_required",
                      retries={"max_attempts": 1, "mode": "standard"}),
    )


def oss_error(call):
    """(code, status, EC, raw error body) of the ServiceError the SDK raises, or None when the call succeeds."""
    try:
        call()
    except Exception as error:  # the SDK wraps ServiceError in OperationError
        e = error
        while not isinstance(e, oss_sdk.exceptions.ServiceError) and hasattr(e, "unwrap") and e.unwrap() is not e:
            e = e.unwrap()
        if isinstance(e, oss_sdk.exceptions.ServiceError):
            return e.code, e.status_code, e.ec, (e.snapshot or b"").decode("utf-8", "replace")
        return repr(error), 0, "", {}
    return None


def s3_error(call):
    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"]
    return None


def main():
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    log = tempfile.NamedTemporaryFile(prefix="oss-fake-", suffix=".jsonl", delete=False).name
    app = oss.OSSFake(PRINCIPALS, request_log=log)
    secure, insecure = oss.serve(app)
    sp, ip = secure.server_port, insecure.server_port
    c = native(sp)
    M = oss_sdk.models
    bucket = "bw-milvus-data"

    # --- bucket lifecycle -------------------------------------------------------------------
    r = c.put_bucket(M.PutBucketRequest(bucket=bucket, acl="private", create_bucket_configuration=M.CreateBucketConfiguration(storage_class="Standard")))
    check("PutBucket: 200", r.status_code == 200, r.status_code)
    r = c.put_bucket(M.PutBucketRequest(bucket=bucket, acl="public-read"))
    check("PutBucket again by the owner: 200, ACL updated", r.status_code == 200 and c.get_bucket_acl(M.GetBucketAclRequest(bucket=bucket)).acl == "public-read")
    c.put_bucket_acl(M.PutBucketAclRequest(bucket=bucket, acl="private"))
    check("PutBucketAcl / GetBucketAcl round trip", c.get_bucket_acl(M.GetBucketAclRequest(bucket=bucket)).acl == "private")
    err = oss_error(lambda: native(sp, "LTAIother", "other-secret").put_bucket(M.PutBucketRequest(bucket=bucket)))
    check("PutBucket by another account: BucketAlreadyExists 409", err and err[:2] == ("BucketAlreadyExists", 409), err)

    info = c.get_bucket_info(M.GetBucketInfoRequest(bucket=bucket)).bucket_info
    check("GetBucketInfo: name, owner, ACL, location, storage class, SSE none, creation date",
          info.name == bucket and info.owner.id == OWNER and info.acl == "private" and info.location == f"oss-{REGION}"
          and info.storage_class == "Standard" and info.sse_rule.sse_algorithm == "None" and info.creation_date is not None
          and info.extranet_endpoint == f"oss-{REGION}.aliyuncs.com" and info.block_public_access is False, vars(info))
    loc = c.get_bucket_location(M.GetBucketLocationRequest(bucket=bucket)).location
    check("GetBucketLocation: oss-cn-hangzhou", loc == f"oss-{REGION}", loc)

    # --- config subresources ----------------------------------------------------------------
    c.put_bucket_public_access_block(M.PutBucketPublicAccessBlockRequest(bucket=bucket, public_access_block_configuration=M.PublicAccessBlockConfiguration(block_public_access=True)))
    got = c.get_bucket_public_access_block(M.GetBucketPublicAccessBlockRequest(bucket=bucket)).public_access_block_configuration.block_public_access
    check("Put/GetBucketPublicAccessBlock: true", got is True, got)
    err = oss_error(lambda: c.put_bucket_acl(M.PutBucketAclRequest(bucket=bucket, acl="public-read")))
    check("PutBucketAcl public-read while BlockPublicAccess: AccessDenied", err and err[:2] == ("AccessDenied", 403), err)
    check("GetBucketInfo reports BlockPublicAccess", c.get_bucket_info(M.GetBucketInfoRequest(bucket=bucket)).bucket_info.block_public_access is True)
    c.delete_bucket_public_access_block(M.DeleteBucketPublicAccessBlockRequest(bucket=bucket))
    got = c.get_bucket_public_access_block(M.GetBucketPublicAccessBlockRequest(bucket=bucket)).public_access_block_configuration.block_public_access
    check("DeleteBucketPublicAccessBlock: false again", got is False, got)

    err = oss_error(lambda: c.get_bucket_encryption(M.GetBucketEncryptionRequest(bucket=bucket)))
    check("GetBucketEncryption before any: NoSuchServerSideEncryptionRule 404", err and err[:2] == ("NoSuchServerSideEncryptionRule", 404), err)
    c.put_bucket_encryption(M.PutBucketEncryptionRequest(bucket=bucket, server_side_encryption_rule=M.ServerSideEncryptionRule(
        apply_server_side_encryption_by_default=M.ApplyServerSideEncryptionByDefault(sse_algorithm="KMS", kms_master_key_id="key-hz-0001"))))
    rule = c.get_bucket_encryption(M.GetBucketEncryptionRequest(bucket=bucket)).server_side_encryption_rule.apply_server_side_encryption_by_default
    check("Put/GetBucketEncryption: KMS with KMSMasterKeyID", (rule.sse_algorithm, rule.kms_master_key_id) == ("KMS", "key-hz-0001"), vars(rule))
    sse = c.get_bucket_info(M.GetBucketInfoRequest(bucket=bucket)).bucket_info.sse_rule
    check("GetBucketInfo reports the KMS rule", (sse.sse_algorithm, sse.kms_master_key_id) == ("KMS", "key-hz-0001"), vars(sse))
    err = oss_error(lambda: c.put_bucket_encryption(M.PutBucketEncryptionRequest(bucket=bucket, server_side_encryption_rule=M.ServerSideEncryptionRule(
        apply_server_side_encryption_by_default=M.ApplyServerSideEncryptionByDefault(sse_algorithm="AES256", kms_master_key_id="key")))))
    check("PutBucketEncryption AES256 with a KMS key: InvalidArgument 400", err and err[:2] == ("InvalidArgument", 400), err)
    c.put_bucket_encryption(M.PutBucketEncryptionRequest(bucket=bucket, server_side_encryption_rule=M.ServerSideEncryptionRule(
        apply_server_side_encryption_by_default=M.ApplyServerSideEncryptionByDefault(sse_algorithm="AES256"))))
    rule = c.get_bucket_encryption(M.GetBucketEncryptionRequest(bucket=bucket)).server_side_encryption_rule.apply_server_side_encryption_by_default
    check("PutBucketEncryption AES256 replaces the rule", (rule.sse_algorithm, rule.kms_master_key_id) == ("AES256", None), vars(rule))
    c.delete_bucket_encryption(M.DeleteBucketEncryptionRequest(bucket=bucket))
    err = oss_error(lambda: c.get_bucket_encryption(M.GetBucketEncryptionRequest(bucket=bucket)))
    check("DeleteBucketEncryption: gone", err and err[0] == "NoSuchServerSideEncryptionRule", err)

    c.put_bucket_tags(M.PutBucketTagsRequest(bucket=bucket, tagging=M.Tagging(tag_set=M.TagSet(tags=[M.Tag(key="owner", value="bucketwire"), M.Tag(key="env", value="test")]))))
    tags = {t.key: t.value for t in c.get_bucket_tags(M.GetBucketTagsRequest(bucket=bucket)).tagging.tag_set.tags}
    check("Put/GetBucketTags round trip", tags == {"owner": "bucketwire", "env": "test"}, tags)
    c.delete_bucket_tags(M.DeleteBucketTagsRequest(bucket=bucket))
    ts = c.get_bucket_tags(M.GetBucketTagsRequest(bucket=bucket)).tagging.tag_set
    check("DeleteBucketTags: none left", ts is None or not ts.tags, ts and ts.tags)

    # --- versioning -------------------------------------------------------------------------
    check("GetBucketVersioning before any: no status", c.get_bucket_versioning(M.GetBucketVersioningRequest(bucket=bucket)).version_status is None)
    c.put_bucket_versioning(M.PutBucketVersioningRequest(bucket=bucket, versioning_configuration=M.VersioningConfiguration(status="Enabled")))
    check("Put/GetBucketVersioning: Enabled", c.get_bucket_versioning(M.GetBucketVersioningRequest(bucket=bucket)).version_status == "Enabled")
    v1 = c.put_object(M.PutObjectRequest(bucket=bucket, key="segments/a.bin", body=b"first")).version_id
    v2 = c.put_object(M.PutObjectRequest(bucket=bucket, key="segments/a.bin", body=b"second")).version_id
    check("PutObject in a versioned bucket: distinct version ids", v1 and v2 and v1 != v2, (v1, v2))
    got = c.get_object(M.GetObjectRequest(bucket=bucket, key="segments/a.bin")).body.read()
    check("GetObject: the latest version", got == b"second", got)
    got = c.get_object(M.GetObjectRequest(bucket=bucket, key="segments/a.bin", version_id=v1)).body.read()
    check("GetObject ?versionId: the old version", got == b"first", got)
    d = c.delete_object(M.DeleteObjectRequest(bucket=bucket, key="segments/a.bin"))
    check("DeleteObject without versionId: a delete marker", d.delete_marker is True and d.version_id not in (None, v1, v2), vars(d))
    marker = d.version_id
    err = oss_error(lambda: c.get_object(M.GetObjectRequest(bucket=bucket, key="segments/a.bin")))
    check("GetObject behind a delete marker: NoSuchKey 404", err and err[:2] == ("NoSuchKey", 404), err)
    vs = c.list_object_versions(M.ListObjectVersionsRequest(bucket=bucket))
    check("ListObjectVersions: two versions and the latest delete marker",
          sorted(v.version_id for v in vs.version or []) == sorted([v1, v2]) and [m.version_id for m in vs.delete_marker or []] == [marker]
          and vs.delete_marker[0].is_latest is True and all(not v.is_latest for v in vs.version), vs)
    err = oss_error(lambda: c.delete_bucket(M.DeleteBucketRequest(bucket=bucket)))
    check("DeleteBucket with versions left: BucketNotEmpty 409", err and err[:2] == ("BucketNotEmpty", 409), err)
    d = c.delete_object(M.DeleteObjectRequest(bucket=bucket, key="segments/a.bin", version_id=marker))
    check("DeleteObject ?versionId of the marker: removed, the object is back",
          d.delete_marker is True and c.get_object(M.GetObjectRequest(bucket=bucket, key="segments/a.bin")).body.read() == b"second")
    c.delete_object(M.DeleteObjectRequest(bucket=bucket, key="segments/a.bin", version_id=v2))
    got = c.get_object(M.GetObjectRequest(bucket=bucket, key="segments/a.bin")).body.read()
    check("DeleteObject ?versionId of the latest: the previous version is current", got == b"first", got)
    c.put_bucket_versioning(M.PutBucketVersioningRequest(bucket=bucket, versioning_configuration=M.VersioningConfiguration(status="Suspended")))
    d = c.delete_object(M.DeleteObjectRequest(bucket=bucket, key="segments/a.bin"))
    check("Suspended: DeleteObject leaves a null delete marker", d.delete_marker is True and d.version_id == "null", vars(d))

    # --- policy: TLS deny -------------------------------------------------------------------
    policy = json.dumps({"Version": "1", "Statement": [{"Effect": "Deny", "Action": ["oss:*"], "Principal": ["*"],
                                                        "Resource": [f"acs:oss:*:{OWNER}:{bucket}", f"acs:oss:*:{OWNER}:{bucket}/*"],
                                                        "Condition": {"Bool": {"acs:SecureTransport": ["false"]}}}]})
    c.put_bucket_policy(M.PutBucketPolicyRequest(bucket=bucket, body=policy))
    check("Put/GetBucketPolicy round trip", json.loads(c.get_bucket_policy(M.GetBucketPolicyRequest(bucket=bucket)).body) == json.loads(policy))
    err = oss_error(lambda: native(ip).get_bucket_info(M.GetBucketInfoRequest(bucket=bucket)))
    check("TLS-deny policy: plain HTTP refused AccessDenied 403 (explicit, bucket policy)",
          err and err[:2] == ("AccessDenied", 403) and "<NoPermissionType>ExplicitDeny<" in err[3] and "<PolicyType>BucketPolicy<" in err[3], err)
    check("TLS-deny policy: the secure port still answers", c.get_bucket_info(M.GetBucketInfoRequest(bucket=bucket)).bucket_info.name == bucket)
    code = s3_error(lambda: s3(ip).head_bucket(Bucket=bucket))
    check("TLS-deny policy binds the S3 API too: HeadBucket on plain HTTP 403", code == ("403", 403), code)
    c.delete_bucket_policy(M.DeleteBucketPolicyRequest(bucket=bucket))
    err = oss_error(lambda: c.get_bucket_policy(M.GetBucketPolicyRequest(bucket=bucket)))
    check("DeleteBucketPolicy: NoSuchBucketPolicy 404", err and err[:2] == ("NoSuchBucketPolicy", 404), err)
    check("after DeleteBucketPolicy plain HTTP answers", native(ip).get_bucket_info(M.GetBucketInfoRequest(bucket=bucket)).bucket_info.name == bucket)
    err = oss_error(lambda: c.put_bucket_policy(M.PutBucketPolicyRequest(bucket=bucket, body='{"Version":"1","Statement":[{"Effect":"Allow"}]}')))
    check("PutBucketPolicy with a malformed document: 400", err and err[1] == 400, err)

    # --- authentication and authorization ---------------------------------------------------
    reader = native(sp, "LTAIreader", "reader-secret")
    c.put_bucket_versioning(M.PutBucketVersioningRequest(bucket=bucket, versioning_configuration=M.VersioningConfiguration(status="Enabled")))
    c.put_object(M.PutObjectRequest(bucket=bucket, key="docs/readme.txt", body=b"hello"))
    check("RAM user with oss:GetObject reads", reader.get_object(M.GetObjectRequest(bucket=bucket, key="docs/readme.txt")).body.read() == b"hello")
    err = oss_error(lambda: reader.put_object(M.PutObjectRequest(bucket=bucket, key="docs/x.txt", body=b"x")))
    check("RAM user without oss:PutObject: AccessDenied 403, ImplicitDeny naming the action, EC",
          err and err[:2] == ("AccessDenied", 403) and err[2] and "<AuthAction>oss:PutObject<" in err[3] and "<NoPermissionType>ImplicitDeny<" in err[3], err)
    err = oss_error(lambda: reader.delete_bucket(M.DeleteBucketRequest(bucket=bucket)))
    check("RAM user without oss:DeleteBucket: AccessDenied", err and err[0] == "AccessDenied", err)
    err = oss_error(lambda: native(sp, "LTAIowner", "wrong-secret").get_bucket_info(M.GetBucketInfoRequest(bucket=bucket)))
    check("wrong secret: SignatureDoesNotMatch 403", err and err[:2] == ("SignatureDoesNotMatch", 403), err)
    err = oss_error(lambda: native(sp, "LTAInobody", "x").get_bucket_info(M.GetBucketInfoRequest(bucket=bucket)))
    check("unknown AccessKey ID: InvalidAccessKeyId 403", err and err[:2] == ("InvalidAccessKeyId", 403), err)
    sts = native(sp, "STS.milvus", "sts-secret", "sts-token-1")
    check("STS credentials (x-oss-security-token) authorized as the role", sts.get_bucket_info(M.GetBucketInfoRequest(bucket=bucket)).bucket_info.name == bucket)
    err = oss_error(lambda: native(sp, "STS.milvus", "sts-secret", "forged").get_bucket_info(M.GetBucketInfoRequest(bucket=bucket)))
    check("STS credentials with a wrong token: InvalidSecurityToken 403", err and err[:2] == ("InvalidSecurityToken", 403), err)
    other = native(sp, "LTAIother", "other-secret")
    err = oss_error(lambda: other.get_object(M.GetObjectRequest(bucket=bucket, key="docs/readme.txt")))
    check("another account's root without a grant: AccessDenied", err and err[:2] == ("AccessDenied", 403), err)
    c.put_bucket_policy(M.PutBucketPolicyRequest(bucket=bucket, body=json.dumps({"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": ["oss:GetObject"], "Principal": [OTHER], "Resource": [f"acs:oss:*:{OWNER}:{bucket}/docs/*"]}]})))
    check("bucket policy Allow for another account: cross-account GetObject",
          other.get_object(M.GetObjectRequest(bucket=bucket, key="docs/readme.txt")).body.read() == b"hello")
    err = oss_error(lambda: other.put_object(M.PutObjectRequest(bucket=bucket, key="docs/y.txt", body=b"y")))
    check("the cross-account grant is only what it says: PutObject denied", err and err[0] == "AccessDenied", err)
    c.delete_bucket_policy(M.DeleteBucketPolicyRequest(bucket=bucket))

    # --- listings ---------------------------------------------------------------------------
    for i in range(5):
        c.put_object(M.PutObjectRequest(bucket=bucket, key=f"files/part-{i}.log", body=b"x" * i))
    page = c.list_objects_v2(M.ListObjectsV2Request(bucket=bucket, prefix="files/", max_keys=3))
    check("ListObjectsV2 prefix + max-keys: first page truncated",
          [o.key for o in page.contents] == [f"files/part-{i}.log" for i in range(3)] and page.is_truncated and page.next_continuation_token and page.key_count == 3,
          [o.key for o in page.contents or []])
    page2 = c.list_objects_v2(M.ListObjectsV2Request(bucket=bucket, prefix="files/", max_keys=3, continuation_token=page.next_continuation_token))
    check("ListObjectsV2 continuation: the rest", [o.key for o in page2.contents] == ["files/part-3.log", "files/part-4.log"] and not page2.is_truncated,
          [o.key for o in page2.contents or []])
    root = c.list_objects_v2(M.ListObjectsV2Request(bucket=bucket, delimiter="/"))
    check("ListObjectsV2 delimiter: common prefixes", sorted(p.prefix for p in root.common_prefixes) == ["docs/", "files/"], [p.prefix for p in root.common_prefixes])  # segments/a.bin is behind a delete marker
    up = c.initiate_multipart_upload(M.InitiateMultipartUploadRequest(bucket=bucket, key="big/object.bin")).upload_id
    ups = c.list_multipart_uploads(M.ListMultipartUploadsRequest(bucket=bucket))
    check("ListMultipartUploads: the initiated upload", [(u.key, u.upload_id) for u in ups.uploads or []] == [("big/object.bin", up)], ups.uploads)

    # --- native conditional writes ----------------------------------------------------------
    plain = "bw-plain-bucket"
    c.put_bucket(M.PutBucketRequest(bucket=plain))
    c.put_object(M.PutObjectRequest(bucket=plain, key="lock", body=b"1"))
    err = oss_error(lambda: c.put_object(M.PutObjectRequest(bucket=plain, key="lock", body=b"2", forbid_overwrite=True)))
    check("native x-oss-forbid-overwrite on an existing key: FileAlreadyExists 409", err and err[:2] == ("FileAlreadyExists", 409), err)
    err = oss_error(lambda: c.put_object(M.PutObjectRequest(bucket=plain, key="lock", body=b"2", headers={"If-None-Match": "*"})))
    check("native PutObject with If-None-Match: NotImplemented 400 (OSS 0017-00000245)", err and err[:2] == ("NotImplemented", 400), err)

    # --- S3-compatible data plane (boto3) ---------------------------------------------------
    b3 = s3(sp, "STS.milvus", "sts-secret", "sts-token-1")
    check("S3 HeadBucket with STS credentials (x-amz-security-token): 200", b3.head_bucket(Bucket=plain)["ResponseMetadata"]["HTTPStatusCode"] == 200)
    code = s3_error(lambda: b3.head_bucket(Bucket="bw-no-such-bucket"))
    check("S3 HeadBucket of a missing bucket: 404", code == ("404", 404), code)
    b3.put_object(Bucket=plain, Key="segments/0001", Body=b"0123456789")
    code = s3_error(lambda: b3.put_object(Bucket=plain, Key="segments/0001", Body=b"other", IfNoneMatch="*"))
    check("S3 PutObject If-None-Match * on an existing key: PreconditionFailed 412", code == ("PreconditionFailed", 412), code)
    r = b3.put_object(Bucket=plain, Key="segments/0002", Body=b"new", IfNoneMatch="*")
    check("S3 PutObject If-None-Match * on a new key: 200", r["ResponseMetadata"]["HTTPStatusCode"] == 200)
    r = b3.get_object(Bucket=plain, Key="segments/0001", Range="bytes=2-5")
    check("S3 GetObject Range: 206 with the bytes and Content-Range",
          r["ResponseMetadata"]["HTTPStatusCode"] == 206 and r["Body"].read() == b"2345" and r["ContentRange"] == "bytes 2-5/10", r["ResponseMetadata"])
    r = b3.get_object(Bucket=plain, Key="segments/0001", Range="bytes=-3")
    check("S3 GetObject suffix Range: 206 last bytes", r["Body"].read() == b"789")
    listed = b3.list_objects_v2(Bucket=plain, Prefix="segments/")
    check("S3 ListObjectsV2 Prefix", [o["Key"] for o in listed["Contents"]] == ["segments/0001", "segments/0002"] and listed["KeyCount"] == 2, listed.get("Contents"))
    part1, part2 = os.urandom(100 * 1024), os.urandom(1000)
    mp = b3.create_multipart_upload(Bucket=plain, Key="segments/big")
    e1 = b3.upload_part(Bucket=plain, Key="segments/big", UploadId=mp["UploadId"], PartNumber=1, Body=part1)["ETag"]
    e2 = b3.upload_part(Bucket=plain, Key="segments/big", UploadId=mp["UploadId"], PartNumber=2, Body=part2)["ETag"]
    parts = b3.list_parts(Bucket=plain, Key="segments/big", UploadId=mp["UploadId"])["Parts"]
    check("S3 ListParts: both parts with sizes", [(p["PartNumber"], p["Size"]) for p in parts] == [(1, len(part1)), (2, len(part2))], parts)
    ups = b3.list_multipart_uploads(Bucket=plain)["Uploads"]
    check("S3 ListMultipartUploads: the upload", [u["UploadId"] for u in ups] == [mp["UploadId"]], ups)
    done = b3.complete_multipart_upload(Bucket=plain, Key="segments/big", UploadId=mp["UploadId"],
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    check("S3 CompleteMultipartUpload: multipart ETag", done["ETag"].strip('"').endswith("-2") and done["Key"] == "segments/big", done)
    got = b3.get_object(Bucket=plain, Key="segments/big")["Body"].read()
    check("S3 GetObject of the completed upload: the parts joined", hashlib.sha256(got).digest() == hashlib.sha256(part1 + part2).digest(), len(got))
    mp2 = b3.create_multipart_upload(Bucket=plain, Key="segments/small")
    s1 = b3.upload_part(Bucket=plain, Key="segments/small", UploadId=mp2["UploadId"], PartNumber=1, Body=b"tiny")["ETag"]
    s2 = b3.upload_part(Bucket=plain, Key="segments/small", UploadId=mp2["UploadId"], PartNumber=2, Body=b"tail")["ETag"]
    code = s3_error(lambda: b3.complete_multipart_upload(Bucket=plain, Key="segments/small", UploadId=mp2["UploadId"],
                                                         MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": s1}, {"PartNumber": 2, "ETag": s2}]}))
    check("S3 CompleteMultipartUpload with a small non-last part: EntityTooSmall 400", code == ("EntityTooSmall", 400), code)
    b3.abort_multipart_upload(Bucket=plain, Key="segments/small", UploadId=mp2["UploadId"])
    code = s3_error(lambda: b3.list_parts(Bucket=plain, Key="segments/small", UploadId=mp2["UploadId"]))
    check("S3 AbortMultipartUpload: the upload is gone (NoSuchUpload 404)", code == ("NoSuchUpload", 404), code)
    b3.delete_object(Bucket=plain, Key="segments/0002")
    code = s3_error(lambda: b3.get_object(Bucket=plain, Key="segments/0002"))
    check("S3 DeleteObject: then NoSuchKey 404", code == ("NoSuchKey", 404), code)
    code = s3_error(lambda: s3(sp, "STS.milvus", "wrong", "sts-token-1").get_object(Bucket=plain, Key="segments/0001"))
    check("S3 wrong secret: SignatureDoesNotMatch 403", code == ("SignatureDoesNotMatch", 403), code)
    code = s3_error(lambda: s3(sp, "LTAIreader", "reader-secret").put_object(Bucket=plain, Key="segments/9", Body=b"9"))
    check("S3 PutObject by a caller without oss:PutObject: AccessDenied 403", code == ("AccessDenied", 403), code)
    code = s3_error(lambda: s3(sp, style="path").list_objects_v2(Bucket=plain))
    check("path-style request: SecondLevelDomainForbidden 403", code == ("SecondLevelDomainForbidden", 403), code)
    code = s3_error(lambda: s3(sp, "STS.milvus", "sts-secret", "sts-token-1").put_object(
        Bucket=plain, Key="segments/tampered", Body=b"abc", ContentMD5="AAAAAAAAAAAAAAAAAAAAAA=="))
    check("S3 PutObject with a wrong Content-MD5: InvalidDigest 400", code == ("InvalidDigest", 400), code)

    # --- clean-up: DeleteBucket -------------------------------------------------------------
    for key in ("lock", "segments/0001", "segments/big"):
        c.delete_object(M.DeleteObjectRequest(bucket=plain, key=key))
    check("DeleteBucket of an emptied bucket: 204", c.delete_bucket(M.DeleteBucketRequest(bucket=plain)).status_code == 204)
    err = oss_error(lambda: c.get_bucket_info(M.GetBucketInfoRequest(bucket=plain)))
    check("GetBucketInfo after DeleteBucket: NoSuchBucket 404", err and err[:2] == ("NoSuchBucket", 404), err)
    err = oss_error(lambda: c.delete_bucket(M.DeleteBucketRequest(bucket=plain)))
    check("DeleteBucket twice: NoSuchBucket 404", err and err[:2] == ("NoSuchBucket", 404), err)

    # --- the request log --------------------------------------------------------------------
    with open(log) as f:
        entries = [json.loads(line) for line in f]
    puts = [e for e in entries if e["operation"] == "PutObject" and e["status"] == 200]
    check("request log: one line per request", len(entries) >= 80 and all({"method", "host", "path", "query", "operation", "accessKeyId", "status", "decisions"} <= set(e) for e in entries), len(entries))
    check("request log: successful PutObjects counted, with their decisions", len(puts) >= 10 and all(d["result"] == "Allow" for e in puts for d in e["decisions"]), len(puts))
    tls = [e for e in entries if e.get("error") == "AccessDenied" and not e["secure"]]
    check("request log: the TLS refusals, marked insecure, decided by the bucket policy",
          len(tls) == 2 and all(e["decisions"][-1]["bucketPolicy"] == "Deny" for e in tls), tls)
    check("request log: signature refusals keep the error code", any(e.get("error") == "SignatureDoesNotMatch" and e["accessKeyId"] == "LTAIowner" for e in entries))
    secure.shutdown()
    insecure.shutdown()
    os.unlink(log)
    print(json.dumps({"checks": CHECKS, "passed": len(CHECKS)}))


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # an SDK refusing an answer (a shape, a CRC) is a failed check too
        print(json.dumps({"failed": "unexpected exception", "detail": repr(error)[:2000], "passed": len(CHECKS)}))
        sys.exit(1)
