//! Step 6, "Validate Integration": prove the wiring by acting as the Milvus ServiceAccount.
//!
//! TokenRequest (audience `sts.amazonaws.com`, 10 minutes, never logged or stored) -> a static
//! check of the token's `iss`/`sub`/`aud` against the role's trust policy and OIDC provider
//! (the emulator does not enforce trust policies; AWS does, and the static check catches a
//! mismatch in both) -> AssumeRoleWithWebIdentity -> HeadBucket (first, as Milvus's S3 client
//! starts) -> GetBucketLocation -> put, get, list and delete of a probe object under `rootPath`
//! (ReadOnly: get and list). On a versioned bucket the put leaves an object version and the
//! delete a delete marker; the operator, with its own credentials, then deletes every version of
//! the probe key (this probe's, and any an interrupted probe left), so validation never keeps a
//! bucket from being deleted. The workload's role is not given s3:DeleteObjectVersion.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::Value;

use crate::api::Access;
use crate::aws::actions::{Call, Operation};
use crate::aws::{Aws, AwsFailure};
use crate::documents::{
    POD_IDENTITY_AUDIENCE, POD_IDENTITY_PRINCIPAL, STS_AUDIENCE, statements, string_list,
};
use crate::error::Error;
use crate::naming::{Partition, bucket_arn, issuer_host_path};
use crate::steps::bucket::location_to_region;

/// Token lifetime: the minimum the apiserver issues.
const TOKEN_SECONDS: i64 = 600;

/// What is validated, and as whom.
#[derive(Clone, Debug)]
pub struct Target {
    pub namespace: String,
    pub service_account: String,
    pub role_arn: String,
    /// How the workload gets the role's credentials.
    pub identity: WorkloadIdentity,
    /// The role's trust policy as it is in IAM.
    pub trust: Value,
    pub bucket: String,
    pub region: String,
    pub root_path: String,
    pub access: Access,
    /// Distinguishes concurrent probes (the integration's uid).
    pub probe_id: String,
}

/// How the workload gets credentials, and so how validation gets them as the workload.
#[derive(Clone, Debug)]
pub enum WorkloadIdentity {
    /// IRSA: AssumeRoleWithWebIdentity through this IAM OIDC provider.
    Irsa { provider_arn: String },
    /// EKS Pod Identity: EKS Auth AssumeRoleForPodIdentity in the cluster's region, as the
    /// node's Pod Identity Agent calls it.
    PodIdentity {
        cluster: String,
        cluster_arn: String,
        /// The cluster's region (EKS Auth is regional).
        region: String,
        association_arn: String,
        /// The association step has just read the association: validation need not.
        association_checked: bool,
    },
    /// Alibaba Cloud RRSA: STS AssumeRoleWithOIDC through the cluster's RRSA OIDC provider
    /// (validated by `provider::alibaba::validate`, which shares `probe`).
    Rrsa { oidc_provider_arn: String },
}

impl Target {
    pub fn subject(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }

    pub fn probe_key(&self) -> String {
        format!("{}/.bucketwire-validation/{}", self.root_path, self.probe_id)
    }
}

/// One line of the report: what was checked and what was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// The outcome of a validation: every check made, and the first failure if any.
#[derive(Debug, Default)]
pub struct Report {
    pub checks: Vec<Check>,
    pub failure: Option<Error>,
    /// Set when only static checks could run (EKS Auth refused the operator): why.
    pub statically: Option<String>,
}

impl Report {
    pub fn pass(&mut self, name: &'static str, detail: String) {
        self.checks.push(Check {
            name,
            passed: true,
            detail,
        });
    }

    pub fn fail(mut self, name: &'static str, error: Error) -> Self {
        self.checks.push(Check {
            name,
            passed: false,
            detail: error.to_string(),
        });
        self.failure = Some(error);
        self
    }

    pub fn succeeded(&self) -> bool {
        self.failure.is_none()
    }

    /// One sentence for the Validated condition when everything passed.
    pub fn summary(&self, target: &Target) -> String {
        let ops = match target.access {
            Access::ReadWrite => {
                "put, get, ranged get, list, multipart upload, conditional write (If-None-Match) and delete"
            }
            Access::ReadOnly => "get and list",
        };
        if let Some(why) = &self.statically {
            return format!(
                "checked statically only: {}; the role's trust policy admits exactly {} through EKS Pod Identity. {why}: the S3 probe as the workload did not run",
                self.checks
                    .iter()
                    .find(|c| c.name == "association")
                    .map(|c| c.detail.as_str())
                    .unwrap_or("the pod identity association exists"),
                target.subject()
            );
        }
        let how = match &target.identity {
            WorkloadIdentity::Irsa { .. } | WorkloadIdentity::Rrsa { .. } => "assumed",
            WorkloadIdentity::PodIdentity { .. } => "got Pod Identity credentials for",
        };
        // Without the GetBucketLocation check (OSS), the region is the endpoint's only.
        let located = if self.checks.iter().any(|c| c.name == "region") {
            "is in"
        } else {
            "answered at the endpoint of"
        };
        let mut summary = format!(
            "{how} {} as {}; bucket {} {located} {}; {ops} under {}/ succeeded",
            target.role_arn,
            target.subject(),
            target.bucket,
            target.region,
            target.root_path
        );
        if let Some(cleanup) = self.checks.iter().find(|c| c.name == "cleanup") {
            if cleanup.passed {
                summary.push_str("; the probe's object versions were removed");
            } else {
                summary.push_str(&format!(
                    "; but the probe's object versions were not removed: {}",
                    cleanup.detail
                ));
            }
        }
        summary
    }
}

/// The claims of a ServiceAccount token that the trust policy is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
}

/// Reads the claims of a JWT without verifying it (it comes straight from the apiserver).
pub fn claims(token: &str) -> Option<Claims> {
    let payload = token.split('.').nth(1)?;
    let json: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    let aud = string_list(&json["aud"]);
    Some(Claims {
        iss: json["iss"].as_str()?.to_string(),
        sub: json["sub"].as_str()?.to_string(),
        aud,
    })
}

/// Pure: would a web-identity token with these claims be allowed to assume a role with this
/// trust policy through this provider? Mirrors IAM's evaluation of the IRSA statement shape.
pub fn check_trust(claims: &Claims, trust: &Value, provider_arn: &str) -> Result<(), String> {
    let host_path = issuer_host_path(&claims.iss);
    let provider_host_path = provider_arn
        .split_once(":oidc-provider/")
        .map(|(_, hp)| hp)
        .unwrap_or_default();
    if provider_host_path != host_path {
        return Err(format!(
            "the token's issuer {} is not the OIDC provider {provider_arn}; the cluster's ServiceAccount issuer and the provider the role trusts differ",
            claims.iss
        ));
    }
    if !claims.aud.iter().any(|a| a == STS_AUDIENCE) {
        return Err(format!(
            "the token's audience {:?} does not include {STS_AUDIENCE}",
            claims.aud
        ));
    }
    let mut allowed_subjects = vec![];
    for s in &statements(trust) {
        let allows = s["Effect"] == "Allow"
            && string_list(&s["Action"])
                .iter()
                .any(|a| a == "sts:AssumeRoleWithWebIdentity")
            && string_list(&s["Principal"]["Federated"])
                .iter()
                .any(|p| p == provider_arn);
        if !allows {
            continue;
        }
        let equals = &s["Condition"]["StringEquals"];
        let subs = string_list(&equals[format!("{host_path}:sub")]);
        let auds = string_list(&equals[format!("{host_path}:aud")]);
        allowed_subjects.extend(subs.iter().cloned());
        if subs.contains(&claims.sub) && claims.aud.iter().any(|a| auds.contains(a)) {
            return Ok(());
        }
    }
    Err(format!(
        "the trust policy does not allow subject {} (it allows {allowed_subjects:?} through {provider_arn})",
        claims.sub
    ))
}

/// The ARN of `bucket` (`key` empty) or of one of its objects, in the partition of `region`.
fn s3_arn(region: &str, bucket: &str, key: &str) -> String {
    let arn = bucket_arn(Partition::of_region(region), bucket);
    if key.is_empty() {
        arn
    } else {
        format!("{arn}/{key}")
    }
}

/// Classifies a failed probe call as the precise reason, naming the IAM action.
pub fn probe_failure(call: Call, bucket: &str, failure: AwsFailure) -> Error {
    let mentions_kms =
        failure.message.contains("kms:") || failure.code.as_deref().is_some_and(|c| c.starts_with("KMS"));
    if mentions_kms
        && (failure.is_access_denied() || failure.code.as_deref().is_some_and(|c| c.starts_with("KMS")))
    {
        Error::KmsAccessDenied {
            call,
            detail: failure.to_string(),
        }
    } else if failure.is_code("NoSuchBucket") {
        Error::BucketNotFound {
            bucket: bucket.to_string(),
        }
    } else {
        Error::aws(call, failure)
    }
}

/// Runs every check in order and stops at the first failure.
pub async fn run(client: &Client, aws: &Aws, target: &Target) -> Report {
    let mut report = Report::default();
    let credentials = match workload_credentials(client, aws, target, &mut report).await {
        Ok(Some(credentials)) => credentials,
        // Only static checks were possible, and they passed.
        Ok(None) => return report,
        Err((name, error)) => return report.fail(name, error),
    };
    let s3 = aws.workload_s3(&target.region, credentials);
    probe(&s3, &aws.s3(&target.region), target, true, report).await
}

/// The read-only check of a steady resync: the workload's credentials as the full run gets
/// them (the token, the role assumed), then HeadBucket (s3:ListBucket) and a GetObject of the
/// probe key, absent, whose NoSuchKey proves s3:GetObject allowed. No write in the bucket; what
/// only a write would show (a denied PutObject, a KMS key the workload may not encrypt with)
/// waits for the next full probe.
pub async fn run_read_only(client: &Client, aws: &Aws, target: &Target) -> Report {
    let mut report = Report::default();
    let credentials = match workload_credentials(client, aws, target, &mut report).await {
        Ok(Some(credentials)) => credentials,
        Ok(None) => return report,
        Err((name, error)) => return report.fail(name, error),
    };
    let s3 = aws.workload_s3(&target.region, credentials);
    if let Err(error) = head_bucket(&s3, &target.bucket, &target.region).await {
        return report.fail("head-bucket", error);
    }
    report.pass(
        "head-bucket",
        format!("HeadBucket s3://{} (s3:ListBucket)", target.bucket),
    );
    let key = target.probe_key();
    match s3.get_object().bucket(&target.bucket).key(&key).send().await {
        Err(err) => {
            let failure = AwsFailure::from_sdk(&err);
            if failure.is_code("NoSuchKey") || failure.status == Some(404) {
                report.pass(
                    "get",
                    format!("GetObject s3://{}/{key} allowed (no such key)", target.bucket),
                );
                report
            } else {
                report.fail("get", probe_error(target, Operation::GetObject, &key, failure))
            }
        }
        // A probe object left by an interrupted probe: the full probe removes it.
        Ok(_) => report.fail(
            "get",
            Error::InvalidSpec(format!(
                "s3://{}/{key} exists (left by an interrupted probe)",
                target.bucket
            )),
        ),
    }
}

/// The workload's credentials, as its SDK gets them (`None`: only static checks were possible,
/// and they passed, recorded in `report`).
async fn workload_credentials(
    client: &Client,
    aws: &Aws,
    target: &Target,
    report: &mut Report,
) -> Result<Option<aws_sdk_s3::config::Credentials>, (&'static str, Error)> {
    match &target.identity {
        WorkloadIdentity::Irsa { provider_arn } => {
            irsa_credentials(client, aws, target, provider_arn, report).await
        }
        WorkloadIdentity::PodIdentity {
            cluster,
            cluster_arn,
            region,
            association_arn,
            association_checked,
        } => {
            let pod_identity = PodIdentityTarget {
                cluster,
                cluster_arn,
                region,
                association_arn,
                association_checked: *association_checked,
            };
            pod_identity_credentials(client, aws, target, &pod_identity, report).await
        }
        WorkloadIdentity::Rrsa { .. } => Err((
            "token",
            Error::InvalidSpec("an RRSA identity is validated against Alibaba Cloud, not AWS".into()),
        )),
    }
}

/// The workload's calls on its bucket, as Milvus makes them, through any S3-compatible API
/// (S3 itself, or OSS's): HeadBucket, optionally the bucket's region, then the object
/// operations; on a versioned bucket the operator (`operator_s3`) removes the probe's versions.
pub async fn probe(
    s3: &aws_sdk_s3::Client,
    operator_s3: &aws_sdk_s3::Client,
    target: &Target,
    check_region: bool,
    mut report: Report,
) -> Report {
    let subject = target.subject();

    // 4. HeadBucket first, as Milvus's S3 client does when it connects (on AWS HeadBucket is
    //    authorized by s3:ListBucket). A bucket in another region is named here already.
    if let Err(error) = head_bucket(s3, &target.bucket, &target.region).await {
        return report.fail("head-bucket", error);
    }
    report.pass(
        "head-bucket",
        format!("HeadBucket s3://{} (s3:ListBucket)", target.bucket),
    );

    // 5. The bucket is where Milvus will look for it.
    if check_region {
        if let Err(error) = bucket_in_region(s3, &target.bucket, &target.region).await {
            return report.fail("region", error);
        }
        report.pass(
            "region",
            format!("bucket {} is in {}", target.bucket, target.region),
        );
    }

    // 6. The object operations Milvus makes, on a probe object under rootPath.
    let key = target.probe_key();
    let mut made = ProbeVersions::default();
    if let Err((name, error)) = object_operations(s3, target, &key, &subject, &mut report, &mut made).await {
        report = report.fail(name, error);
    }

    // 7. On a versioned bucket the put left an object version and the delete a delete marker
    //    (also when a step after the put failed). The workload may not remove versions (Milvus
    //    never needs s3:DeleteObjectVersion, so its role does not get it): the operator does,
    //    with its own credentials, for this probe key only.
    if made.versioned() {
        match remove_probe_versions(operator_s3, &target.bucket, &key, &made).await {
            Ok(removed) => report.pass(
                "cleanup",
                format!(
                    "removed {removed} version(s) of s3://{}/{key} as the operator (s3:DeleteObjectVersion)",
                    target.bucket
                ),
            ),
            Err(detail) => {
                tracing::warn!(bucket = %target.bucket, %key, %detail, "probe versions left behind");
                // Not a validation failure: the workload's wiring is what is validated, and
                // failing here would retry (and leave versions) faster. The summary says it.
                report.checks.push(Check {
                    name: "cleanup",
                    passed: false,
                    detail,
                });
            }
        }
    }
    report
}

/// A ServiceAccount token for `audience`, as the kubelet would project it (never logged).
pub async fn token_for(
    client: &Client,
    target: &Target,
    audience: &str,
    report: &mut Report,
) -> Result<String, (&'static str, Error)> {
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), &target.namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![audience.into()],
            expiration_seconds: Some(TOKEN_SECONDS),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = match sa
        .create_token_request(&target.service_account, &PostParams::default(), &request)
        .await
    {
        Ok(answer) => match answer.status {
            Some(status) => status.token,
            None => {
                return Err((
                    "token",
                    Error::InvalidSpec("TokenRequest returned no token".into()),
                ));
            }
        },
        Err(err) => return Err(("token", Error::kube("TokenRequest")(err))),
    };
    report.pass(
        "token",
        format!(
            "TokenRequest for {} (audience {audience}, {TOKEN_SECONDS}s)",
            target.subject()
        ),
    );
    Ok(token)
}

/// IRSA: token (audience sts.amazonaws.com) -> static check against the trust policy and the
/// provider -> AssumeRoleWithWebIdentity, exactly as the SDK in the Milvus pod does.
async fn irsa_credentials(
    client: &Client,
    aws: &Aws,
    target: &Target,
    provider_arn: &str,
    report: &mut Report,
) -> Result<Option<aws_sdk_s3::config::Credentials>, (&'static str, Error)> {
    let subject = target.subject();
    let token = token_for(client, target, STS_AUDIENCE, report).await?;
    let Some(claims) = claims(&token) else {
        return Err((
            "trust",
            Error::InvalidSpec("the ServiceAccount token is not a readable JWT".into()),
        ));
    };
    if let Err(detail) = check_trust(&claims, &target.trust, provider_arn) {
        let error = Error::AssumeRoleFailed {
            role: target.role_arn.clone(),
            subject: subject.clone(),
            detail,
        };
        return Err(("trust", error));
    }
    report.pass(
        "trust",
        format!(
            "token iss/sub/aud match the trust policy of {} and {provider_arn}",
            target.role_arn
        ),
    );
    let assumed = aws
        .workload_sts(&target.region)
        .assume_role_with_web_identity()
        .role_arn(&target.role_arn)
        .role_session_name("bucketwire-validation")
        .web_identity_token(&token)
        .duration_seconds(900)
        .send()
        .await;
    drop(token);
    let failed = |detail: String| {
        (
            "assume-role",
            Error::AssumeRoleFailed {
                role: target.role_arn.clone(),
                subject: subject.clone(),
                detail,
            },
        )
    };
    let credentials = match assumed {
        Ok(out) => match out.credentials {
            Some(c) => aws_sdk_s3::config::Credentials::new(
                c.access_key_id,
                c.secret_access_key,
                Some(c.session_token),
                None,
                "bucketwire-validation",
            ),
            None => return Err(failed("STS returned no credentials".into())),
        },
        Err(err) => {
            let failure = AwsFailure::from_sdk(&err);
            if says_nothing_about_trust(&failure) {
                let call = Call::new(Operation::AssumeRoleWithWebIdentity, target.role_arn.clone());
                return Err(("assume-role", Error::aws(call, failure)));
            }
            return Err(failed(failure.to_string()));
        }
    };
    report.pass(
        "assume-role",
        format!("AssumeRoleWithWebIdentity {} as {subject}", target.role_arn),
    );
    Ok(Some(credentials))
}

/// Pure: whether STS's refusal to hand out credentials is about STS, not the role's trust:
/// throttling, a 5xx or a lost connection. Such a failure is retried with backoff (a transient
/// error), never reported as AssumeRoleFailed and left until the next resync.
pub fn says_nothing_about_trust(failure: &AwsFailure) -> bool {
    failure.is_throttling() || failure.status.is_none_or(|s| s >= 500)
}

/// The EKS side of a Pod Identity validation.
struct PodIdentityTarget<'a> {
    cluster: &'a str,
    cluster_arn: &'a str,
    region: &'a str,
    association_arn: &'a str,
    association_checked: bool,
}

/// Pure: does this trust policy let EKS Pod Identity assume the role for exactly this cluster,
/// namespace and ServiceAccount? (The statement shape of `documents::pod_identity_trust`.)
pub fn check_pod_identity_trust(
    trust: &Value,
    cluster_arn: &str,
    namespace: &str,
    service_account: &str,
) -> Result<(), String> {
    let want = [
        ("aws:RequestTag/eks-cluster-arn", cluster_arn),
        ("aws:RequestTag/kubernetes-namespace", namespace),
        ("aws:RequestTag/kubernetes-service-account", service_account),
    ];
    let mut seen = vec![];
    for s in &statements(trust) {
        let actions = string_list(&s["Action"]);
        let allows = s["Effect"] == "Allow"
            && string_list(&s["Principal"]["Service"])
                .iter()
                .any(|p| p == POD_IDENTITY_PRINCIPAL)
            && ["sts:AssumeRole", "sts:TagSession"]
                .iter()
                .all(|a| actions.iter().any(|x| x == a));
        if !allows {
            continue;
        }
        let equals = &s["Condition"]["StringEquals"];
        let matches = want
            .iter()
            .all(|(key, value)| string_list(&equals[*key]) == vec![value.to_string()]);
        if matches {
            return Ok(());
        }
        seen.push(equals.to_string());
    }
    if seen.is_empty() {
        return Err(format!(
            "the trust policy has no statement allowing {POD_IDENTITY_PRINCIPAL} sts:AssumeRole and sts:TagSession"
        ));
    }
    Err(format!(
        "the trust policy's {POD_IDENTITY_PRINCIPAL} statement does not limit the session tags to cluster {cluster_arn}, namespace {namespace} and ServiceAccount {service_account} (it has {})",
        seen.join(", ")
    ))
}

/// Pod Identity: the association (read here unless the step just did) and the trust policy,
/// statically; then a token (audience pods.eks.amazonaws.com) -> EKS Auth
/// AssumeRoleForPodIdentity, what the node's Pod Identity Agent does for the Pod. If EKS Auth
/// refuses the operator itself, the static checks are the result (`Ok(None)`).
async fn pod_identity_credentials(
    client: &Client,
    aws: &Aws,
    target: &Target,
    eks: &PodIdentityTarget<'_>,
    report: &mut Report,
) -> Result<Option<aws_sdk_s3::config::Credentials>, (&'static str, Error)> {
    let subject = target.subject();
    let failed = |name: &'static str, detail: String| {
        (
            name,
            Error::AssumeRoleFailed {
                role: target.role_arn.clone(),
                subject: subject.clone(),
                detail,
            },
        )
    };
    let id = eks.association_arn.rsplit('/').next().unwrap_or_default();
    if !eks.association_checked {
        let found = aws
            .eks(eks.region)
            .describe_pod_identity_association()
            .cluster_name(eks.cluster)
            .association_id(id)
            .send()
            .await
            .map_err(|e| {
                failed(
                    "association",
                    format!(
                        "cannot read pod identity association {}: {}",
                        eks.association_arn,
                        AwsFailure::from_sdk(&e)
                    ),
                )
            })?;
        let binds = found.association().is_some_and(|a| {
            a.namespace() == Some(target.namespace.as_str())
                && a.service_account() == Some(target.service_account.as_str())
                && a.role_arn() == Some(target.role_arn.as_str())
        });
        if !binds {
            return Err(failed(
                "association",
                format!(
                    "pod identity association {} does not bind {subject} to {}",
                    eks.association_arn, target.role_arn
                ),
            ));
        }
    }
    report.pass(
        "association",
        format!(
            "pod identity association {id} binds {}/{} to {} in {}",
            target.namespace, target.service_account, target.role_arn, eks.cluster
        ),
    );
    check_pod_identity_trust(
        &target.trust,
        eks.cluster_arn,
        &target.namespace,
        &target.service_account,
    )
    .map_err(|detail| failed("trust", detail))?;
    report.pass(
        "trust",
        format!(
            "the trust policy of {} admits {POD_IDENTITY_PRINCIPAL} only for {} in {}",
            target.role_arn, subject, eks.cluster_arn
        ),
    );
    let token = token_for(client, target, POD_IDENTITY_AUDIENCE, report).await?;
    let answer = aws
        .eks_auth(eks.region)
        .assume_role_for_pod_identity()
        .cluster_name(eks.cluster)
        .token(&token)
        .send()
        .await;
    drop(token);
    let out = match answer {
        Ok(out) => out,
        Err(err) => {
            let failure = AwsFailure::from_sdk(&err);
            if refused_to_operator(&failure) {
                let refusal = Error::aws(
                    Call::new(Operation::AssumeRoleForPodIdentity, eks.cluster_arn),
                    failure,
                );
                report.statically = Some(format!(
                    "EKS Auth refused the operator ({refusal}); grant it eks-auth:AssumeRoleForPodIdentity on {} to validate as the workload",
                    eks.cluster_arn
                ));
                return Ok(None);
            }
            return Err(failed("assume-role", failure.to_string()));
        }
    };
    let Some(c) = out.credentials() else {
        return Err(failed("assume-role", "EKS Auth returned no credentials".into()));
    };
    let credentials = aws_sdk_s3::config::Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
        None,
        "bucketwire-validation",
    );
    report.pass(
        "assume-role",
        format!(
            "AssumeRoleForPodIdentity in {} for {subject}: credentials of {}",
            eks.cluster,
            out.assumed_role_user().map(|u| u.arn()).unwrap_or_default()
        ),
    );
    Ok(Some(credentials))
}

/// Pure: EKS Auth refused the caller (the operator) the API itself, rather than refusing the
/// workload's role: AWS names the action in the first case.
pub fn refused_to_operator(failure: &AwsFailure) -> bool {
    failure.is_access_denied() && failure.message.contains("eks-auth:AssumeRoleForPodIdentity")
}

/// The probe's keys, all under `<rootPath>/.bucketwire-validation/`: the object Milvus-style
/// put/get/list/delete use, the multipart upload's, and the conditional write's.
pub fn probe_keys(key: &str) -> [String; 3] {
    [
        key.to_string(),
        format!("{key}.multipart"),
        format!("{key}.conditional"),
    ]
}

/// The multipart upload's one part. One small part (the last part of an upload may be smaller
/// than S3's 5 MiB minimum) makes the same calls, authorized by the same actions and KMS grants,
/// as Milvus's large uploads, without writing 5 MiB to the user's bucket at every validation.
const PART: &[u8] = b"bucketwire validation probe: one part of a multipart upload\n";

fn probe_error(target: &Target, operation: Operation, key: &str, failure: AwsFailure) -> Error {
    let call = Call::new(operation, s3_arn(&target.region, &target.bucket, key));
    probe_failure(call, &target.bucket, failure)
}

/// What Milvus 2.6's storage client and its Woodpecker message queue do in their first minute,
/// as the workload, each passed into `report`: a put, a get and a ranged get (ReadOnly: a get),
/// a list, a multipart upload (completed, read back), a conditional write
/// (`If-None-Match: *`: the first is accepted, a second over it must be refused with 412, as
/// Woodpecker's startup self-test requires), and deletes. Stops at the first failure and returns
/// it. `made` records every object version and delete marker made (versioned buckets).
async fn object_operations(
    s3: &aws_sdk_s3::Client,
    target: &Target,
    key: &str,
    subject: &str,
    report: &mut Report,
    made: &mut ProbeVersions,
) -> Result<(), (&'static str, Error)> {
    let bucket = &target.bucket;
    let body = format!("bucketwire validation probe for {subject}\n");
    if target.access == Access::ReadWrite {
        match s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body.clone().into_bytes()))
            .send()
            .await
        {
            Ok(out) => made.record_write(key, out.version_id()),
            Err(err) => {
                let error = probe_error(target, Operation::PutObject, key, AwsFailure::from_sdk(&err));
                return Err(("put", error));
            }
        }
        report.pass("put", format!("PutObject s3://{bucket}/{key}"));
        crate::failpoint::crash_point("after-probe-put");
    }
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(_) => report.pass("get", format!("GetObject s3://{bucket}/{key}")),
        Err(err) => {
            let failure = AwsFailure::from_sdk(&err);
            // ReadOnly: there is no probe object; NoSuchKey proves the read was allowed.
            if target.access == Access::ReadOnly
                && (failure.is_code("NoSuchKey") || failure.status == Some(404))
            {
                report.pass(
                    "get",
                    format!("GetObject s3://{bucket}/{key} allowed (no such key)"),
                );
            } else {
                return Err(("get", probe_error(target, Operation::GetObject, key, failure)));
            }
        }
    }
    if target.access == Access::ReadWrite {
        // Milvus reads segments and indexes in ranges.
        let wanted = &body.as_bytes()[..9];
        match s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .range("bytes=0-8")
            .send()
            .await
        {
            Ok(out) => {
                let ranged = out.content_range().map(str::to_string);
                let got = out.body.collect().await.map(|b| b.into_bytes()).map_err(|e| {
                    let failure = AwsFailure {
                        code: None,
                        status: None,
                        message: format!("reading the ranged body: {e}"),
                    };
                    (
                        "ranged-get",
                        probe_error(target, Operation::GetObject, key, failure),
                    )
                })?;
                if got.as_ref() != wanted {
                    let failure = AwsFailure {
                        code: Some("RangeNotHonoured".into()),
                        status: Some(200),
                        message: format!(
                            "asked for bytes 0-8, got {} bytes{}",
                            got.len(),
                            ranged.map(|r| format!(" ({r})")).unwrap_or_default()
                        ),
                    };
                    return Err((
                        "ranged-get",
                        probe_error(target, Operation::GetObject, key, failure),
                    ));
                }
                report.pass(
                    "ranged-get",
                    format!("GetObject s3://{bucket}/{key} Range bytes=0-8"),
                );
            }
            Err(err) => {
                let error = probe_error(target, Operation::GetObject, key, AwsFailure::from_sdk(&err));
                return Err(("ranged-get", error));
            }
        }
    }
    let prefix = format!("{}/", target.root_path);
    match s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(&prefix)
        .max_keys(1)
        .send()
        .await
    {
        Ok(_) => report.pass("list", format!("ListObjectsV2 s3://{bucket}/{prefix}")),
        Err(err) => {
            let call = Call::new(Operation::ListObjectsV2, s3_arn(&target.region, bucket, ""));
            return Err(("list", probe_failure(call, bucket, AwsFailure::from_sdk(&err))));
        }
    }
    if target.access == Access::ReadOnly {
        return Ok(());
    }
    let [_, multipart_key, conditional_key] = probe_keys(key);
    multipart_upload(s3, target, &multipart_key, report, made).await?;
    conditional_write(s3, target, &conditional_key, report, made).await?;
    for delete_key in [key, multipart_key.as_str(), conditional_key.as_str()] {
        match s3.delete_object().bucket(bucket).key(delete_key).send().await {
            Ok(out) => {
                if out.delete_marker() == Some(true) {
                    made.record(delete_key, out.version_id());
                }
            }
            Err(err) => {
                let error = probe_error(
                    target,
                    Operation::DeleteObject,
                    delete_key,
                    AwsFailure::from_sdk(&err),
                );
                return Err(("delete", error));
            }
        }
    }
    report.pass(
        "delete",
        format!("DeleteObject of the probe's 3 objects under s3://{bucket}/{key}"),
    );
    crate::failpoint::crash_point("after-probe-delete");
    Ok(())
}

/// CreateMultipartUpload, UploadPart, CompleteMultipartUpload, then GetObject to read it back. On a failure after the create, the upload is aborted
/// (the workload's role may: Milvus needs s3:AbortMultipartUpload too).
async fn multipart_upload(
    s3: &aws_sdk_s3::Client,
    target: &Target,
    key: &str,
    report: &mut Report,
    made: &mut ProbeVersions,
) -> Result<(), (&'static str, Error)> {
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    let bucket = &target.bucket;
    let created = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|err| {
            let error = probe_error(
                target,
                Operation::CreateMultipartUpload,
                key,
                AwsFailure::from_sdk(&err),
            );
            ("multipart", error)
        })?;
    let upload_id = created.upload_id().unwrap_or_default().to_string();
    let parts: [&'static [u8]; 1] = [PART];
    let mut completed = vec![];
    let mut failure = None;
    for (number, part) in (1..).zip(parts) {
        match s3
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .part_number(number)
            .body(ByteStream::from_static(part))
            .send()
            .await
        {
            Ok(out) => completed.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .build(),
            ),
            Err(err) => {
                failure = Some(probe_error(
                    target,
                    Operation::UploadPart,
                    key,
                    AwsFailure::from_sdk(&err),
                ));
                break;
            }
        }
    }
    if failure.is_none() {
        match s3
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
        {
            Ok(out) => made.record_write(key, out.version_id()),
            Err(err) => {
                failure = Some(probe_error(
                    target,
                    Operation::CompleteMultipartUpload,
                    key,
                    AwsFailure::from_sdk(&err),
                ));
            }
        }
    }
    if let Some(error) = failure {
        // Best effort: an upload left behind is listed and aborted by the operator when the
        // bucket is deleted.
        let _ = s3
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .send()
            .await;
        return Err(("multipart", error));
    }
    // Read back: the object is the part's bytes.
    let read = match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => out
            .body
            .collect()
            .await
            .map(|b| b.into_bytes())
            .map_err(|e| AwsFailure {
                code: None,
                status: None,
                message: format!("reading the completed upload: {e}"),
            }),
        Err(err) => Err(AwsFailure::from_sdk(&err)),
    };
    match read {
        Ok(bytes) if bytes.as_ref() == PART => {}
        Ok(bytes) => {
            let failure = AwsFailure {
                code: Some("MultipartContentMismatch".into()),
                status: Some(200),
                message: format!(
                    "the completed upload reads back {} bytes, not the {} uploaded",
                    bytes.len(),
                    PART.len()
                ),
            };
            return Err((
                "multipart",
                probe_error(target, Operation::GetObject, key, failure),
            ));
        }
        Err(failure) => {
            return Err((
                "multipart",
                probe_error(target, Operation::GetObject, key, failure),
            ));
        }
    }
    let size = PART.len();
    report.pass(
        "multipart",
        format!(
            "CreateMultipartUpload, UploadPart x2 ({size} bytes), CompleteMultipartUpload s3://{bucket}/{key}"
        ),
    );
    Ok(())
}

/// PutObject with `If-None-Match: *` twice on the same key: the first must succeed, the second
/// be refused with 412 PreconditionFailed. A store that accepts the second cannot give
/// Woodpecker the conditional writes its startup self-test checks.
async fn conditional_write(
    s3: &aws_sdk_s3::Client,
    target: &Target,
    key: &str,
    report: &mut Report,
    made: &mut ProbeVersions,
) -> Result<(), (&'static str, Error)> {
    let bucket = &target.bucket;
    let put = || {
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .if_none_match("*")
            .body(ByteStream::from_static(b"bucketwire conditional write probe\n"))
            .send()
    };
    let mut first = put().await;
    if let Err(err) = &first
        && AwsFailure::from_sdk(err).status == Some(412)
    {
        // Left by an interrupted probe (the key is this integration's): remove it, once.
        s3.delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                let error = probe_error(target, Operation::DeleteObject, key, AwsFailure::from_sdk(&e));
                ("conditional-write", error)
            })
            .map(|out| {
                if out.delete_marker() == Some(true) {
                    made.record(key, out.version_id());
                }
            })?;
        first = put().await;
    }
    match first {
        Ok(out) => made.record_write(key, out.version_id()),
        Err(err) => {
            let error = probe_error(target, Operation::PutObject, key, AwsFailure::from_sdk(&err));
            return Err(("conditional-write", error));
        }
    }
    match put().await {
        Err(err) if AwsFailure::from_sdk(&err).status == Some(412) => {}
        Err(err) => {
            let error = probe_error(target, Operation::PutObject, key, AwsFailure::from_sdk(&err));
            return Err(("conditional-write", error));
        }
        Ok(out) => {
            made.record_write(key, out.version_id());
            return Err((
                "conditional-write",
                Error::ConditionalWritesUnsupported {
                    bucket: bucket.clone(),
                    key: key.to_string(),
                },
            ));
        }
    }
    report.pass(
        "conditional-write",
        format!(
            "PutObject If-None-Match: * s3://{bucket}/{key} accepted, and refused (412) over the existing object"
        ),
    );
    Ok(())
}

/// The object versions and delete markers one probe made, by key: empty on an unversioned bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeVersions {
    pub made: Vec<(String, String)>,
}

impl ProbeVersions {
    /// Records the delete marker a delete answered with (none on an unversioned bucket; `null`
    /// on a suspended one).
    pub fn record(&mut self, key: &str, version: Option<&str>) {
        if let Some(version) = version {
            self.made.push((key.to_string(), version.to_string()));
        }
    }

    /// Records the version a write answered with. A `null` version is not one to remove: on a
    /// suspended bucket the probe's delete replaces it with a `null` delete marker, recorded by
    /// [`Self::record`]; and the emulator answers CompleteMultipartUpload with `null` on an
    /// unversioned bucket, where S3 sends no version id.
    pub fn record_write(&mut self, key: &str, version: Option<&str>) {
        self.record(key, version.filter(|v| *v != "null"));
    }

    /// Whether the bucket kept versions of the probe (versioning enabled, or suspended: a
    /// suspended bucket still answers the delete with a `null` delete marker).
    pub fn versioned(&self) -> bool {
        !self.made.is_empty()
    }
}

/// Pure: which (key, version id) to delete, given what a listing under the probe key found
/// ((key, version id) of object versions and delete markers alike) and what this probe made.
/// Every version of exactly the probe's keys goes: this probe's own, and any an interrupted
/// probe left (same keys, as they are the integration's). Other keys that merely start with the
/// probe key are someone else's and stay. This probe's own go even if the listing missed them.
pub fn probe_versions_to_delete(
    key: &str,
    listed: &[(String, String)],
    made: &ProbeVersions,
) -> Vec<(String, String)> {
    let keys = probe_keys(key);
    let mut out: Vec<(String, String)> = listed.iter().filter(|(k, _)| keys.contains(k)).cloned().collect();
    for own in &made.made {
        if !out.contains(own) {
            out.push(own.clone());
        }
    }
    out
}

/// Deletes, with the operator's credentials (`s3`), every version of the probe's keys: what
/// [`probe_versions_to_delete`] picks from one ListObjectVersions page under the key. Returns
/// how many were deleted, or what went wrong (the next validation tries again: the keys are
/// the same).
async fn remove_probe_versions(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    made: &ProbeVersions,
) -> Result<usize, String> {
    let region = s3.config().region().map(|r| r.to_string()).unwrap_or_default();
    let listing = s3
        .list_object_versions()
        .bucket(bucket)
        .prefix(key)
        .send()
        .await
        .map_err(|e| {
            let call = Call::new(Operation::ListObjectVersions, s3_arn(&region, bucket, ""));
            format!(
                "as the operator, {}; the probe's versions are left for the next validation",
                Error::aws(call, AwsFailure::from_sdk(&e))
            )
        })?;
    let listed: Vec<(String, String)> = listing
        .versions()
        .iter()
        .filter_map(|v| Some((v.key()?.to_string(), v.version_id()?.to_string())))
        .chain(
            listing
                .delete_markers()
                .iter()
                .filter_map(|m| Some((m.key()?.to_string(), m.version_id()?.to_string()))),
        )
        .collect();
    let versions = probe_versions_to_delete(key, &listed, made);
    for (version_key, id) in &versions {
        if let Err(e) = s3
            .delete_object()
            .bucket(bucket)
            .key(version_key)
            .version_id(id)
            .send()
            .await
        {
            let call = Call::new(
                Operation::DeleteObjectVersion,
                s3_arn(&region, bucket, version_key),
            );
            return Err(format!(
                "as the operator, {} (version {id}); the operator's policy grants it on \
                 */.bucketwire-validation/* keys (deploy/iam/operator-policy.json); the next validation tries again",
                Error::aws(call, AwsFailure::from_sdk(&e))
            ));
        }
    }
    Ok(versions.len())
}

/// HeadBucket with the workload's credentials, as Milvus's client starts: the bucket exists,
/// the role may list it, and it is in `region` (AWS answers a HeadBucket in the wrong region
/// with a redirect naming the bucket's region in `x-amz-bucket-region`; a 200 carries it too).
async fn head_bucket(s3: &aws_sdk_s3::Client, bucket: &str, region: &str) -> Result<(), Error> {
    let mismatch = |got: &str| {
        (got != region).then(|| Error::BucketRegionMismatch {
            want: region.to_string(),
            got: got.to_string(),
        })
    };
    match s3.head_bucket().bucket(bucket).send().await {
        Ok(out) => match out.bucket_region().and_then(mismatch) {
            Some(error) => Err(error),
            None => Ok(()),
        },
        Err(err) => {
            let failure = AwsFailure::from_sdk(&err);
            let answered_region = err
                .raw_response()
                .and_then(|r| r.headers().get("x-amz-bucket-region"))
                .map(str::to_string);
            if let Some(error) = answered_region.as_deref().and_then(mismatch) {
                Err(error)
            } else if failure.status == Some(404) || failure.is_code("NotFound") {
                Err(Error::BucketNotFound {
                    bucket: bucket.to_string(),
                })
            } else {
                let call = Call::new(Operation::HeadBucket, s3_arn(region, bucket, ""));
                Err(probe_failure(call, bucket, failure))
            }
        }
    }
}

/// The bucket exists and is in `region` (GetBucketLocation, with whoever's credentials `s3` has).
async fn bucket_in_region(s3: &aws_sdk_s3::Client, bucket: &str, region: &str) -> Result<(), Error> {
    match s3.get_bucket_location().bucket(bucket).send().await {
        Ok(out) => {
            let got = location_to_region(out.location_constraint().map(|c| c.as_str()));
            if got == region {
                Ok(())
            } else {
                Err(Error::BucketRegionMismatch {
                    want: region.to_string(),
                    got,
                })
            }
        }
        Err(err) => Err(probe_failure(
            Call::new(Operation::GetBucketLocation, s3_arn(region, bucket, "")),
            bucket,
            AwsFailure::from_sdk(&err),
        )),
    }
}

/// Whether a validation failure may be IAM still propagating a change (so it is retried for a
/// while before being reported): denials and refused role assumptions, never a static mismatch.
pub fn may_be_propagating(report: &Report) -> bool {
    let static_failure = report
        .checks
        .last()
        .is_some_and(|c| c.name == "trust" || c.name == "token");
    !static_failure
        && matches!(
            report.failure,
            Some(Error::AccessDenied { .. } | Error::AssumeRoleFailed { .. } | Error::KmsAccessDenied { .. })
        )
}

/// How long to wait before retrying while propagating: roughly doubling, 2 s to 30 s.
pub fn propagation_retry(elapsed: Duration) -> Duration {
    (elapsed / 2).clamp(Duration::from_secs(2), Duration::from_secs(30))
}

/// What is validated across accounts: the operator cannot act as the trusted account, so it
/// checks what it can see, and says what it could not.
#[derive(Clone, Debug)]
pub struct CrossAccountTarget {
    pub role_name: String,
    pub role_arn: String,
    pub policy_arn: String,
    /// The expected trust and permission policies.
    pub trust: Value,
    pub permissions: Value,
    pub trusted_account_id: String,
    pub bucket: String,
    pub region: String,
}

impl CrossAccountTarget {
    pub fn summary(&self) -> String {
        format!(
            "checked: bucket {} exists in {}; the trust policy lets only account {} assume {} with the external ID; \
             the permission policy is the expected one. Not checked: assuming the role and object access, \
             which only account {} can do",
            self.bucket, self.region, self.trusted_account_id, self.role_arn, self.trusted_account_id
        )
    }
}

/// Cross-account validation with the operator's own credentials: the bucket exists in the
/// region, and the trust and permission policies in IAM are semantically the expected ones.
/// `iam` is `None` when the caller has just read and, if needed, repaired both documents in
/// this reconcile (the controller's role and policy steps): they are not read a second time.
pub async fn run_cross_account(
    iam: Option<&aws_sdk_iam::Client>,
    s3: &aws_sdk_s3::Client,
    target: &CrossAccountTarget,
) -> Report {
    use crate::documents::{documents_equivalent, parse_document};

    let mut report = Report {
        checks: vec![],
        failure: None,
        statically: None,
    };
    if let Err(error) = bucket_in_region(s3, &target.bucket, &target.region).await {
        return report.fail("region", error);
    }
    report.pass(
        "region",
        format!("bucket {} exists in {}", target.bucket, target.region),
    );

    let Some(iam) = iam else {
        report.pass(
            "trust",
            format!(
                "only account {} may assume {}, with the external ID (read and kept so by this reconcile)",
                target.trusted_account_id, target.role_arn
            ),
        );
        report.pass(
            "permissions",
            format!(
                "{} grants exactly the expected actions (read and kept so by this reconcile)",
                target.policy_arn
            ),
        );
        report.checks.push(not_checked(target));
        return report;
    };
    let trust = match iam.get_role().role_name(&target.role_name).send().await {
        Ok(out) => out
            .role()
            .and_then(|r| r.assume_role_policy_document())
            .and_then(parse_document),
        Err(err) => {
            let call = Call::new(Operation::GetRole, &target.role_arn);
            return report.fail("trust", Error::aws(call, AwsFailure::from_sdk(&err)));
        }
    };
    if !trust
        .as_ref()
        .is_some_and(|t| documents_equivalent(t, &target.trust))
    {
        let detail = format!(
            "the trust policy of {} is not the expected one: {}",
            target.role_arn, target.trust
        );
        return report.fail(
            "trust",
            Error::AssumeRoleFailed {
                role: target.role_arn.clone(),
                subject: format!("account {}", target.trusted_account_id),
                detail,
            },
        );
    }
    report.pass(
        "trust",
        format!(
            "only account {} may assume {}, with the external ID",
            target.trusted_account_id, target.role_arn
        ),
    );

    let policy = match iam.get_policy().policy_arn(&target.policy_arn).send().await {
        Ok(out) => out.policy,
        Err(err) => {
            return report.fail(
                "permissions",
                Error::aws(
                    Call::new(Operation::GetPolicy, &target.policy_arn),
                    AwsFailure::from_sdk(&err),
                ),
            );
        }
    };
    let version = policy
        .and_then(|p| p.default_version_id)
        .unwrap_or_else(|| "v1".into());
    let document = match iam
        .get_policy_version()
        .policy_arn(&target.policy_arn)
        .version_id(version)
        .send()
        .await
    {
        Ok(out) => out
            .policy_version()
            .and_then(|v| v.document())
            .and_then(parse_document),
        Err(err) => {
            return report.fail(
                "permissions",
                Error::aws(
                    Call::new(Operation::GetPolicyVersion, &target.policy_arn),
                    AwsFailure::from_sdk(&err),
                ),
            );
        }
    };
    if !document
        .as_ref()
        .is_some_and(|d| documents_equivalent(d, &target.permissions))
    {
        return report.fail(
            "permissions",
            Error::InvalidSpec(format!(
                "the permission policy {} is not the expected one",
                target.policy_arn
            )),
        );
    }
    report.pass(
        "permissions",
        format!("{} grants exactly the expected actions", target.policy_arn),
    );
    report.checks.push(not_checked(target));
    report
}

fn not_checked(target: &CrossAccountTarget) -> Check {
    Check {
        name: "not-checked",
        passed: true,
        detail: format!(
            "assuming the role and object access: only account {} can, presenting the external ID",
            target.trusted_account_id
        ),
    }
}

/// What `bucketwire validate` checked: as the workload (IRSA, PodIdentity, RRSA) or from
/// outside (CrossAccount).
pub enum Checked {
    Workload(Target),
    CrossAccount(CrossAccountTarget),
}

impl Checked {
    pub fn subject(&self) -> String {
        match self {
            Self::Workload(t) => t.subject(),
            Self::CrossAccount(t) => {
                format!("the operator (account {} assumes the role)", t.trusted_account_id)
            }
        }
    }

    pub fn summary(&self, report: &Report) -> String {
        match self {
            Self::Workload(t) => report.summary(t),
            Self::CrossAccount(t) => t.summary(),
        }
    }
}

/// `bucketwire validate NAMESPACE/NAME`: the same checks from a terminal, against what the
/// integration's status records and the role's trust policy as it is in the cloud now.
pub async fn read_integration(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<crate::api::BucketIntegration, String> {
    let api: Api<crate::api::BucketIntegration> = Api::namespaced(client.clone(), namespace);
    api.get(name)
        .await
        .map_err(|e| format!("cannot read BucketIntegration {namespace}/{name}: {e}"))
}

/// `bucketwire validate` of an AWS integration (`provider::alibaba::validate` has Alibaba's).
pub async fn validate_from_status(
    client: &Client,
    aws: &Aws,
    bi: &crate::api::BucketIntegration,
) -> Result<(Checked, Report), String> {
    use crate::api::{EncryptionType, IdentityMode};
    use crate::naming::Partition;
    use kube::ResourceExt;

    let namespace = bi.namespace().unwrap_or_default();
    let namespace = namespace.as_str();
    let name = bi.name_any();
    let name = name.as_str();
    let status = bi.status.clone().unwrap_or_default();
    let missing =
        |what: &str| format!("{namespace}/{name} has no {what} in its status yet; is the operator running?");
    let role_arn = status.role_arn.clone().ok_or_else(|| missing("roleArn"))?;
    if bi.spec.identity.mode == IdentityMode::CrossAccount {
        let partition = Partition::of_region(&bi.spec.region);
        let bucket = status
            .bucket
            .as_ref()
            .and_then(|b| b.name.clone())
            .ok_or_else(|| missing("bucket"))?;
        let policy_arn = status.policy_arn.clone().ok_or_else(|| missing("policyArn"))?;
        let account = status
            .trusted_account_id
            .clone()
            .ok_or_else(|| missing("trustedAccountId"))?;
        let external_id = status.external_id.clone().ok_or_else(|| missing("externalId"))?;
        let caller = policy_arn.split(':').nth(4).unwrap_or_default().to_string();
        let s3 = aws.s3(&bi.spec.region);
        // The key the bucket uses: the spec's for ours, the bucket's own for an adopted one.
        let kms_key = if bi.spec.bucket.create {
            (bi.spec.bucket.encryption.kind == EncryptionType::SseKms)
                .then(|| bi.spec.bucket.encryption.kms_key_arn.clone())
                .flatten()
        } else {
            s3.get_bucket_encryption()
                .bucket(&bucket)
                .send()
                .await
                .ok()
                .and_then(|o| {
                    o.server_side_encryption_configuration()
                        .and_then(|c| c.rules().first().cloned())
                })
                .and_then(|r| {
                    r.apply_server_side_encryption_by_default()
                        .and_then(|d| d.kms_master_key_id().map(str::to_string))
                })
                .map(|id| crate::naming::kms_key_arn(partition, &bi.spec.region, &caller, &id))
        };
        let target = CrossAccountTarget {
            role_name: role_arn.rsplit('/').next().unwrap_or_default().to_string(),
            role_arn,
            policy_arn,
            trust: crate::documents::cross_account_trust(partition, &account, &external_id),
            permissions: crate::documents::cross_account_policy(
                partition,
                &bucket,
                bi.spec.access,
                kms_key.as_deref().map(|key_arn| crate::documents::BucketKms {
                    key_arn,
                    region: &bi.spec.region,
                    context: if bi.spec.bucket.create {
                        crate::documents::KmsContext::BucketKey
                    } else {
                        crate::documents::KmsContext::BucketOrObjects
                    },
                }),
            ),
            trusted_account_id: account,
            bucket,
            region: bi.spec.region.clone(),
        };
        let report = run_cross_account(Some(&aws.iam(partition)), &s3, &target).await;
        return Ok((Checked::CrossAccount(target), report));
    }
    let identity = match bi.spec.identity.mode {
        IdentityMode::PodIdentity => {
            let association_arn = status
                .pod_identity_association_arn
                .clone()
                .ok_or_else(|| missing("podIdentityAssociationArn"))?;
            let found = crate::steps::pod_identity::parse_arn(&association_arn)
                .ok_or_else(|| format!("{association_arn} is not a pod identity association ARN"))?;
            WorkloadIdentity::PodIdentity {
                cluster_arn: crate::steps::pod_identity::cluster_arn_of(&association_arn),
                cluster: found.cluster,
                region: found.region,
                association_arn,
                association_checked: false,
            }
        }
        _ => WorkloadIdentity::Irsa {
            provider_arn: status
                .oidc_provider_arn
                .clone()
                .ok_or_else(|| missing("oidcProviderArn"))?,
        },
    };
    let bucket = status
        .bucket
        .as_ref()
        .and_then(|b| b.name.clone())
        .ok_or_else(|| missing("bucket"))?;
    let sa = status
        .service_account
        .clone()
        .ok_or_else(|| missing("serviceAccount"))?;
    let service_account = sa.rsplit('/').next().unwrap_or_default().to_string();
    let role_name = role_arn.rsplit('/').next().unwrap_or_default();
    let role = aws
        .iam(Partition::of_region(&bi.spec.region))
        .get_role()
        .role_name(role_name)
        .send()
        .await
        .map_err(|e| format!("cannot read role {role_arn}: {}", AwsFailure::from_sdk(&e)))?;
    let trust = role
        .role()
        .and_then(|r| r.assume_role_policy_document())
        .and_then(crate::documents::parse_document)
        .ok_or_else(|| format!("role {role_arn} has no readable trust policy"))?;
    let target = Target {
        namespace: namespace.to_string(),
        service_account,
        role_arn,
        identity,
        trust,
        bucket,
        region: bi.spec.region.clone(),
        root_path: bi.spec.bucket.root_path.clone(),
        access: bi.spec.access,
        probe_id: bi.uid().unwrap_or_else(|| name.to_string()),
    };
    let report = run(client, aws, &target).await;
    Ok((Checked::Workload(target), report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::trust_policy;
    use serde_json::json;

    #[test]
    fn only_a_refusal_of_the_trust_is_assume_role_failed() {
        use crate::aws::AwsFailure;
        let failure = |code: Option<&str>, status: Option<u16>| AwsFailure {
            code: code.map(str::to_string),
            status,
            message: String::new(),
        };
        // Retried with backoff: throttling, STS's 5xx, a connection lost before an answer.
        assert!(super::says_nothing_about_trust(&failure(
            Some("Throttling"),
            Some(400)
        )));
        assert!(super::says_nothing_about_trust(&failure(
            Some("InternalError"),
            Some(500)
        )));
        assert!(super::says_nothing_about_trust(&failure(None, None)));
        // The trust's answer: reported as AssumeRoleFailed.
        assert!(!super::says_nothing_about_trust(&failure(
            Some("AccessDenied"),
            Some(403)
        )));
        assert!(!super::says_nothing_about_trust(&failure(
            Some("InvalidIdentityToken"),
            Some(400)
        )));
        assert!(!super::says_nothing_about_trust(&failure(
            Some("ExpiredTokenException"),
            Some(400)
        )));
    }

    const ISSUER: &str = "https://oidc.eks.us-east-2.amazonaws.com/id/ABC";
    const PROVIDER: &str = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-2.amazonaws.com/id/ABC";

    fn token(claims: Value) -> String {
        let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.sig", part(&json!({"alg": "RS256"})), part(&claims))
    }

    fn claims_for(sub: &str) -> Claims {
        claims(&token(
            json!({"iss": ISSUER, "sub": sub, "aud": ["sts.amazonaws.com"]}),
        ))
        .expect("claims")
    }

    #[test]
    fn claims_are_read_from_the_token_payload() {
        let c = claims(&token(
            json!({"iss": ISSUER, "sub": "system:serviceaccount:ns:sa", "aud": "sts.amazonaws.com"}),
        ));
        assert_eq!(
            c,
            Some(Claims {
                iss: ISSUER.into(),
                sub: "system:serviceaccount:ns:sa".into(),
                aud: vec!["sts.amazonaws.com".into()]
            })
        );
        assert_eq!(claims("not-a-jwt"), None);
    }

    #[test]
    fn the_generated_trust_policy_admits_exactly_its_service_account() {
        let trust = trust_policy(PROVIDER, ISSUER, "milvus", "milvus-sa");
        assert_eq!(
            check_trust(
                &claims_for("system:serviceaccount:milvus:milvus-sa"),
                &trust,
                PROVIDER
            ),
            Ok(())
        );
        let other = check_trust(
            &claims_for("system:serviceaccount:milvus:intruder"),
            &trust,
            PROVIDER,
        );
        assert!(
            other.is_err_and(
                |e| e.contains("system:serviceaccount:milvus:intruder") && e.contains("milvus-sa")
            )
        );
    }

    #[test]
    fn a_token_from_another_issuer_is_caught() {
        let trust = trust_policy(PROVIDER, ISSUER, "milvus", "milvus-sa");
        let mut c = claims_for("system:serviceaccount:milvus:milvus-sa");
        c.iss = "https://kubernetes.default.svc".into();
        assert!(check_trust(&c, &trust, PROVIDER).is_err_and(|e| e.contains("issuer")));
    }

    #[test]
    fn a_token_without_the_sts_audience_is_caught() {
        let trust = trust_policy(PROVIDER, ISSUER, "milvus", "milvus-sa");
        let mut c = claims_for("system:serviceaccount:milvus:milvus-sa");
        c.aud = vec!["https://kubernetes.default.svc".into()];
        assert!(check_trust(&c, &trust, PROVIDER).is_err_and(|e| e.contains("audience")));
    }

    #[test]
    fn a_trust_policy_through_another_provider_is_caught() {
        let other = "arn:aws:iam::123456789012:oidc-provider/oidc.example.com/id/X";
        let trust = trust_policy(other, "https://oidc.example.com/id/X", "milvus", "milvus-sa");
        assert!(
            check_trust(
                &claims_for("system:serviceaccount:milvus:milvus-sa"),
                &trust,
                PROVIDER
            )
            .is_err()
        );
    }

    #[test]
    fn probe_failures_name_the_action_and_recognise_kms() {
        let denied = AwsFailure {
            code: None,
            status: Some(403),
            message: String::new(),
        };
        let location = || Call::new(Operation::GetBucketLocation, "arn:aws:s3:::b");
        let e = probe_failure(location(), "b", denied);
        assert_eq!(e.reason(), "AccessDenied");
        assert_eq!(
            e.to_string(),
            "AccessDenied: s3:GetBucketLocation on arn:aws:s3:::b (GetBucketLocation): HTTP 403: "
        );
        // The SDK operation and the IAM action differ: the message names both, action first.
        let head = Call::new(Operation::HeadBucket, "arn:aws:s3:::b");
        let denied = AwsFailure {
            code: Some("AccessDenied".into()),
            status: Some(403),
            message: "Access Denied".into(),
        };
        assert_eq!(
            probe_failure(head, "b", denied).to_string(),
            "AccessDenied: s3:ListBucket on arn:aws:s3:::b (HeadBucket): Access Denied"
        );
        let kms = AwsFailure {
            code: Some("AccessDenied".into()),
            status: Some(403),
            message: "User is not authorized to perform: kms:GenerateDataKey on resource".into(),
        };
        assert_eq!(
            probe_failure(Call::new(Operation::PutObject, "arn:aws:s3:::b/k"), "b", kms).reason(),
            "KmsAccessDenied"
        );
        let missing = AwsFailure {
            code: Some("NoSuchBucket".into()),
            status: Some(404),
            message: String::new(),
        };
        let e = probe_failure(location(), "b", missing);
        assert_eq!(e.reason(), "BucketNotFound");
        assert!(e.to_string().starts_with("check bucket failed:") && e.to_string().contains("NoSuchBucket"));
    }

    #[test]
    fn the_cleanup_deletes_every_version_of_exactly_the_probe_keys() {
        let key = "files/.bucketwire-validation/uid-1";
        let mut made = ProbeVersions::default();
        made.record(key, Some("v2"));
        made.record(&format!("{key}.multipart"), Some("mp"));
        made.record(key, Some("m2"));
        made.record(key, None); // an unversioned answer records nothing
        made.record_write(&format!("{key}.multipart"), Some("null")); // nor a null version
        let v = |k: &str, id: &str| (k.to_string(), id.to_string());
        let listed = [
            v(key, "v1"), // left by an interrupted probe
            v(key, "v2"),
            v(key, "m2"),
            v(&format!("{key}.conditional"), "c1"),
            v(&format!("{key}0"), "x"), // another key with the same start
            v(&format!("{key}.multipart.other"), "y"),
        ];
        let mut found = probe_versions_to_delete(key, &listed, &made);
        found.sort();
        assert_eq!(
            found,
            [
                v(key, "m2"),
                v(key, "v1"),
                v(key, "v2"),
                v(&format!("{key}.conditional"), "c1"),
                v(&format!("{key}.multipart"), "mp"),
            ]
        );
        // The probe's own versions go even when the listing does not show them.
        assert_eq!(
            probe_versions_to_delete(key, &[], &made),
            [v(key, "v2"), v(&format!("{key}.multipart"), "mp"), v(key, "m2")]
        );
    }

    #[test]
    fn only_a_bucket_that_kept_versions_needs_a_cleanup() {
        let mut made = ProbeVersions::default();
        made.record("k", None);
        assert!(!made.versioned());
        // Suspended versioning still answers a delete with a `null` delete marker.
        made.record("k", Some("null"));
        assert!(made.versioned());
    }

    #[test]
    fn propagation_retries_back_off_within_bounds() {
        assert_eq!(propagation_retry(Duration::ZERO), Duration::from_secs(2));
        assert_eq!(
            propagation_retry(Duration::from_secs(20)),
            Duration::from_secs(10)
        );
        assert_eq!(
            propagation_retry(Duration::from_secs(600)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn pod_identity_trust_must_name_exactly_this_cluster_namespace_and_service_account() {
        let cluster = "arn:aws:eks:us-east-2:123456789012:cluster/prod";
        let trust = crate::documents::pod_identity_trust(cluster, "milvus", "milvus");
        assert_eq!(
            check_pod_identity_trust(&trust, cluster, "milvus", "milvus"),
            Ok(())
        );
        let other_sa = check_pod_identity_trust(&trust, cluster, "milvus", "other").expect_err("other SA");
        assert!(other_sa.contains("ServiceAccount other"), "{other_sa}");
        let other_cluster = "arn:aws:eks:us-east-2:123456789012:cluster/dev";
        assert!(check_pod_identity_trust(&trust, other_cluster, "milvus", "milvus").is_err());
        // AWS's guide: the service principal with no condition lets every association use it.
        let unconditioned = serde_json::json!({"Statement": [{"Effect": "Allow",
            "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"]}]});
        assert!(check_pod_identity_trust(&unconditioned, cluster, "milvus", "milvus").is_err());
        // Without sts:TagSession EKS cannot tag the session: refused.
        let mut no_tag_session = trust.clone();
        no_tag_session["Statement"][0]["Action"] = serde_json::json!("sts:AssumeRole");
        let err = check_pod_identity_trust(&no_tag_session, cluster, "milvus", "milvus")
            .expect_err("no TagSession");
        assert!(err.contains("sts:TagSession"), "{err}");
        // An IRSA trust policy is not a Pod Identity one.
        let irsa = crate::documents::trust_policy(
            "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-2.amazonaws.com/id/A",
            "https://oidc.eks.us-east-2.amazonaws.com/id/A",
            "milvus",
            "milvus",
        );
        assert!(check_pod_identity_trust(&irsa, cluster, "milvus", "milvus").is_err());
    }

    #[test]
    fn only_a_refusal_naming_eks_auth_means_the_operator_was_refused() {
        let refused = AwsFailure {
            code: Some("AccessDeniedException".into()),
            status: Some(403),
            message: "User: arn:aws:sts::123456789012:assumed-role/bucketwire-operator/x is not authorized to perform: eks-auth:AssumeRoleForPodIdentity on resource: arn:aws:eks:us-east-2:123456789012:cluster/prod".into(),
        };
        assert!(refused_to_operator(&refused));
        let trust = AwsFailure {
            code: Some("AccessDeniedException".into()),
            status: Some(403),
            message: "pods.eks.amazonaws.com is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::123456789012:role/r".into(),
        };
        assert!(!refused_to_operator(&trust));
        let invalid = AwsFailure {
            code: Some("InvalidTokenException".into()),
            status: Some(400),
            message: "eks-auth:AssumeRoleForPodIdentity: token audience".into(),
        };
        assert!(!refused_to_operator(&invalid));
    }
}
