//! The test bed's Alibaba Cloud fake (tests/testbed/alibaba/control_plane.py: RAM, IMS's OIDC
//! providers, STS and ACK's DescribeClusterDetail) answers as Alibaba Cloud does: its wire format
//! is pinned by Alibaba's official Python SDKs (tests/testbed/alibaba_fake_wire.py, whose models
//! build the requests and parse the answers and whose core signs them), against ServiceAccount
//! tokens of the test apiserver, and every request it answers is in its request log.

mod common;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_json::json;

use common::aws::service_account_token;
use common::setup;

/// The environment the wire script reads (target/testbed/env).
const ALIBABA_VARS: &[&str] = &[
    "BUCKETWIRE_TESTBED_ALIBABA_ENDPOINT_URL",
    "BUCKETWIRE_TESTBED_ALIBABA_ACCOUNT_ID",
    "BUCKETWIRE_TESTBED_ALIBABA_ACCESS_KEY_ID",
    "BUCKETWIRE_TESTBED_ALIBABA_ACCESS_KEY_SECRET",
    "BUCKETWIRE_TESTBED_ALIBABA_SECOND_ACCOUNT_ID",
    "BUCKETWIRE_TESTBED_ALIBABA_SECOND_ACCESS_KEY_ID",
    "BUCKETWIRE_TESTBED_ALIBABA_SECOND_ACCESS_KEY_SECRET",
    "BUCKETWIRE_TESTBED_ALIBABA_CLUSTER_ID",
    "BUCKETWIRE_TESTBED_ALIBABA_OIDC_PROVIDER_ARN",
    "BUCKETWIRE_TESTBED_ALIBABA_OIDC_ISSUER",
];

/// The reader's token with one character of its signature changed.
fn tampered(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let at = chars.len() - 20;
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[tokio::test]
async fn alibabas_sdks_read_the_fake_as_they_read_alibaba_cloud() {
    let (bed, client, ns) = setup("alifake").await;
    let sa_api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    for name in ["reader", "other-sa"] {
        sa_api
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).expect("sa"),
            )
            .await
            .expect("ServiceAccount");
    }
    let sts = Some("sts.aliyuncs.com");
    let reader = service_account_token(&client, &ns, "reader", sts).await;
    assert_eq!(
        bed.var("BUCKETWIRE_TESTBED_ALIBABA_OIDC_ISSUER"),
        bed.var("BUCKETWIRE_TESTBED_OIDC_ISSUER"),
        "the RRSA provider's issuer is the apiserver's"
    );
    let tokens = json!({
        "reader": reader,
        "other-sa": service_account_token(&client, &ns, "other-sa", sts).await,
        "wrong-audience": service_account_token(&client, &ns, "reader", Some("sts.amazonaws.com")).await,
        "tampered": tampered(&reader),
    });
    // The apiserver's service-account signing key, beside its kubeconfig (tests/controlplane):
    // the script re-signs the reader's claims already expired, so only the expiry is wrong.
    let signing_key = std::path::Path::new(bed.var("KUBECONFIG"))
        .parent()
        .map(|dir| dir.join("pki/sa.key"))
        .filter(|path| path.exists());
    assert!(signing_key.is_some(), "the apiserver's pki/sa.key is readable");
    let given = json!({"namespace": ns, "tokens": tokens, "signingKey": signing_key});

    let root = env!("CARGO_MANIFEST_DIR");
    let mut command = std::process::Command::new(format!("{root}/target/testbed/venv/bin/python"));
    command
        .arg(format!("{root}/tests/testbed/alibaba_fake_wire.py"))
        .arg(given.to_string());
    for name in ALIBABA_VARS {
        command.env(name, bed.var(name));
    }
    let out = command.output().expect("the venv's python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "alibaba_fake_wire.py: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    let checks = report["checks"].as_array().expect("checks");
    assert!(checks.len() >= 80, "every check ran: {checks:?}");
    assert!(
        checks.iter().any(|c| c == "AssumeRoleWithOIDC refused: expired"),
        "the expired token was tried: {checks:?}"
    );

    // The fake's request log counts what the script did: one line per request, its caller, its
    // status and error code, and the policy decisions taken for it.
    let log = std::fs::read_to_string(bed.var("BUCKETWIRE_TESTBED_ALIBABA_REQUEST_LOG"))
        .expect("the Alibaba fake's request log");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let reader_role = format!("Bw-{ns}-Reader");
    let creates: Vec<_> = lines
        .iter()
        .filter(|l| l["action"] == "CreateRole" && l["target"] == reader_role.as_str())
        .collect();
    assert_eq!(
        creates.len(),
        1,
        "one CreateRole of the reader's role: {creates:?}"
    );
    assert_eq!(creates[0]["status"], 200);
    assert_eq!(creates[0]["service"], "ram");
    assert_eq!(
        creates[0]["decisions"][0]["action"], "ram:CreateRole",
        "{creates:?}"
    );
    assert_eq!(creates[0]["decisions"][0]["result"], "Allow");
    let other_role = format!("{ns}-other");
    let refused: Vec<_> = lines
        .iter()
        .filter(|l| {
            l["action"] == "GetRole" && l["target"] == other_role.as_str() && l["error"] == "NoPermission"
        })
        .collect();
    assert_eq!(refused.len(), 1, "the role's one refused GetRole: {refused:?}");
    assert_eq!(refused[0]["status"], 403);
    assert!(
        refused[0]["caller"]
            .as_str()
            .is_some_and(|c| c.contains(":assumed-role/")),
        "{refused:?}"
    );
    assert_eq!(refused[0]["decisions"][0]["result"], "ImplicitDeny");
}

/// The OSS fake (tests/testbed/alibaba/oss.py) answers Alibaba's official OSS SDK
/// (alibabacloud-oss-v2, OSS Signature V4) and boto3's S3 client (SigV4, virtual-host style) as
/// OSS documents it: bucket settings, ACL and Block Public Access, encryption, policies,
/// versioning, tags, objects, multipart uploads, conditional writes (`x-oss-forbid-overwrite`
/// natively, `If-None-Match: *` on the S3-compatible API) and their errors. The script runs
/// the fake in-process on loopback ports; it needs no test bed.
#[test]
fn the_oss_fake_answers_alibabas_oss_sdk_and_boto3_as_oss_does() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(format!("{root}/target/testbed/venv/bin/python"))
        .arg(format!("{root}/tests/testbed/alibaba/oss_wire_test.py"))
        .output()
        .expect("the venv's python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "oss_wire_test.py: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    let checks = report["checks"].as_array().expect("checks");
    assert!(checks.len() >= 70, "every check ran: {checks:?}");
    for check in [
        "S3 PutObject If-None-Match * on an existing key: PreconditionFailed 412",
        "native x-oss-forbid-overwrite on an existing key: FileAlreadyExists 409",
    ] {
        assert!(checks.iter().any(|c| c == check), "{check}: {checks:?}");
    }
}
