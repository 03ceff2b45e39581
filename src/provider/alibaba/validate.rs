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
use crate::validate::{Claims, Report, Target, claims, probe, token_for};

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
fn in_oss_terms(error: Error, account: &str, bucket: &str) -> Error {
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
            "bucketwire-validation",
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
    let workload = alibaba.s3_compatible(&target.region, &credentials);
    let operator = match alibaba.key().await {
        Ok(key) => alibaba.s3_compatible(&target.region, &key),
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
