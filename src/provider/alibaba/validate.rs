//! Step 6 on Alibaba Cloud: prove the RRSA wiring as the Milvus ServiceAccount, the way
//! Milvus's Alibaba credential chain does it. TokenRequest (audience `sts.aliyuncs.com`) -> a
//! static check of the token's `iss`/`sub`/`aud` against the role's trust policy (so a
//! mismatch is named precisely) -> STS AssumeRoleWithOIDC (what Milvus calls, at the public
//! STS endpoint) -> the same probe as on AWS (`crate::validate::probe`) through OSS's
//! S3-compatible API, virtual-host style, with the STS credentials.

use kube::Client;
use serde_json::Value;

use super::Alibaba;
use super::naming::STS_AUDIENCE;
use crate::documents::{statements, string_list};
use crate::error::{CloudFailureClass, Error};
use crate::validate::{Check, Checked, Claims, CrossAccountTarget, Report, Target, claims, probe, token_for};

/// Pure: would STS let a token with these claims assume a role with this trust policy
/// through this OIDC provider? The RRSA statement shape: `Principal.Federated` names the
/// provider, `StringEquals` on `oidc:iss`, `oidc:aud` and `oidc:sub`.
pub fn check_rrsa_trust(claims: &Claims, trust: &Value, provider_arn: &str) -> Result<(), String> {
    if !claims.aud.iter().any(|a| a == STS_AUDIENCE) {
        return Err(format!(
            "the token's audience {:?} does not include {STS_AUDIENCE}",
            claims.aud
        ));
    }
    let mut allowed = vec![];
    for s in &statements(trust) {
        let applies = s["Effect"] == "Allow"
            && string_list(&s["Action"]).iter().any(|a| a == "sts:AssumeRole")
            && string_list(&s["Principal"]["Federated"])
                .iter()
                .any(|p| p == provider_arn);
        if !applies {
            continue;
        }
        let equals = &s["Condition"]["StringEquals"];
        let subs = string_list(&equals["oidc:sub"]);
        let issuers = string_list(&equals["oidc:iss"]);
        let auds = string_list(&equals["oidc:aud"]);
        allowed.extend(subs.iter().cloned());
        if subs.contains(&claims.sub)
            && issuers.contains(&claims.iss)
            && claims.aud.iter().any(|a| auds.contains(a))
        {
            return Ok(());
        }
    }
    Err(format!(
        "the trust policy does not admit subject {} of issuer {} (it admits {allowed:?} through {provider_arn})",
        claims.sub, claims.iss
    ))
}

/// The OSS action a probe call needs (for the condition's message; the probe names S3's).
pub fn oss_action(s3_operation: &str) -> &'static str {
    match s3_operation {
        "HeadBucket" => "oss:GetBucketInfo",
        "GetBucketLocation" => "oss:GetBucketLocation",
        "ListObjectsV2" | "ListObjects" => "oss:ListObjects",
        "GetObject" | "HeadObject" => "oss:GetObject",
        "DeleteObject" => "oss:DeleteObject",
        "AbortMultipartUpload" => "oss:AbortMultipartUpload",
        "ListParts" => "oss:ListParts",
        _ => "oss:PutObject",
    }
}

/// A probe failure in OSS's terms: the RAM action and the OSS resource.
pub(crate) fn in_oss_terms(error: Error, account: &str, bucket: &str) -> Error {
    let (call, failure, class) = match error {
        Error::AccessDenied { call, failure } => (call, failure, CloudFailureClass::AccessDenied),
        Error::Throttled { call, failure } => (call, failure, CloudFailureClass::Throttled),
        Error::Aws { call, failure } => {
            let class = if failure.status.is_some_and(|s| s >= 500) || failure.status.is_none() {
                CloudFailureClass::Transient
            } else {
                CloudFailureClass::Refused
            };
            (call, failure, class)
        }
        other => return other,
    };
    let key = call
        .resource
        .split_once(":::")
        .and_then(|(_, r)| r.split_once('/'))
        .map(|(_, key)| format!("/{key}"))
        .unwrap_or_default();
    Error::Alibaba {
        call: format!(
            "{} on {}{key} (OSS S3-compatible {})",
            oss_action(call.operation.sdk_name()),
            super::naming::bucket_arn(account, bucket),
            call.operation.sdk_name()
        ),
        detail: failure.to_string(),
        class,
    }
}

/// Validates an RRSA integration as its ServiceAccount. `account` owns the bucket.
pub async fn run_rrsa(
    client: &Client,
    alibaba: &Alibaba,
    target: &Target,
    oidc_provider_arn: &str,
    account: &str,
) -> Report {
    let mut report = Report::default();
    let subject = target.subject();
    let token = match token_for(client, target, STS_AUDIENCE, &mut report).await {
        Ok(token) => token,
        Err((name, error)) => return report.fail(name, error),
    };
    let Some(claims) = claims(&token) else {
        return report.fail(
            "trust",
            Error::InvalidSpec("the ServiceAccount token is not a readable JWT".into()),
        );
    };
    if let Err(detail) = check_rrsa_trust(&claims, &target.trust, oidc_provider_arn) {
        return report.fail(
            "trust",
            Error::AssumeRoleFailed {
                role: target.role_arn.clone(),
                subject,
                detail,
            },
        );
    }
    report.pass(
        "trust",
        format!(
            "token iss/sub/aud match the trust policy of {} and {oidc_provider_arn}",
            target.role_arn
        ),
    );
    let assumed = alibaba
        .api
        .assume_role_with_oidc(
            &target.role_arn,
            oidc_provider_arn,
            &token,
            super::WORKLOAD_SESSION,
        )
        .await;
    drop(token);
    let credentials = match assumed {
        Ok(credentials) => credentials,
        Err(e) => {
            let error = if e.is_transient() {
                super::api_error("sts:AssumeRoleWithOIDC", &target.role_arn, e)
            } else {
                Error::AssumeRoleFailed {
                    role: target.role_arn.clone(),
                    subject,
                    detail: format!("STS AssumeRoleWithOIDC: {e}"),
                }
            };
            return report.fail("assume-role", error);
        }
    };
    report.pass(
        "assume-role",
        format!(
            "AssumeRoleWithOIDC of {} as {} through {oidc_provider_arn}",
            target.role_arn,
            target.subject()
        ),
    );
    let workload = alibaba.s3_compatible(&target.region, &credentials, "workload");
    let operator = match alibaba.key().await {
        Ok(key) => alibaba.s3_compatible(&target.region, &key, "operator"),
        Err(error) => return report.fail("cleanup", error),
    };
    // The bucket step has read its region with GetBucketInfo; OSS's S3-compatible
    // GetBucketLocation answers OSS's location names, so the region is not asked again here.
    let mut report = probe(&workload, &operator, target, false, report).await;
    if let Some(error) = report.failure.take() {
        let error = in_oss_terms(error, account, &target.bucket);
        if let Some(last) = report.checks.last_mut() {
            last.detail = error.to_string();
        }
        report.failure = Some(error);
    }
    report
}

/// `bucketwire validate` of an Alibaba Cloud integration, with the caller's own credentials
/// (Alibaba's default chain) against what its status records and RAM's documents as they are
/// now (nothing is repaired). RRSA: as the ServiceAccount, exactly as the operator validates.
/// CrossAccount: the bucket's region, the role's trust and the permission policy, statically.
pub async fn validate_from_status(
    client: &Client,
    alibaba: &Alibaba,
    bi: &crate::api::BucketIntegration,
) -> Result<(Checked, Report), String> {
    use crate::api::IdentityMode;
    use crate::documents::documents_equivalent;
    use kube::ResourceExt;

    let namespace = bi.namespace().unwrap_or_default();
    let name = bi.name_any();
    let status = bi.status.clone().unwrap_or_default();
    let missing =
        |what: &str| format!("{namespace}/{name} has no {what} in its status yet; is the operator running?");
    let role_arn = status.role_arn.clone().ok_or_else(|| missing("roleArn"))?;
    let policy_arn = status.policy_arn.clone().ok_or_else(|| missing("policyArn"))?;
    let bucket = status
        .bucket
        .as_ref()
        .and_then(|b| b.name.clone())
        .ok_or_else(|| missing("bucket"))?;
    // The bucket, role and policy are the role's account's (the policy ARN names it).
    let account = policy_arn.split(':').nth(3).unwrap_or_default().to_string();
    let role_name = role_arn.rsplit('/').next().unwrap_or_default().to_string();
    let key = alibaba
        .key()
        .await
        .map_err(|e| format!("no usable Alibaba Cloud credentials: {e}"))?;
    let role = alibaba
        .api
        .get_role(&key, &role_name)
        .await
        .map_err(|e| format!("cannot read RAM role {role_arn}: {e}"))?
        .ok_or_else(|| format!("RAM role {role_arn} does not exist"))?;
    let region = bi.spec.region.clone();

    if bi.spec.identity.mode != IdentityMode::CrossAccount {
        let oidc_provider_arn = status
            .oidc_provider_arn
            .clone()
            .ok_or_else(|| missing("oidcProviderArn"))?;
        let sa = status
            .service_account
            .clone()
            .ok_or_else(|| missing("serviceAccount"))?;
        let target = Target {
            namespace: namespace.clone(),
            service_account: sa.rsplit('/').next().unwrap_or_default().to_string(),
            role_arn,
            identity: crate::validate::WorkloadIdentity::Rrsa {
                oidc_provider_arn: oidc_provider_arn.clone(),
            },
            trust: role.trust,
            bucket,
            region,
            root_path: bi.spec.bucket.root_path.clone(),
            access: bi.spec.access,
            probe_id: bi.uid().unwrap_or_else(|| name.clone()),
        };
        let report = run_rrsa(client, alibaba, &target, &oidc_provider_arn, &account).await;
        return Ok((Checked::Workload(target), report));
    }

    let trusted = status
        .trusted_account_id
        .clone()
        .ok_or_else(|| missing("trustedAccountId"))?;
    let external_id = status.external_id.clone().ok_or_else(|| missing("externalId"))?;
    // As the reconcile writes it: KMS in the policy only for a bucket bucketwire created.
    let kms = bi.spec.bucket.encryption.kms_key_arn.as_deref().filter(|_| {
        bi.spec.bucket.create && bi.spec.bucket.encryption.kind == crate::api::EncryptionType::SseKms
    });
    let target = CrossAccountTarget {
        role_name,
        role_arn: role_arn.clone(),
        policy_arn: policy_arn.clone(),
        trust: super::documents::cross_account_trust(&trusted, &external_id),
        permissions: super::documents::cross_account_policy(&account, &bucket, bi.spec.access, kms),
        trusted_account_id: trusted.clone(),
        bucket: bucket.clone(),
        region: region.clone(),
    };
    let mut report = Report::default();
    let located = alibaba.oss(&region).bucket_info(&key, &bucket).await;
    match located {
        Ok(Some(info)) if info.region() == region => {
            report.pass("region", format!("bucket {bucket} exists in {region}"));
        }
        Ok(Some(info)) => {
            let error = Error::BucketRegionMismatch {
                want: region,
                got: info.region().to_string(),
            };
            return Ok((Checked::CrossAccount(target), report.fail("region", error)));
        }
        Ok(None) => {
            let error = Error::BucketNotFound { bucket };
            return Ok((Checked::CrossAccount(target), report.fail("region", error)));
        }
        Err(e) => {
            let error = super::oss_error(
                "oss:GetBucketInfo",
                &super::naming::bucket_arn(&account, &bucket),
                e,
            );
            return Ok((Checked::CrossAccount(target), report.fail("region", error)));
        }
    }
    let (_, trust_report) =
        super::reconcile::check_cross_account(&role.trust, &trusted, &external_id, &role_arn, &bucket);
    report.checks.extend(trust_report.checks);
    if let Some(error) = trust_report.failure {
        report.failure = Some(error);
        return Ok((Checked::CrossAccount(target), report));
    }
    let policy_name = policy_arn.rsplit('/').next().unwrap_or_default();
    let policy = match alibaba.api.get_policy(&key, policy_name).await {
        Ok(policy) => policy,
        Err(e) => {
            let error = super::api_error("ram:GetPolicy", &policy_arn, e);
            return Ok((Checked::CrossAccount(target), report.fail("permissions", error)));
        }
    };
    if !policy
        .as_ref()
        .is_some_and(|p| documents_equivalent(&p.document, &target.permissions))
    {
        let error = Error::InvalidSpec(format!("the RAM policy {policy_arn} is not the expected one"));
        return Ok((Checked::CrossAccount(target), report.fail("permissions", error)));
    }
    report.pass(
        "permissions",
        format!("{policy_arn} grants exactly the expected actions on oss://{bucket}"),
    );
    report.checks.push(Check {
        name: "not-checked",
        passed: true,
        detail: format!(
            "assuming the role and object access: only account {trusted} can, presenting the external ID"
        ),
    });
    Ok((Checked::CrossAccount(target), report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::alibaba::documents::rrsa_trust;

    fn claims_for(iss: &str, sub: &str, aud: &str) -> Claims {
        Claims {
            iss: iss.into(),
            sub: sub.into(),
            aud: vec![aud.into()],
        }
    }

    #[test]
    fn the_rrsa_trust_admits_exactly_its_service_account_issuer_and_audience() {
        let provider = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1";
        let trust = rrsa_trust(provider, "https://issuer", "ns", "milvus");
        let sub = "system:serviceaccount:ns:milvus";
        assert!(check_rrsa_trust(&claims_for("https://issuer", sub, STS_AUDIENCE), &trust, provider).is_ok());
        let other_sa = claims_for("https://issuer", "system:serviceaccount:ns:other", STS_AUDIENCE);
        assert!(
            check_rrsa_trust(&other_sa, &trust, provider)
                .unwrap_err()
                .contains("ns:other")
        );
        let other_issuer = claims_for("https://elsewhere", sub, STS_AUDIENCE);
        assert!(check_rrsa_trust(&other_issuer, &trust, provider).is_err());
        let aws_audience = claims_for("https://issuer", sub, "sts.amazonaws.com");
        assert!(
            check_rrsa_trust(&aws_audience, &trust, provider)
                .unwrap_err()
                .contains("audience")
        );
        let other_provider = "acs:ram::1234567890123456:oidc-provider/other";
        assert!(
            check_rrsa_trust(
                &claims_for("https://issuer", sub, STS_AUDIENCE),
                &trust,
                other_provider
            )
            .is_err()
        );
    }

    #[test]
    fn probe_calls_are_named_by_their_oss_action() {
        assert_eq!(oss_action("HeadBucket"), "oss:GetBucketInfo");
        assert_eq!(oss_action("ListObjectsV2"), "oss:ListObjects");
        assert_eq!(oss_action("UploadPart"), "oss:PutObject");
        assert_eq!(oss_action("DeleteObject"), "oss:DeleteObject");
    }
}
