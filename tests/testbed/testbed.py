#!/usr/bin/env python3
"""The local test bed: a real kube-apiserver (with etcd, kube-controller-manager and
kube-scheduler), a real node (kubelet, kube-proxy, containerd, runc: node.py) and the moto AWS
emulator, on free ports.

    testbed.py up      start them, seed the emulator, write target/testbed/env
    testbed.py down    stop exactly the processes `up` started (pid files, never by name) and
                       remove what the node left on the host
    testbed.py status  say what is running
    testbed.py import-image ARCHIVE   import an OCI image archive into the node's containerd

The node starts when the machine can run it (root, containerd and runc installed: `make
testbed`); BUCKETWIRE_TESTBED_NODE=0 leaves it out, =1 makes its absence an error. Tests that
need it read BUCKETWIRE_TESTBED_NODE (the node's name) from the environment file.

The emulator is seeded as a real EKS account would be: an EKS cluster (so the operator can
discover its OIDC issuer through DescribeCluster) and the matching IAM OIDC provider (in the
aws, aws-cn and aws-us-gov partitions). The
apiserver signs ServiceAccount tokens with that same issuer, so a token from TokenRequest
looks exactly like one from that EKS cluster.

One issuer, three places: the EKS cluster's `identity.oidc.issuer` (moto makes it up:
`https://oidc.eks.us-east-2.amazonaws.com/id/<ID>`, the shape of a real EKS issuer, which the
operator's trust policies name), the IAM OIDC provider's URL (created from it) and the
apiserver's `--service-account-issuer` (set to it) are the same value. On EKS, the issuer's host
serves the cluster's OIDC discovery document and keys, which STS fetches to verify a token; here
that host does not resolve, and the apiserver serves them itself (ServiceAccountIssuerDiscovery:
/.well-known/openid-configuration and /openid/v1/jwks, whose `issuer` is that same value).
The emulator's AssumeRoleWithWebIdentity fetches them from the apiserver (its kubeconfig is passed
in BUCKETWIRE_TESTBED_KUBECONFIG) and checks the token's signature, expiry and audience and the
role's trust policy as STS does (tests/testbed/web_identity.py).

EKS Pod Identity: EKS's pod identity association API and EKS Auth's AssumeRoleForPodIdentity
are answered by a fake inside the moto launcher (eks_pod_identity.py), against the cluster seeded
here and the apiserver's keys; its wire format is pinned by tests/eks_fake.rs with boto3.

Alibaba Cloud: RAM, IMS's OIDC providers, STS and ACK's DescribeClusterDetail are answered by
a fake of their own (tests/testbed/alibaba/control_plane.py, process "alibaba", one endpoint
for the four, routed by the x-acs-version header), and OSS by the OSS fake (oss.py) in the same
process on the same ports (routed by the Host header: OSS's virtual hosts), seeded by tests/testbed/alibaba/seed.py with
two accounts (the cluster owner's and one standing for Zilliz Cloud), an administrator in each,
and an ACK cluster in cn-hangzhou whose RRSA OIDC provider has the apiserver's issuer; its wire
format is pinned by tests/alibaba_fake.rs with Alibaba's Python SDKs
(BUCKETWIRE_TESTBED_ALIBABA_* in the environment file).

Runs with the project's virtual environment (it needs boto3, which moto brings).
"""

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / "target" / "testbed"
VENV = STATE / "venv"
CONTROLPLANE_BIN = STATE / "bin" / "controlplane"
CONTROLPLANE_DIR = STATE / "controlplane"
ENV_FILE = STATE / "env"

REGION = "us-east-2"
CLUSTER_NAME = "bucketwire-testbed"
ACCOUNT_ID = "123456789012"  # moto's default account
ADMIN_USER = "bucketwire-testbed-admin"
# A second account with its own administrator (cross-account tests: tests/iam_semantics.rs,
# tests/negative_proofs.rs).
SECOND_ACCOUNT_ID = "222233334444"
# Where the README installs the operator (the chart's release `bucketwire` and deploy/).
OPERATOR_NAMESPACE = "bucketwire-system"
OPERATOR_SERVICE_ACCOUNT = "bucketwire"
# Thumbprint of the EKS OIDC root CA, as eksctl registers it.
OIDC_THUMBPRINT = "9e99a48a9960b14926bb7f3b02e22da2b0ab7280"

# name -> pid file; stopped in this order: the node's components first (the kubelet would
# restart the containers the test bed stops), then the control plane (the controller manager and
# scheduler are its children and go with it), then moto and the Alibaba Cloud fake.
NODE_SERVICES = ["kube-proxy", "kubelet", "containerd"]
CORE_SERVICES = ["controlplane", "moto", "alibaba"]
SERVICES = NODE_SERVICES + CORE_SERVICES
# Images every start imports into the node: the Pod sandbox and the workload (built by `make
# testbed`). The operator's own (`make image`) is imported by the tests that install it, under
# a test bed name (tests/node.rs).
IMAGES_DIR = STATE / "images"
WORKLOAD_IMAGE = "localhost/bucketwire-testbed/s3-workload:latest"


def log(msg):
    print(f"testbed: {msg}", flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_file(name):
    return STATE / f"{name}.pid"


def start_time(pid):
    """Kernel start time of a process (field 22 of /proc/PID/stat), or None if it is gone.
    Together with the pid it identifies one process, so a recycled pid is never signalled."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces; fields after it start after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # zombie: exited, waiting to be reaped
        return None
    return fields[19]


def record(name, proc):
    pid_file(name).write_text(f"{proc.pid} {start_time(proc.pid)}\n")


def recorded(name):
    """(pid, start time) of a process we started, if it is still that process."""
    path = pid_file(name)
    if not path.exists():
        return None
    pid_text, _, started = path.read_text().strip().partition(" ")
    pid = int(pid_text)
    if start_time(pid) is None or start_time(pid) != started:
        return None
    return pid


# Every request the emulator answers, one JSON line each (see moto_launcher.py).
REQUEST_LOG = STATE / "moto-requests.jsonl"
# The Alibaba Cloud fake's: the same shape, its own file (tests/testbed/alibaba/control_plane.py).
ALIBABA_REQUEST_LOG = STATE / "alibaba-requests.jsonl"
# The OSS fake's (tests/testbed/alibaba/oss.py), served by the same process on the same ports.
OSS_REQUEST_LOG = STATE / "oss-requests.jsonl"
# Its accounts' root keys and the ACK cluster (mode 0600; the environment file has the
# administrators' keys only).
ALIBABA_CONFIG = STATE / "alibaba-config.json"


def spawn(name, argv, logfile, env=None):
    out = open(STATE / logfile, "wb")
    # A new session makes the process the leader of its own process group, so `down` can
    # signal that group, and only it.
    proc = subprocess.Popen(
        argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, env=env, cwd=STATE,
    )
    record(name, proc)
    return proc


def wait_for(what, check, proc, timeout, logfile):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (STATE / logfile).read_text(errors="replace")[-4000:]
            raise SystemExit(f"testbed: {what} exited with {proc.returncode}; end of {STATE / logfile}:\n{tail}")
        if check():
            return
        time.sleep(0.2)
    raise SystemExit(f"testbed: {what} not ready after {timeout}s; see {STATE / logfile}")


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status < 500
    except Exception:
        return False


def seed_second_account(session, endpoint):
    """The second account's administrator; returns its part of the environment. moto keeps IAM,
    STS and S3 state per account and picks a request's account from its `x-moto-account-id`
    header, else from its access key (moto's docs, "Multi-Account support"): these calls, made
    before enforcement is on, name the account in the header; the key they create then signs
    requests of that account."""
    iam = session.client("iam", endpoint_url=endpoint)
    iam.meta.events.register(
        "before-sign.iam.*",
        lambda request, **_: request.headers.__setitem__("x-moto-account-id", SECOND_ACCOUNT_ID),
    )
    iam.create_user(UserName=ADMIN_USER)
    iam.put_user_policy(
        UserName=ADMIN_USER,
        PolicyName="testbed-admin",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
    return {
        "BUCKETWIRE_TESTBED_SECOND_ACCOUNT_ID": SECOND_ACCOUNT_ID,
        "BUCKETWIRE_TESTBED_SECOND_ACCOUNT_ACCESS_KEY_ID": key["AccessKeyId"],
        "BUCKETWIRE_TESTBED_SECOND_ACCOUNT_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }


def seed(endpoint):
    """Create the EKS cluster, its IAM OIDC provider, an administrator and the operator's own
    role, then turn IAM enforcement on. Returns (issuer, provider ARN, admin access key id,
    secret, the operator's and the second account's part of the environment)."""
    import boto3

    import policies

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    eks = session.client("eks", endpoint_url=endpoint)
    iam = session.client("iam", endpoint_url=endpoint)
    # Everything the tests and the operator do is signed by this user; only what its policy
    # allows passes once enforcement is on, exactly as in an AWS account.
    iam.create_user(UserName=ADMIN_USER)
    iam.put_user_policy(
        UserName=ADMIN_USER,
        PolicyName="testbed-admin",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
    eks.create_cluster(
        name=CLUSTER_NAME,
        version="1.35",
        roleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/{CLUSTER_NAME}-cluster",
        resourcesVpcConfig={"subnetIds": ["subnet-0bucketwire0a", "subnet-0bucketwire0b"]},
    )
    issuer = eks.describe_cluster(name=CLUSTER_NAME)["cluster"]["identity"]["oidc"]["issuer"]
    provider = iam.create_open_id_connect_provider(
        Url=issuer, ClientIDList=["sts.amazonaws.com"], ThumbprintList=[OIDC_THUMBPRINT]
    )["OpenIDConnectProviderArn"]
    # The same cluster's provider in the China and GovCloud partitions, so that integrations
    # there can be wired to this one test cluster.
    for region in ["cn-north-1", "us-gov-west-1"]:
        session.client("iam", endpoint_url=endpoint, region_name=region).create_open_id_connect_provider(
            Url=issuer, ClientIDList=["sts.amazonaws.com"], ThumbprintList=[OIDC_THUMBPRINT]
        )
    # The operator's own identity, made as the README's install step 1 makes it: the
    # recommended permissions boundary (deploy/iam/permissions-boundary.json) and
    # deploy/iam/operator-policy.json, both rendered for this account, partition and the test
    # bed's settings, on a role the administrator assumes. Every test runs the operator with
    # this role's credentials (tests/common/operator.rs), never as the administrator.
    bucket_prefix, role_path, operator_name = "bw-", "/bucketwire/", "bucketwire-testbed-operator"
    boundary = policies.permissions_boundary("aws", ACCOUNT_ID, bucket_prefix)
    boundary_arn = iam.create_policy(
        PolicyName="bucketwire-testbed-boundary", PolicyDocument=json.dumps(boundary),
        Description="What roles bucketwire creates may do at most (deploy/iam/permissions-boundary.json)",
    )["Policy"]["Arn"]
    operator_policy = policies.operator_policy(
        "aws", ACCOUNT_ID, REGION, CLUSTER_NAME, bucket_prefix, role_path, boundary_arn
    )
    operator_policy_arn = iam.create_policy(
        PolicyName=operator_name, PolicyDocument=json.dumps(operator_policy),
        Description="bucketwire's operator (deploy/iam/operator-policy.json)",
    )["Policy"]["Arn"]
    admin_arn = f"arn:aws:iam::{ACCOUNT_ID}:user/{ADMIN_USER}"
    # The tests' operators get this role's credentials from the administrator; the operator the
    # chart installs on the node gets them as on EKS, by IRSA for its ServiceAccount
    # (bucketwire-system/bucketwire, the README's step 1).
    issuer_host = issuer.removeprefix("https://")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": admin_arn}, "Action": "sts:AssumeRole"},
        {"Effect": "Allow", "Principal": {"Federated": provider}, "Action": "sts:AssumeRoleWithWebIdentity",
         "Condition": {"StringEquals": {
             f"{issuer_host}:sub": f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}",
             f"{issuer_host}:aud": "sts.amazonaws.com"}}},
    ]}
    operator_role_arn = iam.create_role(
        RoleName=operator_name, AssumeRolePolicyDocument=json.dumps(trust), MaxSessionDuration=12 * 3600,
        Description="bucketwire's operator on the test bed",
    )["Role"]["Arn"]
    iam.attach_role_policy(RoleName=operator_name, PolicyArn=operator_policy_arn)
    (STATE / "operator-policy.json").write_text(json.dumps(operator_policy, indent=2) + "\n")
    (STATE / "permissions-boundary.json").write_text(json.dumps(boundary, indent=2) + "\n")
    second_account = seed_second_account(session, endpoint)
    # IAM enforcement on from the next request (see moto's /moto-api/reset-auth).
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        if resp.status != 200:
            raise SystemExit(f"testbed: enabling IAM enforcement failed: HTTP {resp.status}")
    # The operator's credentials: AssumeRole by the administrator, for as long as the role
    # allows (12 h: longer than any test run).
    admin = boto3.session.Session(
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], region_name=REGION
    )
    credentials = admin.client("sts", endpoint_url=endpoint).assume_role(
        RoleArn=operator_role_arn, RoleSessionName="bucketwire-operator", DurationSeconds=12 * 3600
    )["Credentials"]
    operator_env = {
        "BUCKETWIRE_OPERATOR_AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
        "BUCKETWIRE_OPERATOR_AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
        "BUCKETWIRE_OPERATOR_AWS_SESSION_TOKEN": credentials["SessionToken"],
        "BUCKETWIRE_OPERATOR_ROLE_ARN": operator_role_arn,
        "BUCKETWIRE_TESTBED_ADMIN_ARN": admin_arn,
        "BUCKETWIRE_TESTBED_PERMISSIONS_BOUNDARY": boundary_arn,
        "BUCKETWIRE_TESTBED_BUCKET_PREFIX": bucket_prefix,
        "BUCKETWIRE_TESTBED_ROLE_PATH": role_path,
    }
    return issuer, provider, key["AccessKeyId"], key["SecretAccessKey"], {**operator_env, **second_account}


def node_wanted():
    """Whether to start the node: when the machine can, unless BUCKETWIRE_TESTBED_NODE says."""
    import node

    wanted = os.environ.get("BUCKETWIRE_TESTBED_NODE", "auto")
    if wanted == "0":
        return False
    reason = node.unavailable_reason(STATE)
    if reason is None:
        return True
    if wanted == "1":
        raise SystemExit(f"testbed: BUCKETWIRE_TESTBED_NODE=1 but {reason}")
    log(f"no node: {reason}; the tests that need one will fail (README, \"The node\")")
    return False


def up(_args):
    STATE.mkdir(parents=True, exist_ok=True)
    running = [name for name in SERVICES if recorded(name)]
    if running:
        if all(name in running for name in CORE_SERVICES) and ENV_FILE.exists():
            log(f"already running; environment in {ENV_FILE}")
            return
        raise SystemExit(f"testbed: partly running ({', '.join(running)}); run `make testbed-down` first")
    ENV_FILE.unlink(missing_ok=True)
    if not CONTROLPLANE_BIN.exists():
        raise SystemExit(f"testbed: {CONTROLPLANE_BIN} is missing; `make testbed-up` builds it")

    try:
        start_all()
    except BaseException:
        log("start failed; stopping what was started")
        down(None)
        raise


def start_all():
    import node

    the_node = node.Node(STATE, CONTROLPLANE_BIN, CONTROLPLANE_DIR, log) if node_wanted() else None
    if the_node:
        # Before the apiserver and moto start: they listen on the bridge's address for Pods.
        the_node.prepare_network()
    moto_port = free_port()
    endpoint = f"http://127.0.0.1:{moto_port}"
    # The same emulator, whose requests count as plain HTTP (aws:SecureTransport = false).
    insecure_port = free_port()
    log(f"starting moto on {endpoint}")
    launcher = Path(__file__).with_name("moto_launcher.py")
    REQUEST_LOG.unlink(missing_ok=True)
    moto = spawn(
        "moto",
        # With a node, Pods reach it on the bridge's address too.
        [str(VENV / "bin" / "python"), str(launcher), "-H", "0.0.0.0" if the_node else "127.0.0.1",
         "-p", str(moto_port)],
        "moto.log",
        # The web-identity verifier reads the issuer's discovery and keys from the apiserver
        # (tests/testbed/web_identity.py); the kubeconfig appears once the apiserver is up.
        env={**os.environ, "MOTO_REQUEST_LOG": str(REQUEST_LOG), "MOTO_INSECURE_PORT": str(insecure_port),
             "BUCKETWIRE_TESTBED_KUBECONFIG": str(CONTROLPLANE_DIR / "kubeconfig")},
    )
    wait_for("moto", lambda: http_ok(f"{endpoint}/moto-api/"), moto, 60, "moto.log")

    issuer, provider_arn, access_key, secret_key, seeded_env = seed(endpoint)
    log(f"seeded EKS cluster {CLUSTER_NAME} (issuer {issuer}), its IAM OIDC provider and user {ADMIN_USER}")
    log("IAM enforcement is on: every request must be signed by an IAM identity allowed to make it")
    alibaba_env = start_alibaba(issuer, "0.0.0.0" if the_node else "127.0.0.1")

    log("starting kube-apiserver, etcd, kube-controller-manager and kube-scheduler")
    ready = CONTROLPLANE_DIR / "ready"
    ready.unlink(missing_ok=True)
    node_args = ["--advertise-address", node.GATEWAY, "--node-name", node.node_name()] if the_node else []
    controlplane = spawn(
        "controlplane",
        [str(CONTROLPLANE_BIN), "serve", "--dir", str(CONTROLPLANE_DIR), "--service-account-issuer", issuer,
         *node_args],
        "controlplane.log",
    )
    wait_for("kube-apiserver", ready.exists, controlplane, 300, "controlplane.log")
    server = dict(line.split("=", 1) for line in ready.read_text().split())["server"]
    log(f"kube-apiserver ready at {server}")
    kubeconfig = CONTROLPLANE_DIR / "kubeconfig"
    apply_eks_webhook_standin(kubeconfig)

    node_env = {}
    if the_node:
        images = sorted(IMAGES_DIR.glob("*.oci.tar"))
        name = node.node_name()
        log(f"starting the node {name}: containerd, kubelet, kube-proxy")
        the_node.start(name, spawn, wait_for, images)
        log(f"node {name} is Ready; Pods reach the apiserver at 10.96.0.1:443 and moto at {node.GATEWAY}")
        node_env = {
            "BUCKETWIRE_TESTBED_NODE": name,
            # The emulator as Pods on the node reach it.
            "BUCKETWIRE_TESTBED_POD_ENDPOINT_URL": f"http://{node.GATEWAY}:{moto_port}",
            "BUCKETWIRE_TESTBED_CONTAINERD_ADDRESS": str(the_node.socket),
            "BUCKETWIRE_TESTBED_WORKLOAD_IMAGE": WORKLOAD_IMAGE,
            "BUCKETWIRE_TESTBED_ALIBABA_POD_ENDPOINT_URL":
                alibaba_env["BUCKETWIRE_TESTBED_ALIBABA_ENDPOINT_URL"].replace("127.0.0.1", node.GATEWAY),
        }

    env = {
        "KUBECONFIG": str(CONTROLPLANE_DIR / "kubeconfig"),
        "BUCKETWIRE_AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "BUCKETWIRE_CLUSTER_NAME": CLUSTER_NAME,
        "BUCKETWIRE_TESTBED_OIDC_ISSUER": issuer,
        "BUCKETWIRE_TESTBED_OIDC_PROVIDER_ARN": provider_arn,
        "BUCKETWIRE_TESTBED_ACCOUNT_ID": ACCOUNT_ID,
        "BUCKETWIRE_TESTBED_REQUEST_LOG": str(REQUEST_LOG),
        "BUCKETWIRE_TESTBED_INSECURE_ENDPOINT_URL": f"http://127.0.0.1:{insecure_port}",
        # The operator's own credentials (a role carrying exactly deploy/iam/operator-policy.json),
        # its permissions boundary and bucket prefix (the AWS_* above are the administrator's), and
        # the second account's administrator.
        **seeded_env,
        **alibaba_env,
        **node_env,
    }
    tmp = ENV_FILE.with_suffix(".tmp")
    tmp.write_text(
        "# Written by `make testbed-up`; source it: . target/testbed/env\n"
        + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    )
    tmp.rename(ENV_FILE)
    log(f"environment written to {ENV_FILE}")


def start_alibaba(issuer, host):
    """Starts the Alibaba Cloud fake on free ports (one counting as plain HTTP, as moto's) and
    seeds it; returns its part of the environment."""
    sys.path.insert(0, str(Path(__file__).with_name("alibaba")))
    import seed as alibaba_seed

    port, insecure_port = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{port}"
    config = alibaba_seed.make_config(issuer)
    alibaba_seed.write_config(ALIBABA_CONFIG, config)
    ALIBABA_REQUEST_LOG.unlink(missing_ok=True)
    OSS_REQUEST_LOG.unlink(missing_ok=True)
    log(f"starting the Alibaba Cloud fake (RAM, IMS, STS, ACK) on {endpoint}")
    fake = spawn(
        "alibaba",
        [str(VENV / "bin" / "python"), str(Path(__file__).parent / "alibaba" / "control_plane.py"),
         "--config", str(ALIBABA_CONFIG), "-H", host, "-p", str(port), "--insecure-port", str(insecure_port)],
        "alibaba.log",
        # AssumeRoleWithOIDC reads the issuer's keys from the apiserver, as web_identity.py does.
        env={**os.environ, "ALIBABA_FAKE_REQUEST_LOG": str(ALIBABA_REQUEST_LOG),
             "OSS_FAKE_REQUEST_LOG": str(OSS_REQUEST_LOG),
             "BUCKETWIRE_TESTBED_KUBECONFIG": str(CONTROLPLANE_DIR / "kubeconfig")},
    )
    wait_for("the Alibaba Cloud fake", lambda: http_ok(f"{endpoint}/-/fake/ready"), fake, 60, "alibaba.log")
    env = alibaba_seed.seed(endpoint, config)
    log(f"seeded Alibaba Cloud accounts {env['BUCKETWIRE_TESTBED_ALIBABA_ACCOUNT_ID']} and "
        f"{env['BUCKETWIRE_TESTBED_ALIBABA_SECOND_ACCOUNT_ID']}, ACK cluster {env['BUCKETWIRE_TESTBED_ALIBABA_CLUSTER_ID']}")
    return {
        "BUCKETWIRE_TESTBED_ALIBABA_ENDPOINT_URL": endpoint,
        "BUCKETWIRE_TESTBED_ALIBABA_INSECURE_ENDPOINT_URL": f"http://127.0.0.1:{insecure_port}",
        "BUCKETWIRE_TESTBED_ALIBABA_REQUEST_LOG": str(ALIBABA_REQUEST_LOG),
        "BUCKETWIRE_TESTBED_OSS_REQUEST_LOG": str(OSS_REQUEST_LOG),
        **env,
    }


def apply_eks_webhook_standin(kubeconfig):
    """The stand-in for EKS's pod identity webhook (eks-pod-identity-webhook.yaml), for this
    test bed's region."""
    manifest = Path(__file__).with_name("eks-pod-identity-webhook.yaml").read_text().replace("${REGION}", REGION)
    result = subprocess.run(
        [str(VENV / "bin" / "kubectl"), "--kubeconfig", str(kubeconfig), "apply", "-f", "-"],
        input=manifest, capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"testbed: applying the EKS pod identity webhook stand-in failed:\n{result.stderr}")


def import_image(args):
    """Import an image archive into the running node's containerd (tests do this for images
    they build, e.g. a second operator image for `helm upgrade`)."""
    import node

    if not recorded("containerd"):
        raise SystemExit("testbed: the node is not running")
    node.Node(STATE, CONTROLPLANE_BIN, CONTROLPLANE_DIR, log).import_image(args.archive)


# Seconds from SIGTERM to exit, per service, written by `down` to
# <results dir>/testbed_stop.json (target/reliability/, or $BUCKETWIRE_RESULTS_DIR).
STOP_SECONDS = {}


def stop(name, grace=30.0):
    """Stop one service: SIGTERM to its process group, SIGKILL after `grace`. Returns whether it
    stopped, and stopped without SIGKILL."""
    pid = recorded(name)
    if pid is None:
        pid_file(name).unlink(missing_ok=True)
        return True
    log(f"stopping {name} (pid {pid})")
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    started = time.monotonic()
    deadline = started + grace
    while time.monotonic() < deadline and group_alive(pid):
        time.sleep(0.2)
    STOP_SECONDS[name] = round(time.monotonic() - started, 1)
    killed = False
    if group_alive(pid):
        log(f"{name} did not stop within {grace:.0f}s of SIGTERM; killing its process group")
        killed = True
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        time.sleep(0.5)
    if group_alive(pid):
        log(f"{name}: process group {pid} is still alive")
        return False
    pid_file(name).unlink(missing_ok=True)
    return not killed


def group_alive(pgid):
    """True while any process of the group we started is alive (zombies do not count)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def down(_args):
    import node

    the_node = node.Node(STATE, CONTROLPLANE_BIN, CONTROLPLANE_DIR, log)
    ok = stop("kube-proxy") & stop("kubelet")
    # The Pods' containers, while containerd still runs (their shims live outside our groups).
    the_node.stop_containers()
    ok &= stop("containerd")
    # Every SIGTERM is answered within the grace period: a SIGKILL counts as a failure.
    ok &= stop("controlplane") & stop("moto") & stop("alibaba")
    if os.geteuid() == 0:
        # The host as it was: anything the node leaves behind fails `down` (and `make test`).
        left = the_node.cleanup()
        if left:
            log("the node left on the host: " + ", ".join(left))
            ok = False
    ENV_FILE.unlink(missing_ok=True)
    results = Path(os.environ.get("BUCKETWIRE_RESULTS_DIR", ROOT / "target" / "reliability"))
    results.mkdir(parents=True, exist_ok=True)
    (results / "testbed_stop.json").write_text(json.dumps(
        {"sigterm_to_exit_seconds": STOP_SECONDS, "sigkill_needed": not ok}, indent=2) + "\n")
    if not ok:
        raise SystemExit(1)
    log("stopped")


def status(_args):
    for name in SERVICES:
        pid = recorded(name)
        print(f"{name}: {'running, pid ' + str(pid) if pid else 'stopped'}")
    print(f"env: {ENV_FILE if ENV_FILE.exists() else 'absent'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up").set_defaults(func=up)
    sub.add_parser("down").set_defaults(func=down)
    sub.add_parser("status").set_defaults(func=status)
    imp = sub.add_parser("import-image")
    imp.add_argument("archive")
    imp.set_defaults(func=import_image)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
