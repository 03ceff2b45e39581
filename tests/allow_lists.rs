//! The operator's allow-lists on the test bed (issue 13, items 6 and 7). A spec that names a KMS
//! key, an account, an OIDC issuer or an EKS cluster the operator does not allow is refused
//! (`KmsKeyNotAllowed`, `TrustNotAllowed`) before any AWS write, counted from the emulator's own
//! request log; the operator's own account is refused even when listed. What is allowed works,
//! and an allowed key is granted only through S3 of the bucket's region and for the bucket's own
//! encryption context, as IAM holds the policy.

mod common;

use std::time::Duration;

use serde_json::{Value, json};

use bucketwire::api::BucketIntegration;
use bucketwire::documents::{canonical, statements};
use bucketwire::naming::{self, Owner};
use common::aws::{EmulatorRequest, emulator_requests, policy_of, trust_of};
use common::integration::{create, wait_condition, wait_ready};
use common::operator::Operator;
use common::{TestBed, aws, results, setup, wait_for};

/// The account the operator runs as (the test bed's administrator), asked as the operator does.
async fn operator_account(bed: &TestBed) -> String {
    let sts = aws_sdk_sts::Client::new(&aws::sdk_config(bed, "us-east-1").await);
    let out = sts.get_caller_identity().send().await.expect("GetCallerIdentity");
    out.account().expect("account").to_string()
}

/// The names the operator would give an integration's bucket, role and policy.
fn derived_names(bed: &TestBed, ns: &str, name: &str) -> (String, String, String) {
    let owner = Owner {
        cluster: bed.var("BUCKETWIRE_CLUSTER_NAME"),
        namespace: ns,
        name,
    };
    (
        naming::bucket_name(owner, None),
        naming::role_name(owner),
        naming::policy_name(owner),
    )
}

/// The emulator's write requests naming the bucket, role or policy the operator would derive
/// for integration `name` (tests/testbed/moto_launcher.py logs the role name, policy name or
/// policy ARN of every IAM request, and S3 requests name their bucket in the path).
fn writes_naming(requests: &[EmulatorRequest], bed: &TestBed, ns: &str, name: &str) -> Vec<EmulatorRequest> {
    let (bucket, role, policy) = derived_names(bed, ns, name);
    requests
        .iter()
        .filter(|r| {
            r.is_write()
                && (r.is_for_bucket(&bucket)
                    || r.target == role
                    || r.target == policy
                    || r.target.ends_with(&format!("/{policy}")))
        })
        .cloned()
        .collect()
}

/// Asserts that the emulator saw no write for the integrations `refused`: none naming their
/// derived names, and none naming anything of the namespace (every derived name contains it)
/// except the integrations in `allowed`. Returns the writes counted for the `allowed` ones.
fn assert_no_writes(bed: &TestBed, ns: &str, refused: &[&str], allowed: &[&str]) -> usize {
    let requests = emulator_requests(bed);
    for name in refused {
        let named = writes_naming(&requests, bed, ns, name);
        assert!(named.is_empty(), "{name}: AWS writes {named:#?}");
    }
    let of_allowed: Vec<EmulatorRequest> = allowed
        .iter()
        .flat_map(|name| writes_naming(&requests, bed, ns, name))
        .collect();
    let others: Vec<&EmulatorRequest> = requests
        .iter()
        .filter(|r| r.is_write() && (r.path.contains(ns) || r.target.contains(ns) || r.query.contains(ns)))
        .filter(|r| {
            !of_allowed
                .iter()
                .any(|a| a.path == r.path && a.target == r.target && a.action == r.action)
        })
        .collect();
    assert!(
        others.is_empty(),
        "AWS writes for refused integrations: {others:#?}"
    );
    of_allowed.len()
}

/// Reconciles so far that ended with `reason` (the operator's own count, by condition reason).
async fn reconciles_with(operator: &Operator, reason: &str) -> u64 {
    let needle = format!("bucketwire_reconciles_total{{result=\"{reason}\"}}");
    operator
        .metrics()
        .await
        .lines()
        .filter(|l| l.starts_with(&needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// One refused integration: it gets `reason` on Ready (and a message naming the field), records
/// nothing in AWS terms in status, and the emulator saw no write naming its bucket, role or policy.
async fn assert_refused(
    client: &kube::Client,
    ns: &str,
    name: &str,
    reason: &str,
    message_part: &str,
    operator: &Operator,
) -> Value {
    let bi: BucketIntegration =
        wait_condition(client, ns, name, "Ready", "False", Some(reason), operator).await;
    let ready = common::integration::condition(&bi, "Ready").expect("Ready");
    assert!(
        ready.message.contains(message_part),
        "{name}: the Ready message names what was refused: {}",
        ready.message
    );
    let status = bi.status.clone().expect("status");
    assert!(
        status.role_arn.is_none() && status.policy_arn.is_none() && status.bucket.is_none(),
        "{name}: nothing recorded for a refused spec: {status:?}"
    );
    json!({"integration": name, "reason": ready.reason, "message": ready.message})
}

#[tokio::test]
async fn every_hostile_trust_anchor_or_key_is_refused_before_any_aws_write() {
    let (bed, client, ns) = setup("allow-hostile").await;
    let own = operator_account(&bed).await;
    let allowed_key = "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let other_key = "arn:aws:kms:us-east-2:111122223333:key/ffffffff-12ab-34cd-56ef-1234567890ab";
    // The operator's own account is listed too: it is refused whatever the list says.
    let accounts = format!("999988887777,{own}");
    let operator = Operator::start(
        &bed,
        &ns,
        &[
            "--allowed-kms-keys",
            allowed_key,
            "--allowed-trusted-accounts",
            &accounts,
            "--allowed-oidc-issuers",
            "https://oidc.allowed.example.com/id/OK",
            "--allowed-eks-clusters",
            "allowed-cluster",
        ],
    );
    let cross = |account: &str| json!({"region": "us-east-2", "identity": {"mode": "CrossAccount", "crossAccount": {"trustedAccountId": account}}});
    let cases: [(&str, Value, &str, String); 5] = [
        (
            "kms-not-allowed",
            json!({"region": "us-east-2", "bucket": {"encryption": {"type": "SSE-KMS", "kmsKeyArn": other_key}}}),
            "KmsKeyNotAllowed",
            format!("bucket.encryption.kmsKeyArn {other_key} is not allowed"),
        ),
        (
            "own-account",
            cross(&own),
            "TrustNotAllowed",
            format!("trustedAccountId {own} is not allowed: it is the operator's own account"),
        ),
        (
            "account-not-listed",
            cross("444455556666"),
            "TrustNotAllowed",
            "trustedAccountId 444455556666 is not allowed".to_string(),
        ),
        (
            "issuer-not-allowed",
            json!({"region": "us-east-2", "identity": {"oidcIssuer": "https://attacker.example.com/id/X"}}),
            "TrustNotAllowed",
            "identity.oidcIssuer https://attacker.example.com/id/X is not allowed".to_string(),
        ),
        (
            "cluster-not-allowed",
            json!({"region": "us-east-2", "identity": {"eksClusterName": "someone-elses-cluster"}}),
            "TrustNotAllowed",
            "identity.eksClusterName someone-elses-cluster is not allowed".to_string(),
        ),
    ];
    for (name, spec, _, _) in &cases {
        create(&client, &ns, name, spec.clone()).await;
    }
    // The control: an allowed account in the same operator is trusted, and Ready.
    create(&client, &ns, "account-allowed", cross("999988887777")).await;
    let mut refusals = vec![];
    for (name, _, reason, message) in &cases {
        refusals.push(assert_refused(&client, &ns, name, reason, message, &operator).await);
    }
    let allowed = wait_ready(&client, &ns, "account-allowed", &operator).await;
    let role_arn = allowed.status.and_then(|s| s.role_arn).expect("role recorded");
    let iam = aws::iam(&bed, "us-east-1").await;
    let trust = trust_of(&iam, &role_arn).await;
    assert_eq!(
        trust["Statement"][0]["Principal"]["AWS"],
        json!("arn:aws:iam::999988887777:root")
    );

    // Refusals repeat at every resync (2 s here) and still write nothing: wait for at least two
    // refused reconciles per integration (in all: 2 KmsKeyNotAllowed, 8 TrustNotAllowed).
    let (kms_refused, trust_refused) = wait_for(
        "two refused reconciles per hostile integration",
        Duration::from_secs(60),
        || async {
            let kms = reconciles_with(&operator, "KmsKeyNotAllowed").await;
            let trust = reconciles_with(&operator, "TrustNotAllowed").await;
            (kms >= 2 && trust >= 8).then_some((kms, trust))
        },
    )
    .await;
    let names: Vec<&str> = cases.iter().map(|(n, ..)| *n).collect();
    let allowed_writes = assert_no_writes(&bed, &ns, &names, &["account-allowed"]);
    assert!(
        allowed_writes > 0,
        "the filter sees the allowed integration's writes (it is not blind)"
    );
    results::record(
        "allow_lists_hostile",
        &json!({
            "hostile_integrations": names.len(),
            "refused_reconciles_before_the_write_count": {
                "KmsKeyNotAllowed": kms_refused,
                "TrustNotAllowed": trust_refused,
            },
            "aws_writes_for_hostile_integrations": 0,
            "aws_writes_for_the_allowed_control": allowed_writes,
            "refusals": refusals,
        }),
    );
}

#[tokio::test]
async fn by_default_no_key_and_no_account_is_allowed() {
    let (bed, client, ns) = setup("allow-default").await;
    let operator = Operator::start(&bed, &ns, &[]);
    let key = "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    create(
        &client,
        &ns,
        "kms",
        json!({"region": "us-east-2", "bucket": {"encryption": {"type": "SSE-KMS", "kmsKeyArn": key}}}),
    )
    .await;
    create(
        &client,
        &ns,
        "cross",
        json!({"region": "us-east-2", "identity": {"mode": "CrossAccount", "crossAccount": {"trustedAccountId": "999988887777"}}}),
    )
    .await;
    let refusals = vec![
        assert_refused(
            &client,
            &ns,
            "kms",
            "KmsKeyNotAllowed",
            "--allowed-kms-keys is empty",
            &operator,
        )
        .await,
        assert_refused(
            &client,
            &ns,
            "cross",
            "TrustNotAllowed",
            "--allowed-trusted-accounts is empty",
            &operator,
        )
        .await,
    ];
    assert_no_writes(&bed, &ns, &["kms", "cross"], &[]);
    results::record(
        "allow_lists_defaults",
        &json!({"aws_writes": 0, "refusals": refusals}),
    );
}

#[tokio::test]
async fn a_key_allowed_by_alias_is_granted_only_through_s3_for_its_bucket() {
    let (bed, client, ns) = setup("allow-kms").await;
    let kms = aws_sdk_kms::Client::new(&aws::sdk_config(&bed, "us-east-2").await);
    let key = aws::create_kms_key(&kms).await;
    let unlisted = aws::create_kms_key(&kms).await;
    let alias = format!("alias/bucketwire-test-{ns}");
    kms.create_alias()
        .alias_name(&alias)
        .target_key_id(&key)
        .send()
        .await
        .expect("alias created");
    let operator = Operator::start(&bed, &ns, &["--allowed-kms-keys", &alias]);
    let before = emulator_requests(&bed).len();
    create(
        &client,
        &ns,
        "by-alias",
        json!({"region": "us-east-2", "bucket": {"encryption": {"type": "SSE-KMS", "kmsKeyArn": key}}}),
    )
    .await;
    create(
        &client,
        &ns,
        "other-key",
        json!({"region": "us-east-2", "bucket": {"encryption": {"type": "SSE-KMS", "kmsKeyArn": unlisted}}}),
    )
    .await;
    let refusal = assert_refused(
        &client,
        &ns,
        "other-key",
        "KmsKeyNotAllowed",
        "none of the 1 alias(es) listed there names it in us-east-2",
        &operator,
    )
    .await;
    let status = wait_ready(&client, &ns, "by-alias", &operator)
        .await
        .status
        .expect("status");
    let bucket = status.bucket.and_then(|b| b.name).expect("bucket");
    let policy_arn = status.policy_arn.expect("policy");

    // The bucket encrypts with the key, and the policy IAM holds grants it with exactly the two
    // conditions.
    let s3 = aws::s3(&bed, "us-east-2").await;
    assert_eq!(
        aws::default_encryption(&s3, &bucket).await,
        ("aws:kms".to_string(), Some(key.clone()))
    );
    let iam = aws::iam(&bed, "us-east-1").await;
    let policy = policy_of(&iam, &policy_arn).await;
    let kms_statements: Vec<Value> = statements(&policy)
        .into_iter()
        .filter(|s| s.to_string().contains("kms:"))
        .collect();
    assert_eq!(kms_statements.len(), 1, "{policy}");
    let expected = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
        "Resource": key,
        "Condition": {"StringEquals": {
            "kms:ViaService": "s3.us-east-2.amazonaws.com",
            "kms:EncryptionContext:aws:s3:arn": format!("arn:aws:s3:::{bucket}"),
        }},
    }]});
    let held = json!({"Version": "2012-10-17", "Statement": kms_statements});
    assert_eq!(canonical(&held), canonical(&expected));
    assert_eq!(
        kms_statements[0]["Condition"].as_object().map(|ops| ops
            .values()
            .filter_map(Value::as_object)
            .map(|keys| keys.len())
            .sum::<usize>()),
        Some(2),
        "exactly two condition keys"
    );

    // S3 Bucket Keys turned off out of band would change the encryption context of new objects
    // to their own ARN, which the grant above does not match: drift, repaired at the next resync.
    let rule = aws_sdk_s3::types::ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(
            aws_sdk_s3::types::ServerSideEncryptionByDefault::builder()
                .sse_algorithm(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                .kms_master_key_id(&key)
                .build()
                .expect("default"),
        )
        .bucket_key_enabled(false)
        .build();
    s3.put_bucket_encryption()
        .bucket(&bucket)
        .server_side_encryption_configuration(
            aws_sdk_s3::types::ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()
                .expect("configuration"),
        )
        .send()
        .await
        .expect("bucket keys turned off out of band");
    let bucket_key_on = || async {
        let out = s3.get_bucket_encryption().bucket(&bucket).send().await.ok()?;
        let rule = out
            .server_side_encryption_configuration()?
            .rules()
            .first()?
            .clone();
        (rule.bucket_key_enabled() == Some(true)).then_some(())
    };
    wait_for(
        "Bucket Keys to be turned on again",
        Duration::from_secs(60),
        bucket_key_on,
    )
    .await;

    // The unlisted key got nothing; the alias was resolved with reads only.
    let allowed_writes = assert_no_writes(&bed, &ns, &["other-key"], &["by-alias"]);
    assert!(
        allowed_writes > 0,
        "the filter sees the allowed integration's writes"
    );
    let describes = emulator_requests(&bed)[before..]
        .iter()
        .filter(|r| r.action == "DescribeKey")
        .count();
    assert!(
        describes >= 2,
        "the alias was resolved for each key ({describes} DescribeKey)"
    );
    results::record(
        "allow_lists_kms",
        &json!({
            "kms_statement": kms_statements[0],
            "describe_key_calls": describes,
            "refusal": refusal,
            "aws_writes_for_the_unlisted_key": 0,
            "bucket_keys_turned_off_out_of_band_repaired": true,
        }),
    );
}
