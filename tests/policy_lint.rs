//! Every IAM document the operator generates passes parliament (PyPI), an IAM policy linter,
//! with no findings: permission policies (IRSA and cross-account, both access levels, with and
//! without SSE-KMS, in every partition), trust policies and the bucket policy.
//!
//! parliament runs from the test bed's virtual environment (`make testbed` installs it); no
//! test bed process is needed.

use std::path::PathBuf;
use std::process::Command;

use bucketwire::api::Access;
use bucketwire::documents::{
    bucket_policy, cross_account_policy, cross_account_trust, permission_policy, trust_policy,
};
use bucketwire::naming::{Partition, oidc_provider_arn};
use serde_json::Value;

fn documents() -> Vec<(String, Value)> {
    let mut docs = vec![];
    let cases = [
        (Partition::Aws, "us-east-2", "aws"),
        (Partition::AwsCn, "cn-north-1", "aws-cn"),
        (Partition::AwsUsGov, "us-gov-west-1", "aws-us-gov"),
    ];
    for (partition, region, id) in cases {
        let bucket = "bw-milvus-prod-0123abcd";
        let key = format!("arn:{id}:kms:{region}:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab");
        for (access, access_name) in [(Access::ReadWrite, "rw"), (Access::ReadOnly, "ro")] {
            for (kms, kms_name) in [(None, "sse-s3"), (Some(key.as_str()), "sse-kms")] {
                docs.push((
                    format!("{id}-irsa-{access_name}-{kms_name}.permission.json"),
                    permission_policy(partition, bucket, access, kms),
                ));
                docs.push((
                    format!("{id}-cross-account-{access_name}-{kms_name}.permission.json"),
                    cross_account_policy(partition, bucket, access, kms),
                ));
            }
        }
        let issuer = format!("https://oidc.eks.{region}.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE");
        let provider = oidc_provider_arn(partition, "111122223333", &issuer);
        docs.push((
            format!("{id}-irsa.trust.json"),
            trust_policy(&provider, &issuer, "milvus", "milvus-s3-access-sa"),
        ));
        docs.push((
            format!("{id}-cross-account.trust.json"),
            cross_account_trust(partition, "444455556666", "bw-3f9c2a7d5e8b4a1c9d0e6f2b7a3c8d1e"),
        ));
        docs.push((format!("{id}.bucket.json"), bucket_policy(partition, bucket)));
    }
    docs
}

#[test]
fn parliament_finds_nothing_in_any_generated_policy() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/policy-lint");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let docs = documents();
    for (name, doc) in &docs {
        std::fs::write(dir.join(name), serde_json::to_string_pretty(doc).expect("json")).expect("write");
    }
    let python = root.join("target/testbed/venv/bin/python");
    let out = Command::new(&python)
        .arg(root.join("tests/lint/parliament_check.py"))
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| panic!("{} runs (installed by `make testbed`): {e}", python.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let reports: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(
        reports.len(),
        docs.len(),
        "parliament looked at every document; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let with_findings: Vec<&Value> = reports
        .iter()
        .filter(|r| r["findings"].as_array().is_some_and(|f| !f.is_empty()))
        .collect();
    assert!(
        with_findings.is_empty(),
        "parliament findings: {with_findings:#?}"
    );
    assert!(out.status.success(), "{stdout}");
}

#[test]
fn the_lint_is_not_blind() {
    // The same check on documents with the mistakes it exists to catch: a wildcard action, an
    // action on a resource type it does not apply to, a made-up action.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/policy-lint-bad");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let bad = [
        (
            "wildcard.permission.json",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
        ),
        (
            "mismatch.permission.json",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::bucket"}]}"#,
        ),
        (
            "unknown.permission.json",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObjects","Resource":"arn:aws:s3:::bucket/*"}]}"#,
        ),
    ];
    for (name, text) in bad {
        std::fs::write(dir.join(name), text).expect("write");
    }
    let out = Command::new(root.join("target/testbed/venv/bin/python"))
        .arg(root.join("tests/lint/parliament_check.py"))
        .arg(&dir)
        .output()
        .expect("python runs");
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        let report: Value = serde_json::from_str(line).expect("json");
        assert!(
            report["findings"].as_array().is_some_and(|f| !f.is_empty()),
            "parliament missed the mistake in {}",
            report["file"]
        );
    }
    assert_eq!(stdout.lines().count(), bad.len());
}
