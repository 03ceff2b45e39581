"""Pins the wire format of the test bed's EKS Pod Identity fake (eks_pod_identity.py) by driving it
with boto3's `eks` and `eks-auth` clients: their botocore service models build every request and
parse every answer, so a field, status or error shape the fake gets wrong fails here. Run by
tests/eks_fake.rs, which prepares the Kubernetes side and passes it in a JSON argument:

    eks_fake_wire.py '{"namespace": ..., "tokens": {...}, "bucket": ...}'

with the test bed's environment (target/testbed/env) in the process environment. Prints one JSON
line of what was checked; exits non-zero with the failed check otherwise.
"""

import json
import os
import sys

import boto3
from botocore.exceptions import ClientError

CHECKS = []


def check(name, ok, detail=""):
    if not ok:
        print(json.dumps({"failed": name, "detail": str(detail)}))
        sys.exit(1)
    CHECKS.append(name)


def error_code(call):
    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"], error.response["Error"].get("Message", "")
    return None, 200, ""


def main():
    given = json.loads(sys.argv[1])
    ns, tokens, bucket = given["namespace"], given["tokens"], given["bucket"]
    endpoint = os.environ["BUCKETWIRE_AWS_ENDPOINT_URL"]
    region = os.environ["AWS_REGION"]
    account = os.environ["BUCKETWIRE_TESTBED_ACCOUNT_ID"]
    cluster = os.environ["BUCKETWIRE_CLUSTER_NAME"]
    admin = boto3.Session(region_name=region)  # the administrator's keys, from the environment
    eks = admin.client("eks", endpoint_url=endpoint)
    auth = admin.client("eks-auth", endpoint_url=endpoint)
    iam = admin.client("iam", endpoint_url=endpoint)
    cluster_arn = eks.describe_cluster(name=cluster)["cluster"]["arn"]

    def role(name, service_account):
        trust = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"StringEquals": {
                "aws:RequestTag/eks-cluster-arn": cluster_arn,
                "aws:RequestTag/kubernetes-namespace": ns,
                "aws:RequestTag/kubernetes-service-account": service_account}}}]}
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        iam.put_role_policy(RoleName=name, PolicyName="read", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket",
                                                    "Resource": f"arn:aws:s3:::{bucket}"}]}))
        return arn

    reader = role(f"{ns}-reader", "reader")
    other = role(f"{ns}-other", "someone-else")

    # The association's lifecycle, every field as the model names it.
    created = eks.create_pod_identity_association(
        clusterName=cluster, namespace=ns, serviceAccount="reader", roleArn=reader,
        tags={"bucketwire.io/uid": "wire-test"})["association"]
    association_id = created["associationId"]
    check("create: id a- + 17 lowercase alphanumerics",
          association_id.startswith("a-") and len(association_id) == 19 and association_id[2:].isalnum()
          and association_id[2:] == association_id[2:].lower(), association_id)
    check("create: ARN", created["associationArn"] ==
          f"arn:aws:eks:{region}:{account}:podidentityassociation/{cluster}/{association_id}", created["associationArn"])
    check("create: fields", (created["clusterName"], created["namespace"], created["serviceAccount"], created["roleArn"],
                             created["tags"]) == (cluster, ns, "reader", reader, {"bucketwire.io/uid": "wire-test"}), created)
    check("create: timestamps parsed", hasattr(created["createdAt"], "year") and hasattr(created["modifiedAt"], "year"))
    code, status, _ = error_code(lambda: eks.create_pod_identity_association(
        clusterName=cluster, namespace=ns, serviceAccount="reader", roleArn=other))
    check("create twice: ResourceInUseException 409", (code, status) == ("ResourceInUseException", 409), (code, status))
    code, status, _ = error_code(lambda: eks.create_pod_identity_association(
        clusterName="no-such-cluster", namespace=ns, serviceAccount="reader", roleArn=reader))
    check("create in a missing cluster: ResourceNotFoundException 404", (code, status) == ("ResourceNotFoundException", 404), code)

    # List: summaries without the role, filters, pages.
    for n in range(3):
        eks.create_pod_identity_association(clusterName=cluster, namespace=ns, serviceAccount=f"page-{n}", roleArn=other)
    listed = eks.list_pod_identity_associations(clusterName=cluster, namespace=ns, serviceAccount="reader")["associations"]
    check("list: filtered to one ServiceAccount", [a["associationId"] for a in listed] == [association_id], listed)
    check("list: summaries carry no role", "roleArn" not in listed[0], listed[0])
    pages = list(eks.get_paginator("list_pod_identity_associations").paginate(
        clusterName=cluster, namespace=ns, PaginationConfig={"PageSize": 2}))
    seen = [a["associationId"] for p in pages for a in p["associations"]]
    check("list: pages of 2 hold all 4 once", len(pages) == 2 and len(seen) == 4 and len(set(seen)) == 4, seen)

    # Describe, update (role only), describe again.
    described = eks.describe_pod_identity_association(clusterName=cluster, associationId=association_id)["association"]
    check("describe: the role", described["roleArn"] == reader, described)
    updated = eks.update_pod_identity_association(clusterName=cluster, associationId=association_id, roleArn=other)["association"]
    check("update: the new role", updated["roleArn"] == other, updated)
    eks.update_pod_identity_association(clusterName=cluster, associationId=association_id, roleArn=reader)
    code, status, _ = error_code(lambda: eks.describe_pod_identity_association(clusterName=cluster, associationId="a-00000000000000000"))
    check("describe a missing one: ResourceNotFoundException 404", (code, status) == ("ResourceNotFoundException", 404), code)

    # AssumeRoleForPodIdentity: the token, the association, the trust, then usable credentials.
    answer = auth.assume_role_for_pod_identity(clusterName=cluster, token=tokens["reader"])
    check("assume: subject", answer["subject"] == {"namespace": ns, "serviceAccount": "reader"}, answer["subject"])
    check("assume: audience", answer["audience"] == "pods.eks.amazonaws.com")
    check("assume: association", answer["podIdentityAssociation"] ==
          {"associationArn": created["associationArn"], "associationId": association_id}, answer["podIdentityAssociation"])
    check("assume: the role's session", answer["assumedRoleUser"]["arn"].startswith(
        f"arn:aws:sts::{account}:assumed-role/{ns}-reader/eks-{cluster}-"), answer["assumedRoleUser"])
    creds = answer["credentials"]
    check("assume: credentials with an expiration", creds["accessKeyId"].startswith("ASIA") and hasattr(creds["expiration"], "year"), creds["accessKeyId"])
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region, aws_access_key_id=creds["accessKeyId"],
                      aws_secret_access_key=creds["secretAccessKey"], aws_session_token=creds["sessionToken"])
    s3.list_objects_v2(Bucket=bucket)
    check("assume: the credentials act as the role", True)
    code, _, _ = error_code(lambda: s3.put_object(Bucket=bucket, Key="x", Body=b"x"))
    check("assume: and only as the role (no s3:PutObject)", code == "AccessDenied", code)

    refusals = {
        # A role whose trust names another ServiceAccount.
        "other-sa": ("AccessDeniedException", 403),
        # Audience sts.amazonaws.com, as IRSA's.
        "wrong-audience": ("InvalidTokenException", 400),
        # The reader's token with its signature's last character changed.
        "tampered": ("InvalidTokenException", 400),
        # A ServiceAccount with no association.
        "unassociated": ("ResourceNotFoundException", 404),
    }
    eks.create_pod_identity_association(clusterName=cluster, namespace=ns, serviceAccount="other-sa", roleArn=reader)
    for name, expected in refusals.items():
        code, status, message = error_code(lambda: auth.assume_role_for_pod_identity(clusterName=cluster, token=tokens[name]))
        check(f"assume refused: {name}", (code, status) == expected, (code, status, message))

    # The operator's role, without eks-auth:AssumeRoleForPodIdentity in a policy: refused,
    # naming the action (bucketwire's validation then falls back to static checks).
    code, status, message = error_code(lambda: boto3.client(
        "eks-auth", endpoint_url=endpoint, region_name=region,
        aws_access_key_id=given["noAuthKey"]["accessKeyId"], aws_secret_access_key=given["noAuthKey"]["secretAccessKey"],
    ).assume_role_for_pod_identity(clusterName=cluster, token=tokens["reader"]))
    check("assume as a caller without eks-auth: AccessDeniedException naming the action",
          code == "AccessDeniedException" and "eks-auth:AssumeRoleForPodIdentity" in message, (code, message))

    # Delete: the association goes, and a second delete finds nothing.
    deleted = eks.delete_pod_identity_association(clusterName=cluster, associationId=association_id)["association"]
    check("delete: returns the association", deleted["associationId"] == association_id)
    code, status, _ = error_code(lambda: eks.delete_pod_identity_association(clusterName=cluster, associationId=association_id))
    check("delete twice: ResourceNotFoundException 404", (code, status) == ("ResourceNotFoundException", 404), code)
    code, _, _ = error_code(lambda: auth.assume_role_for_pod_identity(clusterName=cluster, token=tokens["reader"]))
    check("assume after delete: ResourceNotFoundException", code == "ResourceNotFoundException", code)
    print(json.dumps({"checks": CHECKS}))


if __name__ == "__main__":
    main()
