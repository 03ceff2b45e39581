"""Starting and seeding the test bed's Alibaba Cloud control-plane FAKE (control_plane.py), for
tests/testbed/testbed.py.

Two accounts, as the AWS side has: the "main" account (the cluster owner's) and a second one
standing for Zilliz Cloud. Each has a root AccessKey the fake is started with (in
target/testbed/alibaba-config.json, mode 0600, never in the environment file) and, seeded here
through the official SDKs with that root key, an administrator: RAM user
bucketwire-testbed-admin with the system policy AdministratorAccess and an AccessKey, whose key
the environment file carries. The main account also has the operator's RAM user,
bucketwire-testbed-operator, carrying exactly deploy/alibaba/operator-policy.json (rendered for
this account, the cluster and the bucket prefix bw-), whose key every test runs the operator
with. The main account has an ACK cluster in cn-hangzhou with RRSA
enabled; its OIDC provider ack-rrsa-<cluster id> is registered in RAM (IMS CreateOIDCProvider)
with IssuerUrl = the apiserver's service-account issuer and ClientIds sts.aliyuncs.com, as ACK
registers it when RRSA is enabled.
"""

import json
import os
import re
import secrets
import string
from pathlib import Path

REGION = "cn-hangzhou"
MAIN_ACCOUNT_ID = "1234567890123456"
SECOND_ACCOUNT_ID = "5555666677778888"  # stands for Zilliz Cloud's account
ADMIN_USER = "bucketwire-testbed-admin"
OPERATOR_USER = "bucketwire-testbed-operator"
# Outside `bucketwire-*`: the operator policy lets the operator manage the RAM policies and
# roles named so, and its own must not be one of them (README, "Alibaba Cloud").
OPERATOR_POLICY_NAME = "BucketwireOperator"
# The bucket prefix the operator runs with on the test bed (its policy's ${BUCKET_PREFIX}).
BUCKET_PREFIX = "bw-"
OPERATOR_POLICY = Path(__file__).resolve().parents[3] / "deploy" / "alibaba" / "operator-policy.json"
CLUSTER_NAME = "bucketwire-testbed"
# An HTTPS CA fingerprint in the shape ACK registers (SHA-1 hex); the fake never checks it.
FINGERPRINT = "902ef2deeb3c5b13ea4c3d5193629309e231ae55"


def _text(n):
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


def make_config(issuer):
    """The fake's --config: accounts with fresh root keys, and the ACK cluster."""
    cluster_id = "c" + secrets.token_hex(16)
    return {
        "accounts": [
            {"id": MAIN_ACCOUNT_ID, "name": "bucketwire-testbed-main", "accessKeyId": "LTAI" + _text(20), "accessKeySecret": _text(30)},
            {"id": SECOND_ACCOUNT_ID, "name": "bucketwire-testbed-zilliz", "accessKeyId": "LTAI" + _text(20), "accessKeySecret": _text(30)},
        ],
        "clusters": [{"id": cluster_id, "account": MAIN_ACCOUNT_ID, "name": CLUSTER_NAME, "region": REGION,
                      "issuer": issuer, "oidcName": f"ack-rrsa-{cluster_id}"}],
    }


def write_config(path, config):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f, indent=2)


def sdk_config(endpoint, access_key_id=None, secret=None, token=None):
    """An alibabacloud-tea-openapi Config for the fake at `endpoint` (http://host:port)."""
    from alibabacloud_tea_openapi import models as open_api_models

    protocol, _, host = endpoint.partition("://")
    return open_api_models.Config(
        access_key_id=access_key_id, access_key_secret=secret, security_token=token,
        endpoint=host, protocol=protocol, region_id=REGION, read_timeout=10000, connect_timeout=5000,
    )


def ram(endpoint, key_id, secret, token=None):
    from alibabacloud_ram20150501.client import Client

    return Client(sdk_config(endpoint, key_id, secret, token))


def ims(endpoint, key_id, secret, token=None):
    from alibabacloud_ims20190815.client import Client

    return Client(sdk_config(endpoint, key_id, secret, token))


def sts(endpoint, key_id=None, secret=None, token=None):
    from alibabacloud_sts20150401.client import Client

    return Client(sdk_config(endpoint, key_id, secret, token))


def cs(endpoint, key_id, secret, token=None):
    from alibabacloud_cs20151215.client import Client

    return Client(sdk_config(endpoint, key_id, secret, token))


def seed_admin(endpoint, account):
    """The account's administrator (RAM user with AdministratorAccess): (access key id, secret)."""
    from alibabacloud_ram20150501 import models as ram_models

    client = ram(endpoint, account["accessKeyId"], account["accessKeySecret"])
    client.create_user(ram_models.CreateUserRequest(user_name=ADMIN_USER, display_name=ADMIN_USER))
    client.attach_policy_to_user(ram_models.AttachPolicyToUserRequest(
        policy_type="System", policy_name="AdministratorAccess", user_name=ADMIN_USER))
    key = client.create_access_key(ram_models.CreateAccessKeyRequest(user_name=ADMIN_USER)).body.access_key
    return key.access_key_id, key.access_key_secret


def operator_policy(account_id, cluster_id, bucket_prefix=BUCKET_PREFIX):
    """deploy/alibaba/operator-policy.json with its placeholders filled in, as the README's
    envsubst fills them; a placeholder without a value is an error."""
    values = {"ACCOUNT_ID": account_id, "CLUSTER_ID": cluster_id, "BUCKET_PREFIX": bucket_prefix}
    text = OPERATOR_POLICY.read_text()
    missing = sorted({n for n in re.findall(r"\$\{([A-Z_]+)\}", text) if n not in values})
    if missing:
        raise ValueError(f"no value for {missing}")
    return re.sub(r"\$\{([A-Z_]+)\}", lambda m: values[m.group(1)], text)


def seed_operator(endpoint, admin_key, account_id, cluster_id):
    """The RAM user the operator runs as: exactly deploy/alibaba/operator-policy.json (custom
    policy BucketwireOperator), and an AccessKey: (access key id, secret)."""
    from alibabacloud_ram20150501 import models as ram_models

    client = ram(endpoint, *admin_key)
    client.create_policy(ram_models.CreatePolicyRequest(
        policy_name=OPERATOR_POLICY_NAME, policy_document=operator_policy(account_id, cluster_id),
        description="bucketwire's operator (deploy/alibaba/operator-policy.json)"))
    client.create_user(ram_models.CreateUserRequest(user_name=OPERATOR_USER, display_name=OPERATOR_USER))
    client.attach_policy_to_user(ram_models.AttachPolicyToUserRequest(
        policy_type="Custom", policy_name=OPERATOR_POLICY_NAME, user_name=OPERATOR_USER))
    key = client.create_access_key(ram_models.CreateAccessKeyRequest(user_name=OPERATOR_USER)).body.access_key
    return key.access_key_id, key.access_key_secret


def seed(endpoint, config):
    """Seeds the running fake; returns the BUCKETWIRE_TESTBED_ALIBABA_* part of the environment."""
    from alibabacloud_ims20190815 import models as ims_models

    main, second = config["accounts"]
    cluster = config["clusters"][0]
    main_key = seed_admin(endpoint, main)
    second_key = seed_admin(endpoint, second)
    operator_key = seed_operator(endpoint, main_key, main["id"], cluster["id"])
    provider = ims(endpoint, *main_key).create_oidcprovider(ims_models.CreateOIDCProviderRequest(
        oidcprovider_name=cluster["oidcName"], issuer_url=cluster["issuer"], client_ids="sts.aliyuncs.com",
        fingerprints=FINGERPRINT, issuance_limit_time=12,
        description=f"RRSA of ACK cluster {cluster['id']}",
    )).body.oidcprovider
    return {
        "BUCKETWIRE_TESTBED_ALIBABA_REGION": REGION,
        "BUCKETWIRE_TESTBED_ALIBABA_ACCOUNT_ID": main["id"],
        "BUCKETWIRE_TESTBED_ALIBABA_ACCESS_KEY_ID": main_key[0],
        "BUCKETWIRE_TESTBED_ALIBABA_ACCESS_KEY_SECRET": main_key[1],
        "BUCKETWIRE_TESTBED_ALIBABA_OPERATOR_ACCESS_KEY_ID": operator_key[0],
        "BUCKETWIRE_TESTBED_ALIBABA_OPERATOR_ACCESS_KEY_SECRET": operator_key[1],
        "BUCKETWIRE_TESTBED_ALIBABA_SECOND_ACCOUNT_ID": second["id"],
        "BUCKETWIRE_TESTBED_ALIBABA_SECOND_ACCESS_KEY_ID": second_key[0],
        "BUCKETWIRE_TESTBED_ALIBABA_SECOND_ACCESS_KEY_SECRET": second_key[1],
        "BUCKETWIRE_TESTBED_ALIBABA_CLUSTER_ID": cluster["id"],
        "BUCKETWIRE_TESTBED_ALIBABA_OIDC_PROVIDER_ARN": provider.arn,
        "BUCKETWIRE_TESTBED_ALIBABA_OIDC_ISSUER": cluster["issuer"],
    }
