//! The test bed's EKS Pod Identity fake (tests/testbed/eks_pod_identity.py) answers as EKS and
//! EKS Auth do: its wire format is pinned by boto3's `eks` and `eks-auth` clients
//! (tests/testbed/eks_fake_wire.py, whose botocore models build the requests and parse the
//! answers), and by aws-sdk-rust's clients here, the ones the operator uses.

mod common;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_json::json;

use common::aws;
use common::aws::service_account_token;
use common::setup;

/// The reader's token with one character of its signature changed.
fn tampered(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let at = chars.len() - 20;
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[tokio::test]
async fn boto3s_eks_and_eks_auth_clients_read_the_fake_as_they_read_aws() {
    let (bed, client, ns) = setup("eksfake").await;
    let sa_api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    for name in ["reader", "other-sa", "unassociated"] {
        sa_api
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).expect("sa"),
            )
            .await
            .expect("ServiceAccount");
    }
    let pods = Some("pods.eks.amazonaws.com");
    let reader = service_account_token(&client, &ns, "reader", pods).await;
    let tokens = json!({
        "reader": reader,
        "other-sa": service_account_token(&client, &ns, "other-sa", pods).await,
        "wrong-audience": service_account_token(&client, &ns, "reader", Some("sts.amazonaws.com")).await,
        "tampered": tampered(&reader),
        "unassociated": service_account_token(&client, &ns, "unassociated", pods).await,
    });
    let s3 = aws::s3(&bed, "us-east-2").await;
    let bucket = aws::unique_bucket(&ns, "wire");
    aws::create_bucket(&s3, &bucket, "us-east-2").await;
    let iam = aws::iam(&bed, "us-east-2").await;
    let (_, no_auth) = aws::create_user(&iam, &format!("{ns}-no-eks-auth"), &[]).await;

    let given = json!({
        "namespace": ns,
        "tokens": tokens,
        "bucket": bucket,
        "noAuthKey": {"accessKeyId": no_auth.access_key_id(), "secretAccessKey": no_auth.secret_access_key()},
    });
    let root = env!("CARGO_MANIFEST_DIR");
    let admin = aws::admin_credentials(&bed);
    let out = std::process::Command::new(format!("{root}/target/testbed/venv/bin/python"))
        .arg(format!("{root}/tests/testbed/eks_fake_wire.py"))
        .arg(given.to_string())
        .env(
            "BUCKETWIRE_AWS_ENDPOINT_URL",
            bed.var("BUCKETWIRE_AWS_ENDPOINT_URL"),
        )
        .env("AWS_REGION", bed.var("AWS_REGION"))
        .env(
            "BUCKETWIRE_TESTBED_ACCOUNT_ID",
            bed.var("BUCKETWIRE_TESTBED_ACCOUNT_ID"),
        )
        .env("BUCKETWIRE_CLUSTER_NAME", bed.var("BUCKETWIRE_CLUSTER_NAME"))
        .env("AWS_ACCESS_KEY_ID", admin.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", admin.secret_access_key())
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .expect("the venv's python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "eks_fake_wire.py: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    let checks = report["checks"].as_array().expect("checks");
    assert!(checks.len() >= 25, "every check ran: {checks:?}");

    // aws-sdk-rust's clients, which the operator uses, parse the same answers.
    let config = aws::sdk_config(&bed, bed.var("AWS_REGION")).await;
    let eks = aws_sdk_eks::Client::new(&config);
    let cluster = bed.var("BUCKETWIRE_CLUSTER_NAME");
    let made = eks
        .create_pod_identity_association()
        .cluster_name(cluster)
        .namespace(&ns)
        .service_account("unassociated")
        .role_arn(format!(
            "arn:aws:iam::{}:role/{ns}-reader",
            bed.var("BUCKETWIRE_TESTBED_ACCOUNT_ID")
        ))
        .tags("bucketwire.io/uid", "rust")
        .send()
        .await
        .expect("aws-sdk-eks creates")
        .association
        .expect("association");
    assert_eq!(
        made.tags()
            .and_then(|t| t.get("bucketwire.io/uid"))
            .map(String::as_str),
        Some("rust")
    );
    assert!(made.created_at().is_some());
    let missing = eks
        .describe_pod_identity_association()
        .cluster_name(cluster)
        .association_id("a-00000000000000000")
        .send()
        .await
        .expect_err("missing");
    assert!(
        missing
            .as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "{missing:?}"
    );
    let answer = aws_sdk_eksauth::Client::new(&config)
        .assume_role_for_pod_identity()
        .cluster_name(cluster)
        .token(service_account_token(&client, &ns, "unassociated", pods).await)
        .send()
        .await;
    // The reader's role trusts only ServiceAccount "reader": refused with EKS Auth's shape.
    let refused = answer.expect_err("the trust names another ServiceAccount");
    assert!(
        refused
            .as_service_error()
            .is_some_and(|e| e.is_access_denied_exception()),
        "{refused:?}"
    );
}
