#!/usr/bin/env bash
# make demo: start the test bed (real kube-apiserver + moto), run the operator, apply the
# example integration, show it Ready with its role ARN and Milvus values, stop what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }
started_testbed=0
operator_pid=""
cleanup() {
    status=$?
    if [ -n "$operator_pid" ] && kill -0 "$operator_pid" 2>/dev/null; then
        say "stopping the operator (pid $operator_pid)"
        kill -TERM "$operator_pid" 2>/dev/null || true
        wait "$operator_pid" 2>/dev/null || true
    fi
    if [ "$started_testbed" = 1 ]; then
        say "stopping the test bed"
        python3 tests/testbed/testbed.py down
    fi
    exit $status
}
trap cleanup EXIT INT TERM

# The status is read whole first: `status | grep -q` under pipefail fails when grep stops
# reading early (BrokenPipe), and the demo would then stop a test bed it did not start.
testbed_status="$(python3 tests/testbed/testbed.py status 2>/dev/null || true)"
if [ -f target/testbed/env ] && grep -q 'controlplane: running' <<<"$testbed_status"; then
    say "using the test bed that is already running (it stays up)"
else
    say "starting the test bed: kube-apiserver + etcd + kube-controller-manager, and moto"
    target/testbed/venv/bin/python tests/testbed/testbed.py up
    started_testbed=1
fi
# shellcheck disable=SC1091
. target/testbed/env

say "building bucketwire"
cargo build --locked --quiet --bin bucketwire --example demo
bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug"

say "installing the BucketIntegration CRD (bucketwire crd)"
"$bin/examples/demo" install-crd

# As its own IAM role (exactly deploy/iam/operator-policy.json, rendered for the test bed), with the
# permissions boundary and bucket prefix that policy was rendered for, as the chart runs it.
say "starting the operator as $BUCKETWIRE_OPERATOR_ROLE_ARN: bucketwire run --cluster-name $BUCKETWIRE_CLUSTER_NAME --permissions-boundary $BUCKETWIRE_TESTBED_PERMISSIONS_BOUNDARY --bucket-prefix $BUCKETWIRE_TESTBED_BUCKET_PREFIX (log: target/testbed/demo-operator.log)"
AWS_ACCESS_KEY_ID="$BUCKETWIRE_OPERATOR_AWS_ACCESS_KEY_ID" \
AWS_SECRET_ACCESS_KEY="$BUCKETWIRE_OPERATOR_AWS_SECRET_ACCESS_KEY" \
AWS_SESSION_TOKEN="$BUCKETWIRE_OPERATOR_AWS_SESSION_TOKEN" \
ALIBABA_CLOUD_ACCESS_KEY_ID="$BUCKETWIRE_TESTBED_ALIBABA_OPERATOR_ACCESS_KEY_ID" \
ALIBABA_CLOUD_ACCESS_KEY_SECRET="$BUCKETWIRE_TESTBED_ALIBABA_OPERATOR_ACCESS_KEY_SECRET" \
    "$bin/bucketwire" run --metrics-addr 127.0.0.1:0 --health-addr 127.0.0.1:0 \
    --permissions-boundary "$BUCKETWIRE_TESTBED_PERMISSIONS_BOUNDARY" \
    --bucket-prefix "$BUCKETWIRE_TESTBED_BUCKET_PREFIX" \
    --alibaba-endpoint-url "$BUCKETWIRE_TESTBED_ALIBABA_ENDPOINT_URL" \
    --ack-cluster-id "$BUCKETWIRE_TESTBED_ALIBABA_CLUSTER_ID" > target/testbed/demo-operator.log 2>&1 &
operator_pid=$!

say "applying examples/milvus-prod.yaml and waiting for Ready"
"$bin/examples/demo" apply examples/milvus-prod.yaml

# Alibaba Cloud, on the test bed's fakes of RAM, STS, ACK and OSS (README, "Alibaba Cloud"), as
# the RAM user carrying exactly deploy/alibaba/operator-policy.json.
say "applying examples/alibaba-rrsa.yaml (Alibaba Cloud OSS with RRSA, on the test bed's fakes) and waiting for Ready"
"$bin/examples/demo" apply examples/alibaba-rrsa.yaml
