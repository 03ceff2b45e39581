//! Validate Integration on the test bed, with moto's IAM enforcement on: the role's credentials
//! do exactly what Milvus needs, and each classic failure is reported with its reason, by the
//! controller's Validated condition and by `bucketwire validate`.

mod common;

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use bucketwire::api::BucketIntegration;
use bucketwire::documents::parse_document;
use common::aws::EmulatorRequest;
use common::integration::{condition, create, ready_status, wait_condition, wait_ready};
use common::operator::Operator;
use common::{TestBed, aws, results, run_cli, run_cli_with_kubeconfig, setup, wait_for};

/// Runs `bucketwire validate NS/NAME` against the test bed: (exit code, output).
fn validate_cli(bed: &TestBed, integration: &str) -> (i32, String) {
    run_cli(bed, &["validate", integration])
}

/// The role's temporary credentials, obtained exactly as the Milvus pod's SDK would.
async fn workload_s3(
    bed: &TestBed,
    client: &kube::Client,
    ns: &str,
    sa: &str,
    role_arn: &str,
) -> aws_sdk_s3::Client {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec!["sts.amazonaws.com".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    let token = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &request)
        .await
        .expect("token")
        .status
        .expect("status")
        .token;
    let sts_conf = aws_sdk_sts::config::Builder::new()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new("us-east-2"))
        .endpoint_url(bed.var("BUCKETWIRE_AWS_ENDPOINT_URL"))
        .build();
    let creds = aws_sdk_sts::Client::from_conf(sts_conf)
        .assume_role_with_web_identity()
        .role_arn(role_arn)
        .role_session_name("test")
        .web_identity_token(token)
        .send()
        .await
        .expect("AssumeRoleWithWebIdentity")
        .credentials
        .expect("credentials");
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-2"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            creds.access_key_id,
            creds.secret_access_key,
            Some(creds.session_token),
            None,
            "test",
        ))
        .endpoint_url(bed.var("BUCKETWIRE_AWS_ENDPOINT_URL"))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn status_of<T, E: aws_sdk_s3::error::ProvideErrorMetadata>(
    r: Result<T, aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>>,
) -> u16 {
    match r {
        Ok(_) => 200, // any success
        Err(e) => e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0),
    }
}

#[tokio::test]
async fn ready_means_validated_as_the_workload() {
    let (bed, client, ns) = setup("validated").await;
    let operator = Operator::start(&bed, &ns, &[]);
    create(&client, &ns, "milvus", json!({"region": "us-east-2"})).await;
    let bi = wait_ready(&client, &ns, "milvus", &operator).await;
    let validated = condition(&bi, "Validated").expect("validated");
    assert_eq!(
        (validated.status.as_str(), validated.reason.as_str()),
        ("True", "Validated")
    );
    let status = bi.status.clone().expect("status");
    assert!(status.last_validated.is_some());
    assert!(
        validated
            .message
            .contains(status.role_arn.as_deref().expect("role")),
        "{}",
        validated.message
    );

    // The validation really acted as the workload: these calls carry the role's credentials.
    let calls = operator.workload_calls().await;
    for op in [
        "AssumeRoleWithWebIdentity",
        "HeadBucket",
        "GetBucketLocation",
        "PutObject",
        "GetObject",
        "ListObjectsV2",
        "DeleteObject",
    ] {
        assert!(
            calls
                .keys()
                .any(|(_, o, outcome)| o == op && outcome == "success"),
            "{op} missing from {calls:?}"
        );
    }
    // The probe cleans up after itself. Validations keep running every resync, so the bucket is
    // empty whenever none is between its put and its delete.
    let s3 = aws::s3(&bed, "us-east-2").await;
    let bucket = status.bucket.and_then(|b| b.name).expect("bucket");
    wait_for(
        "an empty bucket between validations",
        Duration::from_secs(10),
        || async {
            let listed = s3.list_objects_v2().bucket(&bucket).send().await.ok()?;
            (listed.key_count() == Some(0)).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn the_role_can_use_its_bucket_and_nothing_else() {
    let (bed, client, ns) = setup("scope").await;
    let operator = Operator::start(&bed, &ns, &[]);
    create(&client, &ns, "milvus", json!({"region": "us-east-2"})).await;
    let status = ready_status(&client, &ns, "milvus", &operator).await;
    let bucket = status.bucket.and_then(|b| b.name).expect("bucket");
    let role_arn = status.role_arn.expect("role");
    let s3 = workload_s3(&bed, &client, &ns, "milvus", &role_arn).await;

    let put = s3
        .put_object()
        .bucket(&bucket)
        .key("files/a")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert_eq!(status_of(put), 200);
    assert_eq!(
        status_of(s3.get_object().bucket(&bucket).key("files/a").send().await),
        200
    );
    assert_eq!(status_of(s3.list_objects_v2().bucket(&bucket).send().await), 200);
    assert_eq!(
        status_of(s3.get_bucket_location().bucket(&bucket).send().await),
        200
    );
    assert_eq!(
        status_of(s3.delete_object().bucket(&bucket).key("files/a").send().await),
        200
    );

    // Another bucket is out of reach, and so is deleting its own bucket.
    // (Within the test bed's bucket prefix, so that the role's own policy, not the boundary, is
    // what keeps it out.)
    let other = aws::unique_bucket(&ns, "other");
    aws::create_bucket(&aws::s3(&bed, "us-east-2").await, &other, "us-east-2").await;
    let put = s3
        .put_object()
        .bucket(&other)
        .key("files/a")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert_eq!(status_of(put), 403);
    assert_eq!(status_of(s3.list_objects_v2().bucket(&other).send().await), 403);
    assert_eq!(status_of(s3.delete_bucket().bucket(&bucket).send().await), 403);
}

#[tokio::test]
async fn a_permission_removed_out_of_band_is_named_by_bucketwire_validate() {
    let (bed, client, ns) = setup("narrowed").await;
    let mut operator = Operator::start(&bed, &ns, &[]);
    create(&client, &ns, "milvus", json!({"region": "us-east-2"})).await;
    let status = ready_status(&client, &ns, "milvus", &operator).await;
    let (code, out) = validate_cli(&bed, &format!("{ns}/milvus"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Validated: True"), "{out}");

    // With the operator stopped (nothing repairs), drop s3:GetBucketLocation from the policy.
    operator.kill();
    let iam = aws::iam(&bed, "us-east-1").await;
    let policy_arn = status.policy_arn.expect("policy");
    let v1 = iam
        .get_policy_version()
        .policy_arn(&policy_arn)
        .version_id("v1")
        .send()
        .await
        .expect("v1");
    let mut doc = parse_document(v1.policy_version().and_then(|v| v.document()).expect("doc")).expect("json");
    doc["Statement"][0]["Action"] = json!(["s3:ListBucket"]);
    iam.create_policy_version()
        .policy_arn(&policy_arn)
        .policy_document(doc.to_string())
        .set_as_default(true)
        .send()
        .await
        .expect("narrowed");

    let (code, out) = validate_cli(&bed, &format!("{ns}/milvus"));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("AccessDenied") && out.contains("s3:GetBucketLocation"),
        "{out}"
    );
}

/// `bucketwire validate --context` uses that context of the kubeconfig, not the current one.
#[tokio::test]
async fn bucketwire_validate_uses_the_context_it_is_given() {
    let (bed, client, ns) = setup("context").await;
    let operator = Operator::start(&bed, &ns, &[]);
    create(&client, &ns, "milvus", json!({"region": "us-east-2"})).await;
    ready_status(&client, &ns, "milvus", &operator).await;

    // The test bed's kubeconfig, with a current context whose apiserver is nowhere.
    let mut kubeconfig =
        kube::config::Kubeconfig::read_from(bed.var("KUBECONFIG")).expect("kubeconfig reads");
    let bed_context = kubeconfig.current_context.clone().expect("a current context");
    let mut nowhere = kubeconfig.clusters[0].clone();
    nowhere.name = "nowhere".into();
    if let Some(cluster) = nowhere.cluster.as_mut() {
        cluster.server = Some("https://127.0.0.1:9".into());
    }
    let mut context = kubeconfig.contexts[0].clone();
    context.name = "nowhere".into();
    if let Some(c) = context.context.as_mut() {
        c.cluster = "nowhere".into();
    }
    kubeconfig.clusters.push(nowhere);
    kubeconfig.contexts.push(context);
    kubeconfig.current_context = Some("nowhere".into());
    let path = std::env::temp_dir().join(format!("bucketwire-{ns}-kubeconfig"));
    std::fs::write(&path, serde_json::to_string(&kubeconfig).expect("json")).expect("kubeconfig written");

    let integration = format!("{ns}/milvus");
    let validate = |extra: &[&str]| {
        let args: Vec<&str> = ["validate", integration.as_str()]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        run_cli_with_kubeconfig(&bed, &args, &path)
    };
    let (code, out) = validate(&[]);
    assert_eq!(code, 1, "the current context reaches nothing: {out}");
    assert!(out.contains("cannot read BucketIntegration"), "{out}");
    let (code, out) = validate(&["--context", &bed_context]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Validated: True"), "{out}");
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn a_trust_policy_for_another_service_account_is_caught_by_the_static_check() {
    let (bed, client, ns) = setup("trust").await;
    let mut operator = Operator::start(&bed, &ns, &[]);
    create(&client, &ns, "milvus", json!({"region": "us-east-2"})).await;
    let status = ready_status(&client, &ns, "milvus", &operator).await;
    operator.kill();
    let iam = aws::iam(&bed, "us-east-1").await;
    let role_name = status
        .role_arn
        .as_deref()
        .and_then(|a| a.rsplit('/').next())
        .expect("role")
        .to_string();
    let role = iam
        .get_role()
        .role_name(&role_name)
        .send()
        .await
        .expect("role")
        .role
        .expect("role");
    let mut trust = parse_document(role.assume_role_policy_document().expect("trust")).expect("json");
    let equals = trust["Statement"][0]["Condition"]["StringEquals"]
        .as_object_mut()
        .expect("conditions");
    let sub = equals.keys().find(|k| k.ends_with(":sub")).cloned().expect("sub");
    equals.insert(sub, json!(format!("system:serviceaccount:{ns}:someone-else")));
    iam.update_assume_role_policy()
        .role_name(&role_name)
        .policy_document(trust.to_string())
        .send()
        .await
        .expect("trust");

    // moto would let AssumeRoleWithWebIdentity through; the static check does not.
    let (code, out) = validate_cli(&bed, &format!("{ns}/milvus"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("AssumeRoleFailed"), "{out}");
    assert!(
        out.contains(&format!("system:serviceaccount:{ns}:milvus")) && out.contains(&role_name),
        "{out}"
    );
    assert!(
        !out.contains("ok   assume-role"),
        "stopped before assuming the role: {out}"
    );
}

#[tokio::test]
async fn an_issuer_that_is_not_the_clusters_is_caught_by_the_controller() {
    let (bed, client, ns) = setup("issuer").await;
    // A provider exists for this issuer, but the cluster's tokens come from another one.
    let issuer = format!("https://oidc.example.com/id/{}", ns.to_uppercase());
    aws::iam(&bed, "us-east-1")
        .await
        .create_open_id_connect_provider()
        .url(&issuer)
        .client_id_list("sts.amazonaws.com")
        .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
        .send()
        .await
        .expect("provider");
    // The operator's policy names that issuer's provider, as the README says to extend it.
    let provider = format!(
        "arn:aws:iam::{}:oidc-provider/{}",
        bed.var("BUCKETWIRE_TESTBED_ACCOUNT_ID"),
        issuer.trim_start_matches("https://")
    );
    let policy = aws::testbed_policy_extended(&bed, "FindTheClusterProvider", &[provider]);
    let identity = aws::operator_identity_with_policy(&bed, bed.var("AWS_REGION"), &policy).await;
    let operator = Operator::start_as(&bed, &ns, &["--allowed-oidc-issuers", &issuer], &[], &identity);
    create(
        &client,
        &ns,
        "milvus",
        json!({"region": "us-east-2", "identity": {"oidcIssuer": issuer}}),
    )
    .await;
    let bi = wait_condition(
        &client,
        &ns,
        "milvus",
        "Validated",
        "False",
        Some("AssumeRoleFailed"),
        &operator,
    )
    .await;
    let message = condition(&bi, "Validated").expect("validated").message;
    assert!(
        message.contains("issuer") && message.contains(bed.var("BUCKETWIRE_TESTBED_OIDC_ISSUER")),
        "{message}"
    );
    assert_eq!(condition(&bi, "Ready").expect("ready").status, "False");
}

#[tokio::test]
async fn a_missing_bucket_and_a_bucket_in_another_region_give_their_reasons() {
    let (bed, client, ns) = setup("gone").await;
    let mut operator = Operator::start(&bed, &ns, &[]);
    create(&client, &ns, "milvus", json!({"region": "us-east-2"})).await;
    let status = ready_status(&client, &ns, "milvus", &operator).await;
    operator.kill();
    let bucket = status.bucket.and_then(|b| b.name).expect("bucket");
    let admin_east = aws::s3(&bed, "us-east-2").await;
    // A validation interrupted by the kill may have left its probe object: empty the bucket.
    let listed = admin_east
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .expect("list");
    for object in listed.contents() {
        let key = object.key().expect("key");
        admin_east
            .delete_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .expect("object deleted");
    }
    admin_east
        .delete_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket deleted out of band");

    let (code, out) = validate_cli(&bed, &format!("{ns}/milvus"));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("BucketNotFound") && out.contains("check bucket failed") && out.contains("NoSuchBucket"),
        "{out}"
    );

    // The same name, now in another region.
    aws::create_bucket(&aws::s3(&bed, "us-west-2").await, &bucket, "us-west-2").await;
    let (code, out) = validate_cli(&bed, &format!("{ns}/milvus"));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("bucket region not match, want[us-east-2] got[us-west-2]"),
        "{out}"
    );
}

/// An adopted bucket whose own policy denies the object writes Milvus needs: the operator does
/// not manage that policy, so validation is what notices.
async fn adopted_bucket_denying_puts(bed: &TestBed, ns: &str) -> String {
    let name = aws::unique_bucket(ns, "adopted");
    let s3 = aws::s3(bed, "us-east-2").await;
    aws::create_bucket(&s3, &name, "us-east-2").await;
    let deny = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*",
        "Action": "s3:PutObject", "Resource": format!("arn:aws:s3:::{name}/*")}]});
    s3.put_bucket_policy()
        .bucket(&name)
        .policy(deny.to_string())
        .send()
        .await
        .expect("deny policy");
    name
}

/// An integration on that bucket, with the given propagation timeout, once it reports Propagating.
async fn propagating_integration(
    client: &kube::Client,
    ns: &str,
    bed: &TestBed,
    bucket: &str,
    timeout: &str,
) -> Operator {
    let operator = Operator::start(
        bed,
        ns,
        &["--adopt-buckets", bucket, "--propagation-timeout", timeout],
    );
    create(
        client,
        ns,
        "milvus",
        json!({"region": "us-east-2", "bucket": {"name": bucket, "create": false}}),
    )
    .await;
    wait_condition(
        client,
        ns,
        "milvus",
        "Validated",
        "False",
        Some("Propagating"),
        &operator,
    )
    .await;
    operator
}

#[tokio::test]
async fn a_denial_is_propagating_first_then_reported_with_the_action() {
    let (bed, client, ns) = setup("denied").await;
    let bucket = adopted_bucket_denying_puts(&bed, &ns).await;
    let operator = propagating_integration(&client, &ns, &bed, &bucket, "4s").await;
    let bi = wait_condition(
        &client,
        &ns,
        "milvus",
        "Validated",
        "False",
        Some("AccessDenied"),
        &operator,
    )
    .await;
    let message = condition(&bi, "Validated").expect("validated").message;
    assert!(message.contains("s3:PutObject"), "{message}");
    assert_eq!(condition(&bi, "Ready").expect("ready").reason, "AccessDenied");
}

#[tokio::test]
async fn a_role_usable_after_a_delay_goes_propagating_then_true() {
    let (bed, client, ns) = setup("delay").await;
    let bucket = adopted_bucket_denying_puts(&bed, &ns).await;
    let operator = propagating_integration(&client, &ns, &bed, &bucket, "60s").await;
    // The denial goes away, as an IAM change does once it has propagated.
    aws::s3(&bed, "us-east-2")
        .await
        .delete_bucket_policy()
        .bucket(&bucket)
        .send()
        .await
        .expect("deny lifted");
    let bi = wait_ready(&client, &ns, "milvus", &operator).await;
    assert_eq!(
        condition(&bi, "Validated").expect("validated").reason,
        "Validated"
    );
}

#[tokio::test]
async fn the_validate_annotation_runs_a_validation_now_and_is_cleared() {
    let (bed, client, ns) = setup("ondemand").await;
    // A long resync: only the annotation can cause the second validation.
    let operator = Operator::start(&bed, &ns, &["--resync-interval", "1h"]);
    create(&client, &ns, "milvus", json!({"region": "us-east-2"})).await;
    let first = wait_ready(&client, &ns, "milvus", &operator).await;
    let first_time = first
        .status
        .and_then(|s| s.last_validated)
        .expect("validated once");
    let assumed_before = operator
        .workload_calls()
        .await
        .iter()
        .filter(|((_, op, _), _)| op == "AssumeRoleWithWebIdentity")
        .map(|(_, n)| n)
        .sum::<u64>();

    tokio::time::sleep(Duration::from_millis(1100)).await; // lastValidated has second precision
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    api.patch(
        "milvus",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"bucketwire.io/validate": "now"}}})),
    )
    .await
    .expect("annotated");
    let after = wait_for("the on-demand validation", Duration::from_secs(30), || async {
        let bi = api.get("milvus").await.ok()?;
        let t = bi.status.as_ref()?.last_validated.clone()?;
        (t.0 > first_time.0 && !bi.annotations().contains_key("bucketwire.io/validate")).then_some(bi)
    })
    .await;
    assert_eq!(condition(&after, "Validated").expect("validated").status, "True");
    let assumed_after = operator
        .workload_calls()
        .await
        .iter()
        .filter(|((_, op, _), _)| op == "AssumeRoleWithWebIdentity")
        .map(|(_, n)| n)
        .sum::<u64>();
    assert!(
        assumed_after > assumed_before,
        "a new validation ran as the workload"
    );
}

/// Every object version and delete marker in `bucket`, as the administrator sees it:
/// (key, version id, is a delete marker).
async fn all_versions(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<(String, String, bool)> {
    let listed = s3
        .list_object_versions()
        .bucket(bucket)
        .send()
        .await
        .expect("ListObjectVersions as the administrator");
    let versions = listed.versions().iter().map(|v| {
        (
            v.key().unwrap_or_default().to_string(),
            v.version_id().unwrap_or_default().to_string(),
            false,
        )
    });
    let markers = listed.delete_markers().iter().map(|m| {
        (
            m.key().unwrap_or_default().to_string(),
            m.version_id().unwrap_or_default().to_string(),
            true,
        )
    });
    versions.chain(markers).collect()
}

/// Temporary credentials from STS start with ASIA, as on AWS: the workload's (after
/// AssumeRoleWithWebIdentity), and the operator's (its role, assumed by the test bed), which
/// `operator_key` names.
fn by_workload(r: &EmulatorRequest, operator_key: &str) -> bool {
    r.access_key.starts_with("ASIA") && r.access_key != operator_key
}

/// What the emulator's request log says happened to one integration's probe key.
#[derive(Debug)]
struct ProbeTraffic {
    /// PutObject of the probe by the workload, answered 200: one per validation that wrote.
    workload_puts: usize,
    /// DeleteObject (no version id) by the workload, answered 204: one delete marker each on a
    /// versioned bucket.
    workload_deletes: usize,
    /// DeleteObjectVersion by the operator's identity, answered 204.
    operator_version_deletes: usize,
    /// ListObjectVersions under the probe key by the operator's identity, answered 200.
    operator_version_listings: usize,
}

fn probe_traffic(bed: &TestBed, probe_path: &str) -> ProbeTraffic {
    let operator_key = bed.var("BUCKETWIRE_OPERATOR_AWS_ACCESS_KEY_ID");
    let requests = aws::emulator_requests(bed);
    let bucket_path = probe_path.split('/').take(2).collect::<Vec<_>>().join("/");
    let operator_version_listings = requests
        .iter()
        .filter(|r| {
            r.path.trim_end_matches('/') == bucket_path
                && r.access_key == operator_key
                && r.method == "GET"
                && r.query.contains("versions")
                && r.query.contains("bucketwire-validation")
                && r.status == 200
        })
        .count();
    let on_probe: Vec<&EmulatorRequest> = requests.iter().filter(|r| r.path == probe_path).collect();
    let count = |f: &dyn Fn(&EmulatorRequest) -> bool| on_probe.iter().filter(|r| f(r)).count();
    ProbeTraffic {
        workload_puts: count(&|r| by_workload(r, operator_key) && r.method == "PUT" && r.status == 200),
        workload_deletes: count(&|r| {
            by_workload(r, operator_key)
                && r.method == "DELETE"
                && !r.query.contains("versionId")
                && r.status == 204
        }),
        operator_version_deletes: count(&|r| {
            r.access_key == operator_key
                && r.method == "DELETE"
                && r.query.contains("versionId")
                && r.status == 204
        }),
        operator_version_listings,
    }
}

/// Deletes the integration and waits until its finalizer has let go.
async fn delete_and_wait_gone(client: &kube::Client, ns: &str, name: &str) {
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), ns);
    api.delete(name, &Default::default())
        .await
        .expect("delete accepted");
    wait_for(
        "the integration to be deleted",
        Duration::from_secs(60),
        || async { api.get_opt(name).await.ok()?.is_none().then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_versioned_bucket_keeps_no_probe_version_and_is_deleted_with_its_integration() {
    const VALIDATIONS: usize = 5;
    let (bed, client, ns) = setup("versioned").await;
    let mut operator = Operator::start(&bed, &ns, &["--resync-interval", "2s"]);
    let spec = json!({"region": "us-east-2", "bucket": {"versioning": true, "deletionPolicy": "Delete"}});
    let uid = create(&client, &ns, "milvus", spec).await.uid().expect("uid");
    let status = ready_status(&client, &ns, "milvus", &operator).await;
    let bucket = status.bucket.and_then(|b| b.name).expect("bucket");
    let probe_path = format!("/{bucket}/files/.bucketwire-validation/{uid}");

    // Several validations, each counted by the emulator (the workload's PutObject of the probe).
    wait_for(
        "several validations on the resync",
        Duration::from_secs(60),
        || async { (probe_traffic(&bed, &probe_path).workload_puts >= VALIDATIONS).then_some(()) },
    )
    .await;
    // SIGTERM: the validation under way finishes, no other starts; the bucket is then still.
    operator.terminate();
    assert!(
        operator.wait_for_exit(Duration::from_secs(30)),
        "the operator stops on SIGTERM"
    );
    let traffic = probe_traffic(&bed, &probe_path);
    let admin = aws::s3(&bed, "us-east-2").await;
    let left = all_versions(&admin, &bucket).await;
    let made = traffic.workload_puts + traffic.workload_deletes;
    results::record(
        "validation-probe-versions",
        &json!({
            "test": "tests/validation.rs::a_versioned_bucket_keeps_no_probe_version_and_is_deleted_with_its_integration",
            "validations": traffic.workload_puts,
            "versions_and_delete_markers_made_by_the_workload": made,
            "deleted_by_the_operator": traffic.operator_version_deletes,
            "operator_list_object_versions": traffic.operator_version_listings,
            "left_in_the_bucket": left.len(),
        }),
    );
    assert!(traffic.workload_puts >= VALIDATIONS, "{traffic:?}");
    assert!(left.is_empty(), "probe versions left behind: {left:?}");
    // Each probe made an object version and a delete marker (so the bucket is versioned), and
    // the operator deleted each exactly once.
    assert_eq!(traffic.workload_deletes, traffic.workload_puts, "{traffic:?}");
    assert_eq!(traffic.operator_version_deletes, made, "{traffic:?}");
    assert_eq!(
        traffic.operator_version_listings, traffic.workload_puts,
        "one ListObjectVersions under the probe key per validation: {traffic:?}"
    );

    // With nothing left, deletionPolicy Delete deletes the bucket.
    operator.restart_clean(&bed);
    delete_and_wait_gone(&client, &ns, "milvus").await;
    let head = admin.head_bucket().bucket(&bucket).send().await;
    assert_eq!(status_of(head), 404, "the bucket was deleted");
}

#[tokio::test]
async fn a_probe_interrupted_after_its_put_is_cleaned_by_the_next_one() {
    let (bed, client, ns) = setup("interrupted").await;
    let mut operator = Operator::start_with_env(
        &bed,
        &ns,
        &["--resync-interval", "2s"],
        &[("BUCKETWIRE_CRASH_AT", "after-probe-put")],
    );
    let spec = json!({"region": "us-east-2", "bucket": {"versioning": true, "deletionPolicy": "Delete"}});
    let uid = create(&client, &ns, "milvus", spec).await.uid().expect("uid");
    assert!(
        operator.wait_for_exit(Duration::from_secs(60)),
        "the operator aborts right after the probe's PutObject; log:\n{}",
        operator.log()
    );
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    let bucket = api
        .get("milvus")
        .await
        .expect("integration")
        .status
        .and_then(|s| s.bucket)
        .and_then(|b| b.name)
        .expect("the bucket name is recorded before the bucket is created");
    let key = format!("files/.bucketwire-validation/{uid}");
    let admin = aws::s3(&bed, "us-east-2").await;
    let interrupted = all_versions(&admin, &bucket).await;
    assert!(
        interrupted.len() == 1 && interrupted[0].0 == key && !interrupted[0].2,
        "the interrupted probe left exactly its object version: {interrupted:?}"
    );

    // The next validation deletes what it made and what the interrupted one left.
    operator.restart_clean(&bed);
    ready_status(&client, &ns, "milvus", &operator).await;
    operator.terminate();
    assert!(
        operator.wait_for_exit(Duration::from_secs(30)),
        "the operator stops on SIGTERM"
    );
    let left = all_versions(&admin, &bucket).await;
    results::record(
        "validation-probe-interrupted",
        &json!({
            "test": "tests/validation.rs::a_probe_interrupted_after_its_put_is_cleaned_by_the_next_one",
            "left_by_the_interrupted_probe": interrupted.len(),
            "left_after_the_next_validation": left.len(),
        }),
    );
    assert!(left.is_empty(), "left behind: {left:?}");
    operator.restart_clean(&bed);
    delete_and_wait_gone(&client, &ns, "milvus").await;
    assert_eq!(
        status_of(admin.head_bucket().bucket(&bucket).send().await),
        404,
        "the bucket was deleted"
    );
}

#[tokio::test]
async fn the_probe_starts_with_head_bucket_as_the_workload_and_it_is_allowed() {
    let (bed, client, ns) = setup("headbucket").await;
    let operator = Operator::start(&bed, &ns, &[]);
    create(&client, &ns, "milvus", json!({"region": "us-east-2"})).await;
    let status = ready_status(&client, &ns, "milvus", &operator).await;
    let bucket = status.bucket.and_then(|b| b.name).expect("bucket");

    // From the emulator's side: each set of temporary credentials the probe used on this bucket
    // (one per validation) made HeadBucket its first request, and was answered 200.
    let requests = aws::emulator_requests(&bed);
    let operator_key = bed.var("BUCKETWIRE_OPERATOR_AWS_ACCESS_KEY_ID");
    let mut keys: Vec<&str> = requests
        .iter()
        .filter(|r| by_workload(r, operator_key) && r.is_for_bucket(&bucket))
        .map(|r| r.access_key.as_str())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert!(
        !keys.is_empty(),
        "the probe used the workload's temporary credentials"
    );
    for key in keys {
        let first = requests
            .iter()
            .find(|r| r.access_key == key)
            .expect("a first request");
        assert_eq!(
            (
                first.method.as_str(),
                first.path.trim_end_matches('/'),
                first.query.as_str(),
                first.status
            ),
            ("HEAD", format!("/{bucket}").as_str(), "", 200),
            "the first request signed by {key}: {first:?}"
        );
        let decided: Vec<(&str, &str)> = first
            .decisions
            .iter()
            .map(|d| (d.action.as_str(), d.result.as_str()))
            .collect();
        assert_eq!(
            decided,
            [("s3:ListBucket", "Allowed")],
            "HeadBucket is authorized by s3:ListBucket: {first:?}"
        );
    }
}

#[tokio::test]
async fn a_role_without_s3_list_bucket_fails_at_head_bucket_as_milvus_would() {
    let (bed, client, ns) = setup("nolist").await;
    let mut operator = Operator::start(&bed, &ns, &[]);
    create(&client, &ns, "milvus", json!({"region": "us-east-2"})).await;
    let status = ready_status(&client, &ns, "milvus", &operator).await;

    // With the operator stopped (nothing repairs), drop s3:ListBucket from the policy.
    operator.kill();
    let iam = aws::iam(&bed, "us-east-1").await;
    let policy_arn = status.policy_arn.expect("policy");
    let mut doc = aws::policy_of(&iam, &policy_arn).await;
    assert_eq!(doc["Statement"][0]["Sid"], "BucketLevel", "{doc}");
    doc["Statement"][0]["Action"] = json!(["s3:GetBucketLocation"]);
    iam.create_policy_version()
        .policy_arn(&policy_arn)
        .policy_document(doc.to_string())
        .set_as_default(true)
        .send()
        .await
        .expect("narrowed");

    let (code, out) = validate_cli(&bed, &format!("{ns}/milvus"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL head-bucket"), "{out}");
    assert!(
        out.contains("AccessDenied") && out.contains("s3:ListBucket"),
        "{out}"
    );
}

#[tokio::test]
async fn a_probe_that_fails_after_its_put_still_removes_its_version() {
    let (bed, client, ns) = setup("failedprobe").await;
    let mut operator = Operator::start(&bed, &ns, &[]);
    let spec = json!({"region": "us-east-2", "bucket": {"versioning": true}});
    create(&client, &ns, "milvus", spec).await;
    let status = ready_status(&client, &ns, "milvus", &operator).await;
    let bucket = status.bucket.and_then(|b| b.name).expect("bucket");

    // With the operator stopped (nothing repairs), drop s3:GetObject: the probe's put succeeds
    // and its get is denied.
    operator.kill();
    let iam = aws::iam(&bed, "us-east-1").await;
    let policy_arn = status.policy_arn.expect("policy");
    let mut doc = aws::policy_of(&iam, &policy_arn).await;
    assert_eq!(doc["Statement"][1]["Sid"], "ObjectLevel", "{doc}");
    doc["Statement"][1]["Action"] = json!(["s3:PutObject", "s3:DeleteObject"]);
    iam.create_policy_version()
        .policy_arn(&policy_arn)
        .policy_document(doc.to_string())
        .set_as_default(true)
        .send()
        .await
        .expect("narrowed");

    let (code, out) = validate_cli(&bed, &format!("{ns}/milvus"));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("ok   put") && out.contains("FAIL get") && out.contains("ok   cleanup"),
        "{out}"
    );
    let left = all_versions(&aws::s3(&bed, "us-east-2").await, &bucket).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The probe does what Milvus 2.6's storage client and Woodpecker do in their first minute, as
/// the workload, and leaves nothing behind: HeadBucket, put, get and a ranged get, list, a
/// multipart upload, a conditional write accepted and one refused with 412, deletes.
#[tokio::test]
async fn the_probe_replays_milvus_first_minute_as_the_workload_and_leaves_nothing() {
    let (bed, client, ns) = setup("milvusprobe").await;
    let mark = aws::request_log_mark(&bed);
    let operator = Operator::start(&bed, &ns, &[]);
    let bi = create(&client, &ns, "milvus", json!({"region": "us-east-2"})).await;
    let status = ready_status(&client, &ns, "milvus", &operator).await;
    let bucket = status.bucket.and_then(|b| b.name).expect("bucket");
    let key = format!("files/.bucketwire-validation/{}", bi.uid().expect("uid"));
    let validated = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Validated")
        .expect("Validated");
    assert!(
        validated
            .message
            .contains("ranged get, list, multipart upload, conditional write (If-None-Match)"),
        "{}",
        validated.message
    );

    // The emulator's word: the first validation's calls, signed by the workload's session.
    let operator_key = bed.var("BUCKETWIRE_OPERATOR_AWS_ACCESS_KEY_ID");
    let requests: Vec<EmulatorRequest> = aws::emulator_requests_since(&bed, mark)
        .into_iter()
        .filter(|r| by_workload(r, operator_key) && r.is_for_bucket(&bucket))
        .collect();
    let first_session = requests.first().expect("workload requests").access_key.clone();
    let calls: Vec<(String, String, String, u16)> = requests
        .iter()
        .filter(|r| r.access_key == first_session)
        .map(|r| {
            let object = r
                .path
                .strip_prefix(&format!("/{bucket}/"))
                .unwrap_or_default()
                .to_string();
            // The query's parameter names only (upload ids and part numbers vary; `x-id` is
            // the SDK's operation name).
            let mut names: Vec<&str> = r
                .query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| p.split('=').next().unwrap_or_default())
                .filter(|name| *name != "x-id")
                .collect();
            names.sort_unstable();
            (r.method.clone(), object, names.join("&"), r.status)
        })
        .collect();
    let at = |method: &str, object: &str, query: &str, status: u16| {
        (method.to_string(), object.to_string(), query.to_string(), status)
    };
    let multipart = format!("{key}.multipart");
    let conditional = format!("{key}.conditional");
    let expected = vec![
        at("HEAD", "", "", 200),
        at("GET", "", "location", 200),
        at("PUT", &key, "", 200),
        at("GET", &key, "", 200),
        at("GET", &key, "", 206), // the ranged get
        at("GET", "", "list-type&max-keys&prefix", 200),
        at("POST", &multipart, "uploads", 200),
        at("PUT", &multipart, "partNumber&uploadId", 200),
        at("POST", &multipart, "uploadId", 200),
        at("GET", &multipart, "", 200),
        at("PUT", &conditional, "", 200),
        at("PUT", &conditional, "", 412), // If-None-Match: * over the existing object
        at("DELETE", &key, "", 204),
        at("DELETE", &multipart, "", 204),
        at("DELETE", &conditional, "", 204),
    ];
    assert_eq!(calls, expected, "the first validation's calls as the workload");
    let role = status.role_arn.expect("role");
    for r in requests.iter().filter(|r| r.access_key == first_session) {
        assert!(
            r.decisions.iter().all(|d| d.principal == role),
            "decided for the workload's role: {r:?}"
        );
    }

    // Nothing left: no object, no version, no incomplete upload under the probe's keys.
    let s3 = aws::s3(&bed, "us-east-2").await;
    let left: Vec<_> = all_versions(&s3, &bucket)
        .await
        .into_iter()
        .filter(|(k, _, _)| k.contains(".bucketwire-validation/"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let uploads = s3
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .expect("ListMultipartUploads as the administrator");
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
}

/// A role that may put objects but not start a multipart upload under the probe's key (a Deny
/// on that key, added with the operator stopped): validation fails at the multipart step and
/// names the call, as Milvus would fail writing its first large file.
#[tokio::test]
async fn a_role_that_cannot_upload_in_parts_fails_at_the_multipart_step_naming_the_call() {
    let (bed, client, ns) = setup("nomultipart").await;
    let mut operator = Operator::start(&bed, &ns, &[]);
    let bi = create(&client, &ns, "milvus", json!({"region": "us-east-2"})).await;
    let status = ready_status(&client, &ns, "milvus", &operator).await;
    let bucket = status.bucket.and_then(|b| b.name).expect("bucket");
    let multipart = format!(
        "files/.bucketwire-validation/{}.multipart",
        bi.uid().expect("uid")
    );

    operator.kill();
    let iam = aws::iam(&bed, "us-east-1").await;
    let policy_arn = status.policy_arn.expect("policy");
    let mut doc = aws::policy_of(&iam, &policy_arn).await;
    doc["Statement"].as_array_mut().expect("statements").push(json!({
        "Effect": "Deny", "Action": "s3:PutObject",
        "Resource": format!("arn:aws:s3:::{bucket}/{multipart}"),
    }));
    iam.create_policy_version()
        .policy_arn(&policy_arn)
        .policy_document(doc.to_string())
        .set_as_default(true)
        .send()
        .await
        .expect("multipart denied");

    let (code, out) = validate_cli(&bed, &format!("{ns}/milvus"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL multipart"), "{out}");
    assert!(
        out.contains(&format!(
            "AccessDenied: s3:PutObject on arn:aws:s3:::{bucket}/{multipart} (CreateMultipartUpload)"
        )),
        "{out}"
    );
    // The put, get and ranged get before it passed.
    for passed in ["put", "get", "ranged-get", "list"] {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(passed))
            .unwrap_or_default();
        assert!(line.trim_start().starts_with("ok "), "{passed}: {out}");
    }
}
