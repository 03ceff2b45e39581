//! Every IAM document the operator generates passes parliament (PyPI), an IAM policy linter,
//! with no findings: permission policies (IRSA and cross-account, both access levels, with and
//! without SSE-KMS (the key conditioned on S3 and the bucket, for created and adopted buckets), in
//! every partition), trust policies and the bucket policy.
//!
//! parliament runs from the test bed's virtual environment (`make testbed` installs it); no
//! test bed process is needed.

use std::path::PathBuf;
use std::process::Command;

use bucketwire::api::Access;
use bucketwire::documents::{
    BucketKms, KmsContext, bucket_policy, cross_account_policy, cross_account_trust, permission_policy,
    trust_policy,
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
            let kms = |context| {
                Some(BucketKms {
                    key_arn: &key,
                    region,
                    context,
                })
            };
            for (kms, kms_name) in [
                (None, "sse-s3"),
                (kms(KmsContext::BucketKey), "sse-kms"),
                (kms(KmsContext::BucketOrObjects), "sse-kms-adopted"),
            ] {
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

/// The operator's IAM policy with its placeholders filled in, as the README's `envsubst` does.
fn operator_policy() -> Value {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("deploy/iam/operator-policy.json")).expect("policy");
    let filled = [
        ("${PARTITION}", "aws"),
        ("${ROLE_PATH}", "/bucketwire/"),
        ("${ACCOUNT_ID}", "111122223333"),
        ("${REGION}", "us-east-2"),
        ("${CLUSTER_NAME}", "prod-eks"),
        ("${BUCKET_PREFIX}", "bw-"),
        (
            "${PERMISSIONS_BOUNDARY_ARN}",
            "arn:aws:iam::111122223333:policy/milvus-boundary",
        ),
    ]
    .iter()
    .fold(text, |t, (from, to)| t.replace(from, to));
    assert!(
        !filled.contains("${"),
        "a placeholder the README does not fill: {filled}"
    );
    serde_json::from_str(&filled).expect("valid JSON")
}

/// IAM's wildcard match of a resource ARN (`*` any run of characters, `?` one).
fn arn_matches(pattern: &str, arn: &str) -> bool {
    match (pattern.chars().next(), arn.chars().next()) {
        (None, None) => true,
        (Some('*'), _) => {
            arn_matches(&pattern[1..], arn) || (!arn.is_empty() && arn_matches(pattern, &arn[1..]))
        }
        (Some('?'), Some(c)) => arn_matches(&pattern[1..], &arn[c.len_utf8()..]),
        (Some(p), Some(c)) if p == c => arn_matches(&pattern[p.len_utf8()..], &arn[c.len_utf8()..]),
        _ => false,
    }
}

/// Why the operator may delete object versions at all, and only there: on a versioned bucket
/// every validation probe (which runs as the Milvus workload) leaves an object version and a
/// delete marker, and `deletionPolicy: Delete` only deletes an empty bucket. Milvus never needs
/// `s3:DeleteObjectVersion`, so the workload's role does not get it; the operator removes the
/// probe's versions with its own identity instead, and only under
/// `<rootPath>/.bucketwire-validation/` of buckets with its prefix. It can never delete a
/// version of Milvus's data, nor the current version of any object (no `s3:DeleteObject`).
#[test]
fn only_probe_keys_may_lose_versions_and_only_by_the_operator() {
    let policy = operator_policy();
    let statements = policy["Statement"].as_array().expect("statements");
    let granting = |action: &str| -> Vec<&Value> {
        statements
            .iter()
            .filter(|s| {
                bucketwire::documents::string_list(&s["Action"])
                    .iter()
                    .any(|a| a == action)
            })
            .collect()
    };
    assert!(
        granting("s3:DeleteObject").is_empty(),
        "the operator never deletes objects"
    );
    let [statement] = granting("s3:DeleteObjectVersion")[..] else {
        panic!("exactly one statement grants s3:DeleteObjectVersion: {policy}");
    };
    // Besides removing the probe's versions, the operator aborts probe uploads a failed
    // validation left (both only under the probe prefix, checked below).
    assert_eq!(
        bucketwire::documents::string_list(&statement["Action"]),
        ["s3:DeleteObjectVersion", "s3:AbortMultipartUpload"],
        "{statement}"
    );
    assert!(statement.get("Condition").is_none() && statement["Effect"] == "Allow");
    let resource = statement["Resource"].as_str().expect("one resource");

    // The probe key the validation uses, in a bucket with the prefix, for nested rootPaths too.
    for root_path in ["files", "milvus/prod"] {
        let target = bucketwire::validate::Target {
            namespace: "milvus".into(),
            service_account: "milvus-s3-access-sa".into(),
            role_arn: String::new(),
            identity: bucketwire::validate::WorkloadIdentity::Irsa {
                provider_arn: String::new(),
            },
            trust: Value::Null,
            bucket: "bw-milvus-prod-0123abcd".into(),
            region: "us-east-2".into(),
            root_path: root_path.into(),
            access: Access::ReadWrite,
            probe_id: "4f8a2c1e-0b7d-4e3a-9c6f-1d2e3f4a5b6c".into(),
        };
        let arn = format!("arn:aws:s3:::{}/{}", target.bucket, target.probe_key());
        assert!(arn_matches(resource, &arn), "{resource} does not cover {arn}");
    }
    for outside in [
        "arn:aws:s3:::bw-milvus-prod-0123abcd/files/insert_log/1/2/3",
        "arn:aws:s3:::bw-milvus-prod-0123abcd/files/x.bucketwire-validation/y",
        "arn:aws:s3:::other-bucket/files/.bucketwire-validation/4f8a2c1e",
        "arn:aws:s3:::bw-milvus-prod-0123abcd",
    ] {
        assert!(!arn_matches(resource, outside), "{resource} covers {outside}");
    }

    // The workload's policies did not grow: no version deletes, no version listing.
    for (name, doc) in documents() {
        let text = doc.to_string();
        assert!(
            !text.contains("s3:DeleteObjectVersion") && !text.contains("s3:ListBucketVersions"),
            "{name}: {text}"
        );
    }
}

/// parliament on the operator's statement that grants `s3:DeleteObjectVersion`, alone. (The
/// whole operator policy is not linted here: parliament reports findings on it that come with an
/// operator that creates IAM roles and policies, such as PRIVILEGE_ESCALATION on
/// iam:CreatePolicyVersion; this test holds the statement the probe cleanup added to no finding.)
#[test]
fn parliament_finds_nothing_in_the_probe_cleanup_statement() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/policy-lint-operator");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let policy = operator_policy();
    let statements: Vec<&Value> = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .filter(|s| s["Sid"] == "RemoveValidationProbeVersions")
        .collect();
    assert_eq!(statements.len(), 1, "{policy}");
    let document = serde_json::json!({"Version": "2012-10-17", "Statement": statements});
    std::fs::write(
        dir.join("operator-probe-cleanup.permission.json"),
        serde_json::to_string_pretty(&document).expect("json"),
    )
    .expect("write");
    let out = Command::new(root.join("target/testbed/venv/bin/python"))
        .arg(root.join("tests/lint/parliament_check.py"))
        .arg(&dir)
        .output()
        .expect("python runs (installed by `make testbed`)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {stdout}{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(report["findings"], serde_json::json!([]), "{report}");
    assert!(out.status.success(), "{stdout}");
}
