"""Pins the wire format of the test bed's Alibaba Cloud control-plane fake
(tests/testbed/alibaba/control_plane.py) by driving it with Alibaba's official Python SDKs:
alibabacloud-ram20150501, -ims20190815 (OIDC providers), -sts20150401 and -cs20151215, whose
models build every request and parse every answer, and whose tea-openapi core signs them (V3,
ACS3-HMAC-SHA256). A field, status or error code the fake gets wrong fails here. Run by
tests/alibaba_fake.rs, which prepares the Kubernetes side and passes it in a JSON argument:

    alibaba_fake_wire.py '{"namespace": ..., "tokens": {...}, "signingKey": <sa.key path or null>}'

with the test bed's environment (target/testbed/env: BUCKETWIRE_TESTBED_ALIBABA_*) in the
process environment. Prints one JSON line of what was checked; exits non-zero with the failed
check otherwise.
"""

import base64
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "alibaba"))

import seed  # noqa: E402
from alibabacloud_cs20151215 import models as cs_models  # noqa: E402
from alibabacloud_ims20190815 import models as ims_models  # noqa: E402
from alibabacloud_ram20150501 import models as ram_models  # noqa: E402
from alibabacloud_sts20150401 import models as sts_models  # noqa: E402

CHECKS = []


def check(name, ok, detail=""):
    if not ok:
        print(json.dumps({"failed": name, "detail": str(detail)}))
        sys.exit(1)
    CHECKS.append(name)


def error_of(call):
    """(code, HTTP status, message, access denied detail) of a refused call; (None, 200, "", None)."""
    try:
        call()
    except Exception as error:  # the SDK's ClientException / ServerException
        return (getattr(error, "code", type(error).__name__), getattr(error, "status_code", None),
                str(getattr(error, "message", error)), getattr(error, "access_denied_detail", None))
    return None, 200, "", None


def expect(name, call, code, status):
    got = error_of(call)
    check(name, got[:2] == (code, status), got[:3])
    return got


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def expired_copy(token, key_path):
    """The token's header and claims, expired an hour ago, signed again with the apiserver's own
    service-account key: only its expiry is wrong."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    header, claims, _ = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    now = int(time.time())
    claims.update({"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600})
    signing_input = f"{header}.{b64url(json.dumps(claims).encode())}"
    with open(key_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def main():
    given = json.loads(sys.argv[1])
    ns, tokens = given["namespace"], given["tokens"]
    env = os.environ
    endpoint = env["BUCKETWIRE_TESTBED_ALIBABA_ENDPOINT_URL"]
    account = env["BUCKETWIRE_TESTBED_ALIBABA_ACCOUNT_ID"]
    second = env["BUCKETWIRE_TESTBED_ALIBABA_SECOND_ACCOUNT_ID"]
    cluster_id = env["BUCKETWIRE_TESTBED_ALIBABA_CLUSTER_ID"]
    provider_arn = env["BUCKETWIRE_TESTBED_ALIBABA_OIDC_PROVIDER_ARN"]
    issuer = env["BUCKETWIRE_TESTBED_ALIBABA_OIDC_ISSUER"]
    admin = (env["BUCKETWIRE_TESTBED_ALIBABA_ACCESS_KEY_ID"], env["BUCKETWIRE_TESTBED_ALIBABA_ACCESS_KEY_SECRET"])
    second_admin = (env["BUCKETWIRE_TESTBED_ALIBABA_SECOND_ACCESS_KEY_ID"], env["BUCKETWIRE_TESTBED_ALIBABA_SECOND_ACCESS_KEY_SECRET"])
    ram = seed.ram(endpoint, *admin)
    ims = seed.ims(endpoint, *admin)
    sts = seed.sts(endpoint, *admin)
    cs = seed.cs(endpoint, *admin)
    anonymous_sts = seed.sts(endpoint)
    p = ns.replace("_", "-")  # RAM names: letters, digits, hyphens (and periods for roles)

    # --- who the administrator is, and the cluster's RRSA --------------------------------------
    me = sts.get_caller_identity().body
    check("GetCallerIdentity: the administrator is a RAM user of the main account",
          (me.identity_type, me.account_id, me.arn) == ("RAMUser", account, f"acs:ram::{account}:user/bucketwire-testbed-admin"),
          me.to_map())
    detail = cs.describe_cluster_detail(cluster_id).body
    rrsa = detail.rrsa_config
    check("DescribeClusterDetail: cluster id, region cn-hangzhou", (detail.cluster_id, detail.region_id) == (cluster_id, "cn-hangzhou"), detail.to_map())
    check("DescribeClusterDetail: rrsa_config parsed by the model (enabled, issuer, audience, oidc_arn, oidc_name)",
          rrsa is not None and (rrsa.enabled, rrsa.issuer, rrsa.audience, rrsa.oidc_arn, rrsa.oidc_name)
          == (True, issuer, "sts.aliyuncs.com", provider_arn, provider_arn.rsplit("/", 1)[1]), rrsa and rrsa.to_map())
    meta = json.loads(detail.meta_data)["RRSAConfig"]
    check("DescribeClusterDetail: meta_data is a JSON string with the same RRSAConfig",
          (meta["enabled"], meta["issuer"], meta["audience"], meta["oidc_arn"], meta["oidc_name"])
          == (True, issuer, "sts.aliyuncs.com", provider_arn, rrsa.oidc_name), meta)
    expect("DescribeClusterDetail of a missing cluster: ErrorClusterNotFound 404",
           lambda: cs.describe_cluster_detail("c00000000000000000000000000000000"), "ErrorClusterNotFound", 404)

    # --- OIDC providers (IMS) ----------------------------------------------------------------
    got = ims.get_oidcprovider(ims_models.GetOIDCProviderRequest(oidcprovider_name=rrsa.oidc_name)).body.oidcprovider
    check("GetOIDCProvider: the cluster's provider (IssuerUrl, ClientIds, Arn)",
          (got.issuer_url, got.client_ids, got.arn) == (issuer, "sts.aliyuncs.com", provider_arn), got.to_map())
    for n in range(2):
        ims.create_oidcprovider(ims_models.CreateOIDCProviderRequest(
            oidcprovider_name=f"{p}-idp-{n}", issuer_url=f"https://idp-{n}.{p}.example", client_ids="a,b"))
    expect("CreateOIDCProvider twice: EntityAlreadyExists.OIDCProvider 409", lambda: ims.create_oidcprovider(
        ims_models.CreateOIDCProviderRequest(oidcprovider_name=f"{p}-idp-0", issuer_url="https://x.example")),
        "EntityAlreadyExists.OIDCProvider", 409)
    expect("GetOIDCProvider missing: EntityNotExist.OIDCProvider 404", lambda: ims.get_oidcprovider(
        ims_models.GetOIDCProviderRequest(oidcprovider_name=f"{p}-nope")), "EntityNotExist.OIDCProvider", 404)
    names, marker, pages = [], None, 0
    while True:
        page = ims.list_oidcproviders(ims_models.ListOIDCProvidersRequest(max_items=1, marker=marker)).body
        pages += 1
        names += [x.oidcprovider_name for x in page.oidcproviders.oidcprovider]
        if not page.is_truncated:
            break
        check("ListOIDCProviders: a truncated page carries a Marker", bool(page.marker), page.to_map())
        marker = page.marker
    check("ListOIDCProviders: pages of 1 (Marker/IsTruncated) hold every provider once",
          pages == len(names) >= 3 and len(set(names)) == len(names) and {rrsa.oidc_name, f"{p}-idp-0", f"{p}-idp-1"} <= set(names), names)

    # --- policies ----------------------------------------------------------------------------
    policy = f"{p}-reader"
    reader_role, other_role = f"Bw-{p}-Reader", f"{p}-other"
    allow_get_own = json.dumps({"Version": "1", "Statement": [{"Effect": "Allow", "Action": ["ram:GetRole", "ram:ListPoliciesForRole"],
                                                                 "Resource": f"acs:ram:*:{account}:role/{reader_role.lower()}"}]})
    made = ram.create_policy(ram_models.CreatePolicyRequest(policy_name=policy, policy_document=allow_get_own,
                                                            description="wire test")).body.policy
    check("CreatePolicy: name, Custom, default v1", (made.policy_name, made.policy_type, made.default_version) == (policy, "Custom", "v1"), made.to_map())
    expect("CreatePolicy twice: EntityAlreadyExists.Policy 409", lambda: ram.create_policy(ram_models.CreatePolicyRequest(
        policy_name=policy, policy_document=allow_get_own)), "EntityAlreadyExists.Policy", 409)
    expect("CreatePolicy with a malformed document: MalformedPolicyDocument 400", lambda: ram.create_policy(
        ram_models.CreatePolicyRequest(policy_name=f"{p}-bad", policy_document='{"Version": "2012-10-17", "Statement": []}')),
        "MalformedPolicyDocument", 400)
    expect("CreatePolicy with an invalid name: InvalidParameter.PolicyName.InvalidChars 400", lambda: ram.create_policy(
        ram_models.CreatePolicyRequest(policy_name="bad_name!", policy_document=allow_get_own)), "InvalidParameter.PolicyName.InvalidChars", 400)
    expect("CreatePolicy with a 129-character name: InvalidParameter.PolicyName.Length 400", lambda: ram.create_policy(
        ram_models.CreatePolicyRequest(policy_name="a" * 129, policy_document=allow_get_own)), "InvalidParameter.PolicyName.Length", 400)
    fetched = ram.get_policy(ram_models.GetPolicyRequest(policy_name=policy, policy_type="Custom")).body
    check("GetPolicy: the document as a JSON string, the default version",
          json.loads(fetched.policy.policy_document) == json.loads(allow_get_own) and fetched.default_policy_version.version_id == "v1"
          and fetched.default_policy_version.is_default_version is True, fetched.to_map())
    expect("GetPolicy missing: EntityNotExist.Policy 404", lambda: ram.get_policy(ram_models.GetPolicyRequest(
        policy_name=f"{p}-nope", policy_type="Custom")), "EntityNotExist.Policy", 404)
    for n in range(2, 6):
        version = ram.create_policy_version(ram_models.CreatePolicyVersionRequest(
            policy_name=policy, policy_document=allow_get_own, set_as_default=(n == 5))).body.policy_version
        check(f"CreatePolicyVersion: v{n}", version.version_id == f"v{n}" and version.is_default_version == (n == 5), version.to_map())
    expect("CreatePolicyVersion beyond 5: LimitExceeded.Policy.Version 409", lambda: ram.create_policy_version(
        ram_models.CreatePolicyVersionRequest(policy_name=policy, policy_document=allow_get_own)), "LimitExceeded.Policy.Version", 409)
    rotated = ram.create_policy_version(ram_models.CreatePolicyVersionRequest(
        policy_name=policy, policy_document=allow_get_own, rotate_strategy="DeleteOldestNonDefaultVersionWhenLimitExceeded")).body.policy_version
    listed = ram.list_policy_versions(ram_models.ListPolicyVersionsRequest(policy_name=policy, policy_type="Custom")).body
    versions = [(v.version_id, v.is_default_version) for v in listed.policy_versions.policy_version]
    check("CreatePolicyVersion with RotateStrategy drops the oldest non-default version",
          rotated.version_id == "v6" and versions == [("v2", False), ("v3", False), ("v4", False), ("v5", True), ("v6", False)], versions)
    got = ram.get_policy_version(ram_models.GetPolicyVersionRequest(policy_name=policy, policy_type="Custom", version_id="v5")).body.policy_version
    check("GetPolicyVersion: the default version's document", got.is_default_version and json.loads(got.policy_document) == json.loads(allow_get_own), got.to_map())
    expect("GetPolicyVersion of a deleted version: EntityNotExist.Policy.Version 404", lambda: ram.get_policy_version(
        ram_models.GetPolicyVersionRequest(policy_name=policy, policy_type="Custom", version_id="v1")), "EntityNotExist.Policy.Version", 404)
    expect("DeletePolicyVersion of the default: DeleteConflict.Policy.Version.Default 409", lambda: ram.delete_policy_version(
        ram_models.DeletePolicyVersionRequest(policy_name=policy, version_id="v5")), "DeleteConflict.Policy.Version.Default", 409)
    expect("DeletePolicy with versions left: DeleteConflict.Policy.Version 409", lambda: ram.delete_policy(
        ram_models.DeletePolicyRequest(policy_name=policy)), "DeleteConflict.Policy.Version", 409)
    for v in ("v2", "v3", "v4", "v6"):
        ram.delete_policy_version(ram_models.DeletePolicyVersionRequest(policy_name=policy, version_id=v))
    left = ram.list_policy_versions(ram_models.ListPolicyVersionsRequest(policy_name=policy, policy_type="Custom")).body
    check("DeletePolicyVersion: only the default is left", [v.version_id for v in left.policy_versions.policy_version] == ["v5"], left.to_map())

    # --- roles -------------------------------------------------------------------------------
    def rrsa_trust(service_account):
        return json.dumps({"Version": "1", "Statement": [{
            "Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Federated": [provider_arn]},
            "Condition": {"StringEquals": {"oidc:iss": issuer, "oidc:aud": "sts.aliyuncs.com",
                                           "oidc:sub": f"system:serviceaccount:{ns}:{service_account}"}}}]})

    role = ram.create_role(ram_models.CreateRoleRequest(role_name=reader_role, assume_role_policy_document=rrsa_trust("nobody"),
                                                        description="wire test", max_session_duration=7200)).body.role
    check("CreateRole: the ARN has the name lowercased", role.arn == f"acs:ram::{account}:role/{reader_role.lower()}" and role.role_name == reader_role, role.to_map())
    check("CreateRole: MaxSessionDuration, a RoleId", role.max_session_duration == 7200 and bool(role.role_id), role.to_map())
    ram.create_role(ram_models.CreateRoleRequest(role_name=other_role, assume_role_policy_document=rrsa_trust("other")))
    expect("CreateRole again (other case): EntityAlreadyExists.Role 409", lambda: ram.create_role(ram_models.CreateRoleRequest(
        role_name=reader_role.upper(), assume_role_policy_document=rrsa_trust("x"))), "EntityAlreadyExists.Role", 409)
    expect("CreateRole with an invalid name: InvalidParameter.RoleName.InvalidChars 400", lambda: ram.create_role(ram_models.CreateRoleRequest(
        role_name="no/slash", assume_role_policy_document=rrsa_trust("x"))), "InvalidParameter.RoleName.InvalidChars", 400)
    expect("CreateRole with a 65-character name: InvalidParameter.RoleName.Length 400", lambda: ram.create_role(ram_models.CreateRoleRequest(
        role_name="r" * 65, assume_role_policy_document=rrsa_trust("x"))), "InvalidParameter.RoleName.Length", 400)
    expect("CreateRole with a trust policy without Principal: MalformedPolicyDocument 400", lambda: ram.create_role(ram_models.CreateRoleRequest(
        role_name=f"{p}-bad", assume_role_policy_document=allow_get_own)), "MalformedPolicyDocument", 400)
    expect("GetRole missing: EntityNotExist.Role 404", lambda: ram.get_role(ram_models.GetRoleRequest(role_name=f"{p}-nope")), "EntityNotExist.Role", 404)
    ram.update_role(ram_models.UpdateRoleRequest(role_name=reader_role, new_assume_role_policy_document=rrsa_trust("reader")))
    fetched = ram.get_role(ram_models.GetRoleRequest(role_name=reader_role)).body.role
    check("UpdateRole + GetRole: the new trust policy, as a JSON string",
          json.loads(fetched.assume_role_policy_document) == json.loads(rrsa_trust("reader")) and bool(fetched.update_date), fetched.to_map())
    ram.attach_policy_to_role(ram_models.AttachPolicyToRoleRequest(policy_type="Custom", policy_name=policy, role_name=reader_role))
    expect("AttachPolicyToRole twice: EntityAlreadyExists.Role.Policy 409", lambda: ram.attach_policy_to_role(ram_models.AttachPolicyToRoleRequest(
        policy_type="Custom", policy_name=policy, role_name=reader_role)), "EntityAlreadyExists.Role.Policy", 409)
    attached = ram.list_policies_for_role(ram_models.ListPoliciesForRoleRequest(role_name=reader_role)).body.policies.policy
    check("ListPoliciesForRole: the policy, Custom, with AttachDate",
          [(a.policy_name, a.policy_type, a.default_version) for a in attached] == [(policy, "Custom", "v5")] and bool(attached[0].attach_date),
          [a.to_map() for a in attached])
    expect("DeleteRole with a policy attached: DeleteConflict.Role.Policy 409", lambda: ram.delete_role(
        ram_models.DeleteRoleRequest(role_name=reader_role)), "DeleteConflict.Role.Policy", 409)
    expect("DeletePolicy while attached: DeleteConflict.Policy.Role 409", lambda: ram.delete_policy(
        ram_models.DeletePolicyRequest(policy_name=policy)), "DeleteConflict.Policy.Role", 409)

    # ListRoles / ListPolicies (the crash tests list every role and policy to find leftovers).
    names, marker = [], None
    while True:
        listed = ram.list_roles(ram_models.ListRolesRequest(max_items=1, marker=marker)).body
        names += [r.role_name for r in listed.roles.role]
        if not listed.is_truncated:
            break
        marker = listed.marker
    check("ListRoles: pages of 1 with IsTruncated and Marker, every role", {reader_role, other_role} <= set(names) and len(names) == len(set(names)), names)
    policies = ram.list_policies(ram_models.ListPoliciesRequest(policy_type="Custom", max_items=1000)).body
    check("ListPolicies (Custom): the policy, with its default version",
          any(x.policy_name == policy and x.default_version == "v5" for x in policies.policies.policy) and policies.is_truncated is False,
          policies.to_map())
    expect("ListRoles with MaxItems 0: InvalidParameter.MaxItems.Range 400", lambda: ram.list_roles(ram_models.ListRolesRequest(max_items=0)),
           "InvalidParameter.MaxItems.Range", 400)

    # --- tags --------------------------------------------------------------------------------
    ram.tag_resources(ram_models.TagResourcesRequest(resource_type="role", resource_names=[reader_role], tag=[
        ram_models.TagResourcesRequestTag(key="bucketwire.io/uid", value=ns), ram_models.TagResourcesRequestTag(key="owner", value="wire")]))
    rows = ram.list_tag_resources(ram_models.ListTagResourcesRequest(resource_type="role", resource_names=[reader_role])).body.tag_resources
    check("TagResources + ListTagResources: both tags of the role",
          sorted((r.resource_name, r.resource_type, r.tag_key, r.tag_value) for r in rows)
          == [(reader_role, "role", "bucketwire.io/uid", ns), (reader_role, "role", "owner", "wire")], [r.to_map() for r in rows])
    first = ram.list_tag_resources(ram_models.ListTagResourcesRequest(resource_type="role", resource_names=[reader_role], page_size=1)).body
    rest = ram.list_tag_resources(ram_models.ListTagResourcesRequest(resource_type="role", resource_names=[reader_role], page_size=1,
                                                                     next_token=first.next_token)).body
    check("ListTagResources: pages of 1 with NextToken",
          len(first.tag_resources) == 1 and bool(first.next_token) and len(rest.tag_resources) == 1 and not rest.next_token
          and first.tag_resources[0].tag_key != rest.tag_resources[0].tag_key, (first.to_map(), rest.to_map()))
    expect("TagResources with a reserved key: InvalidParameter.Tag.Key 400", lambda: ram.tag_resources(ram_models.TagResourcesRequest(
        resource_type="role", resource_names=[reader_role], tag=[ram_models.TagResourcesRequestTag(key="acs:x", value="y")])),
        "InvalidParameter.Tag.Key", 400)
    expect("TagResources on a missing role: EntityNotExist.Role 404", lambda: ram.tag_resources(ram_models.TagResourcesRequest(
        resource_type="role", resource_names=[f"{p}-nope"], tag=[ram_models.TagResourcesRequestTag(key="k", value="v")])), "EntityNotExist.Role", 404)
    ram.untag_resources(ram_models.UntagResourcesRequest(resource_type="role", resource_names=[reader_role], tag_keys=["owner"]))
    rows = ram.list_tag_resources(ram_models.ListTagResourcesRequest(resource_type="role", resource_names=[reader_role])).body.tag_resources
    check("UntagResources: the other tag is left", [(r.tag_key, r.tag_value) for r in rows] == [("bucketwire.io/uid", ns)], [r.to_map() for r in rows])

    # --- AssumeRoleWithOIDC ------------------------------------------------------------------
    reader_arn = f"acs:ram::{account}:role/{reader_role.lower()}"

    def oidc(token, role_arn=reader_arn, provider=provider_arn):
        return anonymous_sts.assume_role_with_oidc(sts_models.AssumeRoleWithOIDCRequest(
            role_arn=role_arn, oidcprovider_arn=provider, oidctoken=token, role_session_name="wire-reader"))

    answer = oidc(tokens["reader"]).body
    creds = answer.credentials
    check("AssumeRoleWithOIDC: STS credentials with an Expiration",
          creds.access_key_id.startswith("STS.") and bool(creds.access_key_secret) and bool(creds.security_token)
          and creds.expiration.endswith("Z"), answer.to_map())
    check("AssumeRoleWithOIDC: AssumedRoleUser names the role and session",
          answer.assumed_role_user.arn == f"{reader_arn}/wire-reader" and answer.assumed_role_user.assumed_role_id == f"{role.role_id}:wire-reader",
          answer.assumed_role_user.to_map())
    check("AssumeRoleWithOIDC: OIDCTokenInfo (issuer, subject, client ids)",
          (answer.oidctoken_info.issuer, answer.oidctoken_info.subject, answer.oidctoken_info.client_ids)
          == (issuer, f"system:serviceaccount:{ns}:reader", "sts.aliyuncs.com"), answer.oidctoken_info.to_map())
    refusals = {
        "other-sa": ("AuthenticationFail.NoPermission", 403),  # the trust names ServiceAccount reader only
        "wrong-audience": ("AuthenticationFail.OIDCToken.AudienceNotMatch", 400),
        "tampered": ("AuthenticationFail.OIDCToken.Invalid", 400),
    }
    if given.get("signingKey"):
        tokens = {**tokens, "expired": expired_copy(tokens["reader"], given["signingKey"])}
        refusals["expired"] = ("AuthenticationFail.OIDCToken.Expired", 400)
    for name, expected in refusals.items():
        expect(f"AssumeRoleWithOIDC refused: {name}", lambda: oidc(tokens[name]), *expected)
    expect("AssumeRoleWithOIDC with an unregistered provider: AuthenticationFail.NoPermission 403",
           lambda: oidc(tokens["reader"], provider=f"acs:ram::{account}:oidc-provider/{p}-nope"), "AuthenticationFail.NoPermission", 403)
    expect("AssumeRoleWithOIDC with a provider of another issuer: AuthenticationFail.OIDCToken.IssuerNotMatch 400",
           lambda: oidc(tokens["reader"], provider=f"acs:ram::{account}:oidc-provider/{p}-idp-0"), "AuthenticationFail.OIDCToken.IssuerNotMatch", 400)
    expect("AssumeRoleWithOIDC of a missing role: EntityNotExist.Role 404",
           lambda: oidc(tokens["reader"], role_arn=f"acs:ram::{account}:role/{p}-nope"), "EntityNotExist.Role", 404)

    # --- the credentials act as the role, and only as the role -------------------------------
    as_role = (creds.access_key_id, creds.access_key_secret, creds.security_token)
    who = seed.sts(endpoint, *as_role).get_caller_identity().body
    check("STS credentials: GetCallerIdentity is the assumed role",
          (who.identity_type, who.arn, who.role_id) == ("AssumedRoleUser", f"acs:ram::{account}:assumed-role/{reader_role.lower()}/wire-reader", role.role_id),
          who.to_map())
    role_ram = seed.ram(endpoint, *as_role)
    check("STS credentials: ram:GetRole on the role itself (its policy allows it)",
          role_ram.get_role(ram_models.GetRoleRequest(role_name=reader_role)).body.role.arn == reader_arn)
    code, status, message, denied = expect("STS credentials: ram:GetRole on another role is NoPermission 403",
                                           lambda: role_ram.get_role(ram_models.GetRoleRequest(role_name=other_role)), "NoPermission", 403)
    check("NoPermission names the resource and action as RAM does",
          f"You are not authorized to do this action. Resource: acs:ram:*:{account}:role/{other_role} Action: ram:GetRole" in message, message)
    check("NoPermission carries AccessDeniedDetail (AuthAction, ImplicitDeny, AssumedRoleUser)",
          isinstance(denied, dict) and (denied.get("AuthAction"), denied.get("NoPermissionType"), denied.get("AuthPrincipalType"))
          == ("ram:GetRole", "ImplicitDeny", "AssumedRoleUser"), denied)
    expect("STS credentials: DescribeClusterDetail outside the policy is Forbidden.RAM 403",
           lambda: seed.cs(endpoint, *as_role).describe_cluster_detail(cluster_id), "Forbidden.RAM", 403)
    expect("STS credentials with another session's token: InvalidSecurityToken.MismatchWithAccessKey 400",
           lambda: seed.sts(endpoint, creds.access_key_id, creds.access_key_secret, "CAIS" + "x" * 360).get_caller_identity(),
           "InvalidSecurityToken.MismatchWithAccessKey", 400)

    # --- AssumeRole across accounts, with ExternalId -----------------------------------------
    zilliz_role = f"{p}-zilliz"
    external_id = f"ext-{p}"
    ram.create_role(ram_models.CreateRoleRequest(role_name=zilliz_role, assume_role_policy_document=json.dumps({
        "Version": "1", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"RAM": [f"acs:ram::{second}:root"]},
                                       "Condition": {"StringEquals": {"sts:ExternalId": external_id}}}]})))
    zilliz_arn = f"acs:ram::{account}:role/{zilliz_role}"
    second_sts = seed.sts(endpoint, *second_admin)
    assumed = second_sts.assume_role(sts_models.AssumeRoleRequest(role_arn=zilliz_arn, role_session_name="zilliz",
                                                                  external_id=external_id, duration_seconds=900)).body
    check("AssumeRole from the second account with the right ExternalId",
          assumed.credentials.access_key_id.startswith("STS.") and assumed.assumed_role_user.arn == f"{zilliz_arn}/zilliz", assumed.to_map())
    who = seed.sts(endpoint, assumed.credentials.access_key_id, assumed.credentials.access_key_secret,
                   assumed.credentials.security_token).get_caller_identity().body
    check("AssumeRole: the credentials are the role's, in the main account", (who.account_id, who.identity_type) == (account, "AssumedRoleUser"), who.to_map())
    expect("AssumeRole without ExternalId: NoPermission 403", lambda: second_sts.assume_role(sts_models.AssumeRoleRequest(
        role_arn=zilliz_arn, role_session_name="zilliz")), "NoPermission", 403)
    expect("AssumeRole with a wrong ExternalId: NoPermission 403", lambda: second_sts.assume_role(sts_models.AssumeRoleRequest(
        role_arn=zilliz_arn, role_session_name="zilliz", external_id="ext-wrong")), "NoPermission", 403)
    expect("AssumeRole by an account the trust does not name: NoPermission 403", lambda: sts.assume_role(sts_models.AssumeRoleRequest(
        role_arn=zilliz_arn, role_session_name="zilliz", external_id=external_id)), "NoPermission", 403)
    expect("AssumeRole with DurationSeconds above the role's maximum: InvalidParameter.DurationSeconds 400",
           lambda: second_sts.assume_role(sts_models.AssumeRoleRequest(role_arn=zilliz_arn, role_session_name="zilliz",
                                                                         external_id=external_id, duration_seconds=7200)),
           "InvalidParameter.DurationSeconds", 400)
    expect("AssumeRole with a one-character session name: InvalidParameter.RoleSessionName.Length 400",
           lambda: second_sts.assume_role(sts_models.AssumeRoleRequest(role_arn=zilliz_arn, role_session_name="z", external_id=external_id)),
           "InvalidParameter.RoleSessionName.Length", 400)

    # A RAM user of the second account without sts:AssumeRole in its policies: refused by its own side.
    second_ram = seed.ram(endpoint, *second_admin)
    second_ram.create_user(ram_models.CreateUserRequest(user_name=f"{p}-nobody"))
    key = second_ram.create_access_key(ram_models.CreateAccessKeyRequest(user_name=f"{p}-nobody")).body.access_key
    code, _, message, _ = expect("AssumeRole by a RAM user without sts:AssumeRole: NoPermission 403", lambda: seed.sts(
        endpoint, key.access_key_id, key.access_key_secret).assume_role(sts_models.AssumeRoleRequest(
            role_arn=zilliz_arn, role_session_name="zilliz", external_id=external_id)), "NoPermission", 403)
    check("the refusal names sts:AssumeRole on the role", f"Resource: {zilliz_arn} Action: sts:AssumeRole" in message, message)

    # An explicit Deny wins over an Allow (a RAM user with ram:* and a Deny of ram:DeleteRole).
    deny = f"{p}-deny-delete"
    ram.create_policy(ram_models.CreatePolicyRequest(policy_name=deny, policy_document=json.dumps({"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": "ram:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "RAM:deleterole", "Resource": f"acs:ram:*:{account}:role/*"}]})))
    ram.create_user(ram_models.CreateUserRequest(user_name=f"{p}-denied"))
    ram.attach_policy_to_user(ram_models.AttachPolicyToUserRequest(policy_type="Custom", policy_name=deny, user_name=f"{p}-denied"))
    key = ram.create_access_key(ram_models.CreateAccessKeyRequest(user_name=f"{p}-denied")).body.access_key
    denied_ram = seed.ram(endpoint, key.access_key_id, key.access_key_secret)
    check("an Allow of ram:* lets the user GetRole", denied_ram.get_role(ram_models.GetRoleRequest(role_name=other_role)).body.role.role_name == other_role)
    _, _, _, denied = expect("an explicit Deny (action matched case-insensitively) wins: NoPermission 403",
                             lambda: denied_ram.delete_role(ram_models.DeleteRoleRequest(role_name=other_role)), "NoPermission", 403)
    check("the refusal is an ExplicitDeny", isinstance(denied, dict) and denied.get("NoPermissionType") == "ExplicitDeny", denied)

    # --- signatures ---------------------------------------------------------------------------
    expect("a wrong secret: SignatureDoesNotMatch 400", lambda: seed.sts(endpoint, admin[0], "wrong-secret").get_caller_identity(),
           "SignatureDoesNotMatch", 400)
    expect("an unknown AccessKeyId: InvalidAccessKeyId.NotFound 404", lambda: seed.sts(endpoint, "LTAI" + "0" * 20, "x").get_caller_identity(),
           "InvalidAccessKeyId.NotFound", 404)

    # --- cleanup, which is the delete half of the lifecycle ----------------------------------
    ram.detach_policy_from_role(ram_models.DetachPolicyFromRoleRequest(policy_type="Custom", policy_name=policy, role_name=reader_role))
    expect("DetachPolicyFromRole twice: EntityNotExist.Role.Policy 404", lambda: ram.detach_policy_from_role(ram_models.DetachPolicyFromRoleRequest(
        policy_type="Custom", policy_name=policy, role_name=reader_role)), "EntityNotExist.Role.Policy", 404)
    check("ListPoliciesForRole after detaching: none", ram.list_policies_for_role(
        ram_models.ListPoliciesForRoleRequest(role_name=reader_role)).body.policies.policy == [])
    ram.delete_policy(ram_models.DeletePolicyRequest(policy_name=policy))
    expect("GetPolicy after DeletePolicy: EntityNotExist.Policy 404", lambda: ram.get_policy(ram_models.GetPolicyRequest(
        policy_name=policy, policy_type="Custom")), "EntityNotExist.Policy", 404)
    for name in (reader_role, other_role, zilliz_role):
        ram.delete_role(ram_models.DeleteRoleRequest(role_name=name))
    expect("GetRole after DeleteRole: EntityNotExist.Role 404", lambda: ram.get_role(ram_models.GetRoleRequest(role_name=reader_role)),
           "EntityNotExist.Role", 404)
    expect("AssumeRoleWithOIDC after DeleteRole: EntityNotExist.Role 404", lambda: oidc(tokens["reader"]), "EntityNotExist.Role", 404)
    print(json.dumps({"checks": CHECKS}))


if __name__ == "__main__":
    main()
