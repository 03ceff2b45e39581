//! The operator's allow-lists: what a tenant's spec may name beyond its own bucket and
//! ServiceAccount. A KMS key (`bucket.encryption.kmsKeyArn`: the role gets kms:Decrypt and
//! kms:GenerateDataKey on it), an account to trust (`identity.crossAccount.trustedAccountId`:
//! its root may assume the role), an OIDC issuer or EKS cluster to trust (`identity.oidcIssuer`,
//! `identity.eksClusterName`: their tokens may assume the role). A spec naming one the operator
//! does not allow is refused with `KmsKeyNotAllowed` or `TrustNotAllowed`, before any AWS write.
//!
//! The checks are pure. Two facts come from AWS reads, made before any write: the operator's
//! own account (STS GetCallerIdentity, cached per process), which is never trusted whatever the
//! list says; and, only for a key not listed by ARN, the keys the list's aliases name now (KMS
//! DescribeKey), so that an alias entry follows the alias.

use crate::api::{BucketIntegrationSpec, EncryptionType, IdentityMode};
use crate::aws::AwsFailure;
use crate::aws::actions::{Call, Operation};
use crate::error::Error;
use crate::naming::issuer_host_path;
use crate::settings::Settings;

const ACCOUNT_FIELD: &str = "identity.crossAccount.trustedAccountId";
const ISSUER_FIELD: &str = "identity.oidcIssuer";
const CLUSTER_FIELD: &str = "identity.eksClusterName";

/// Pure: every trust anchor the spec names against the operator's allow-lists. The trusted
/// account must be in `--allowed-trusted-accounts`; an `oidcIssuer` override must be the
/// operator's `--oidc-issuer` or in `--allowed-oidc-issuers`; an `eksClusterName` override must
/// be the operator's `--cluster-name` or in `--allowed-eks-clusters` (IRSA trusts its OIDC
/// provider; PodIdentity trusts sessions tagged with its ARN and associates in it).
pub fn check_trust(spec: &BucketIntegrationSpec, settings: &Settings) -> Result<(), Error> {
    match spec.identity.mode {
        IdentityMode::CrossAccount => {
            let Some(account) = spec
                .identity
                .cross_account
                .as_ref()
                .map(|c| c.trusted_account_id.as_str())
            else {
                return Ok(()); // admission requires it; resolve reports its absence
            };
            let mut allowed = Settings::allowed(&settings.allowed_trusted_accounts).peekable();
            let none_allowed = allowed.peek().is_none();
            if !allowed.any(|a| a == account) {
                return Err(refused(
                    ACCOUNT_FIELD,
                    account,
                    if none_allowed {
                        "this operator allows no account to assume an integration's role (--allowed-trusted-accounts is empty), so mode CrossAccount is refused"
                    } else {
                        "it is not in the operator's --allowed-trusted-accounts; only the accounts the platform team allows may assume an integration's role"
                    },
                ));
            }
        }
        // The ACK cluster an RRSA role trusts is checked by provider::alibaba::reconcile.
        IdentityMode::Rrsa => {}
        IdentityMode::Irsa | IdentityMode::PodIdentity => {
            // (Admission refuses oidcIssuer with PodIdentity; the role trusts EKS there.)
            if let Some(issuer) = non_empty(spec.identity.oidc_issuer.as_deref())
                .filter(|_| spec.identity.mode == IdentityMode::Irsa)
            {
                let same = |other: &str| issuer_host_path(other) == issuer_host_path(issuer);
                let allowed = non_empty(settings.oidc_issuer.as_deref()).is_some_and(same)
                    || Settings::allowed(&settings.allowed_oidc_issuers).any(same);
                if !allowed {
                    return Err(refused(
                        ISSUER_FIELD,
                        issuer,
                        "it is neither the operator's --oidc-issuer nor in its --allowed-oidc-issuers; a role may only trust the identity providers the platform team allows (leave oidcIssuer empty to use the operator's)",
                    ));
                }
            }
            if let Some(cluster) = non_empty(spec.identity.eks_cluster_name.as_deref())
                && cluster != settings.cluster_name
                && !Settings::allowed(&settings.allowed_eks_clusters).any(|c| c == cluster)
            {
                return Err(refused(
                    CLUSTER_FIELD,
                    cluster,
                    "it is neither the operator's --cluster-name nor in its --allowed-eks-clusters; a role may only trust the clusters the platform team allows (leave eksClusterName empty to use the operator's)",
                ));
            }
        }
    }
    Ok(())
}

/// Pure: a cross-account integration never trusts the operator's own account, whatever
/// `--allowed-trusted-accounts` says: that account's root would let every principal in it that
/// may call sts:AssumeRole assume the role.
pub fn check_not_operator_account(spec: &BucketIntegrationSpec, operator_account: &str) -> Result<(), Error> {
    let account = spec
        .identity
        .cross_account
        .as_ref()
        .filter(|_| spec.identity.mode == IdentityMode::CrossAccount)
        .map(|c| c.trusted_account_id.as_str());
    match account {
        Some(account) if account == operator_account => Err(refused(
            ACCOUNT_FIELD,
            account,
            "it is the operator's own account; trusting its root would let every principal of that account allowed sts:AssumeRole assume the role, so it is never trusted, whatever --allowed-trusted-accounts says",
        )),
        _ => Ok(()),
    }
}

/// The KMS key the spec asks the operator to configure and grant: `kmsKeyArn` of a bucket the
/// integration creates. An adopted bucket keeps its own encryption, chosen by its owner, whom
/// `--adopt-buckets` already trusts; its key is granted with the same two conditions.
pub fn spec_kms_key(spec: &BucketIntegrationSpec) -> Option<&str> {
    (spec.bucket.create && spec.bucket.encryption.kind == EncryptionType::SseKms)
        .then_some(spec.bucket.encryption.kms_key_arn.as_deref())
        .flatten()
}

/// What `--allowed-kms-keys` says about a key without asking AWS.
#[derive(Debug, PartialEq, Eq)]
pub enum KmsVerdict<'a> {
    /// Listed by its ARN.
    Allowed,
    /// Not listed by ARN: allowed if one of these aliases (usable in the key's region) names
    /// it now.
    ResolveAliases(Vec<&'a str>),
}

/// Pure: `key` (a key ARN, as admission requires) against `--allowed-kms-keys`. Refused when
/// neither listed nor possibly named by an alias entry of its region.
pub fn kms_by_arn<'a>(key: &str, region: &str, entries: &'a [String]) -> Result<KmsVerdict<'a>, Error> {
    if Settings::allowed(entries).any(|e| e == key) {
        return Ok(KmsVerdict::Allowed);
    }
    let aliases: Vec<&str> = Settings::allowed(entries)
        .filter(|e| alias_usable_in(e, region))
        .collect();
    if aliases.is_empty() {
        return Err(kms_refused(key, entries, region, 0));
    }
    Ok(KmsVerdict::ResolveAliases(aliases))
}

/// Pure: the decision once the aliases are resolved (alias, the key ARN it names now or `None`
/// when it does not exist there).
pub fn kms_by_aliases(
    key: &str,
    region: &str,
    entries: &[String],
    resolved: &[(&str, Option<String>)],
) -> Result<(), Error> {
    if resolved.iter().any(|(_, target)| target.as_deref() == Some(key)) {
        Ok(())
    } else {
        Err(kms_refused(key, entries, region, resolved.len()))
    }
}

/// `alias/<name>` is looked up in every region; an alias ARN only in its own.
fn alias_usable_in(entry: &str, region: &str) -> bool {
    if entry.starts_with("alias/") {
        return true;
    }
    let parts: Vec<&str> = entry.splitn(6, ':').collect();
    matches!(parts.as_slice(), [_, _, "kms", r, _, resource] if *r == region && resource.starts_with("alias/"))
}

fn kms_refused(key: &str, entries: &[String], region: &str, aliases: usize) -> Error {
    let detail = if Settings::allowed(entries).next().is_none() {
        "this operator allows no KMS key (--allowed-kms-keys is empty), so SSE-KMS is refused".to_string()
    } else if aliases == 0 {
        "it is not in the operator's --allowed-kms-keys".to_string()
    } else {
        format!(
            "it is not in the operator's --allowed-kms-keys, and none of the {aliases} alias(es) listed there names it in {region}"
        )
    };
    Error::KmsKeyNotAllowed {
        key: key.to_string(),
        detail,
    }
}

/// The whole KMS check: by ARN, then (only if needed) each alias entry of the key's region
/// resolved with KMS DescribeKey, a read. An alias that does not exist names no key.
pub async fn check_kms_key(
    kms: &aws_sdk_kms::Client,
    key: &str,
    region: &str,
    entries: &[String],
) -> Result<(), Error> {
    let KmsVerdict::ResolveAliases(aliases) = kms_by_arn(key, region, entries)? else {
        return Ok(());
    };
    let mut resolved = Vec::with_capacity(aliases.len());
    for alias in aliases {
        let target = match kms.describe_key().key_id(alias).send().await {
            Ok(out) => out.key_metadata().and_then(|m| m.arn()).map(str::to_string),
            Err(e) => {
                let failure = AwsFailure::from_sdk(&e);
                if failure.is_code("NotFoundException") {
                    None
                } else {
                    // Named as the request named it: an alias, in this region.
                    let resource = if alias.starts_with("arn:") {
                        alias.to_string()
                    } else {
                        format!("{alias} in {region}")
                    };
                    return Err(Error::aws(Call::new(Operation::DescribeKey, resource), failure));
                }
            }
        };
        let found = target.as_deref() == Some(key);
        resolved.push((alias, target));
        if found {
            break;
        }
    }
    kms_by_aliases(key, region, entries, &resolved)
}

fn refused(field: &'static str, value: &str, detail: &str) -> Error {
    Error::TrustNotAllowed {
        field,
        value: value.to_string(),
        detail: detail.to_string(),
    }
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(value: serde_json::Value) -> BucketIntegrationSpec {
        serde_json::from_value(value).expect("spec")
    }

    fn cross(account: &str) -> BucketIntegrationSpec {
        spec(json!({"region": "us-east-2", "identity": {"mode": "CrossAccount",
            "crossAccount": {"trustedAccountId": account}}}))
    }

    fn reason(result: Result<(), Error>) -> &'static str {
        match result {
            Ok(()) => "Allowed",
            Err(e) => e.reason(),
        }
    }

    const KEY: &str = "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn a_trusted_account_must_be_listed_and_an_empty_list_refuses_cross_account() {
        let mut settings = crate::settings::tests::settings();
        let err = check_trust(&cross("999988887777"), &settings).expect_err("empty list refuses");
        assert_eq!(err.reason(), "TrustNotAllowed");
        assert!(
            err.to_string().contains("--allowed-trusted-accounts is empty"),
            "{err}"
        );
        settings.allowed_trusted_accounts = vec!["999988887777".into()];
        assert_eq!(reason(check_trust(&cross("999988887777"), &settings)), "Allowed");
        let err = check_trust(&cross("444455556666"), &settings).expect_err("not listed");
        assert!(
            err.to_string()
                .starts_with("identity.crossAccount.trustedAccountId 444455556666 is not allowed"),
            "{err}"
        );
    }

    #[test]
    fn the_operators_own_account_is_refused_even_when_listed() {
        let mut settings = crate::settings::tests::settings();
        settings.allowed_trusted_accounts = vec!["123456789012".into()];
        let spec = cross("123456789012");
        assert_eq!(reason(check_trust(&spec, &settings)), "Allowed");
        let err = check_not_operator_account(&spec, "123456789012").expect_err("own account");
        assert_eq!(err.reason(), "TrustNotAllowed");
        assert!(err.to_string().contains("operator's own account"), "{err}");
        assert_eq!(
            reason(check_not_operator_account(&spec, "210987654321")),
            "Allowed"
        );
        // IRSA integrations trust no account.
        let irsa = spec_irsa(json!({}));
        assert_eq!(
            reason(check_not_operator_account(&irsa, "123456789012")),
            "Allowed"
        );
    }

    fn spec_irsa(identity: serde_json::Value) -> BucketIntegrationSpec {
        spec(json!({"region": "us-east-2", "identity": identity}))
    }

    #[test]
    fn an_issuer_override_must_be_the_operators_or_listed() {
        let mut settings = crate::settings::tests::settings();
        let hostile = spec_irsa(json!({"oidcIssuer": "https://attacker.example.com"}));
        let err = check_trust(&hostile, &settings).expect_err("not allowed");
        assert!(
            err.to_string()
                .starts_with("identity.oidcIssuer https://attacker.example.com is not allowed"),
            "{err}"
        );
        settings.oidc_issuer = Some("https://oidc.example.com/id/1".into());
        // The operator's own issuer is always fine, with or without a trailing '/'.
        let own = spec_irsa(json!({"oidcIssuer": "https://oidc.example.com/id/1/"}));
        assert_eq!(reason(check_trust(&own, &settings)), "Allowed");
        assert_eq!(reason(check_trust(&hostile, &settings)), "TrustNotAllowed");
        settings.allowed_oidc_issuers = vec!["https://attacker.example.com/".into()];
        assert_eq!(reason(check_trust(&hostile, &settings)), "Allowed");
        // No override: nothing to check.
        assert_eq!(
            reason(check_trust(&spec_irsa(json!({"oidcIssuer": ""})), &settings)),
            "Allowed"
        );
    }

    #[test]
    fn a_cluster_override_must_be_the_operators_or_listed() {
        let mut settings = crate::settings::tests::settings(); // --cluster-name test
        let other = spec_irsa(json!({"eksClusterName": "prod-payments"}));
        let err = check_trust(&other, &settings).expect_err("not allowed");
        assert_eq!(err.reason(), "TrustNotAllowed");
        assert!(
            err.to_string()
                .starts_with("identity.eksClusterName prod-payments is not allowed")
        );
        assert_eq!(
            reason(check_trust(
                &spec_irsa(json!({"eksClusterName": "test"})),
                &settings
            )),
            "Allowed"
        );
        settings.allowed_eks_clusters = vec!["prod-payments".into()];
        assert_eq!(reason(check_trust(&other, &settings)), "Allowed");
    }

    #[test]
    fn a_pod_identity_cluster_override_must_be_the_operators_or_listed() {
        let mut settings = crate::settings::tests::settings(); // --cluster-name test
        let other = spec_irsa(json!({"mode": "PodIdentity", "eksClusterName": "prod-payments"}));
        assert_eq!(reason(check_trust(&other, &settings)), "TrustNotAllowed");
        let own = spec_irsa(json!({"mode": "PodIdentity", "eksClusterName": "test"}));
        assert_eq!(reason(check_trust(&own, &settings)), "Allowed");
        settings.allowed_eks_clusters = vec!["prod-payments".into()];
        assert_eq!(reason(check_trust(&other, &settings)), "Allowed");
    }

    #[test]
    fn a_kms_key_is_allowed_by_arn_without_asking_aws() {
        let entries = vec![KEY.to_string()];
        assert_eq!(
            kms_by_arn(KEY, "us-east-2", &entries).ok(),
            Some(KmsVerdict::Allowed)
        );
        let other = KEY.replace("1234abcd", "ffffffff");
        let err = kms_by_arn(&other, "us-east-2", &entries).expect_err("not listed");
        assert_eq!(err.reason(), "KmsKeyNotAllowed");
        assert!(
            err.to_string()
                .contains("not in the operator's --allowed-kms-keys"),
            "{err}"
        );
    }

    #[test]
    fn no_allowed_key_means_sse_kms_is_refused() {
        for entries in [vec![], vec![String::new()]] {
            let err = kms_by_arn(KEY, "us-east-2", &entries).expect_err("empty list");
            assert_eq!(err.reason(), "KmsKeyNotAllowed");
            assert!(err.to_string().contains("--allowed-kms-keys is empty"), "{err}");
        }
    }

    #[test]
    fn aliases_of_the_keys_region_are_resolved_and_must_name_the_key() {
        let entries: Vec<String> = vec![
            "alias/milvus".into(),
            "arn:aws:kms:us-east-2:111122223333:alias/team-a".into(),
            "arn:aws:kms:eu-west-1:111122223333:alias/eu-only".into(),
        ];
        assert_eq!(
            kms_by_arn(KEY, "us-east-2", &entries).ok(),
            Some(KmsVerdict::ResolveAliases(vec![
                "alias/milvus",
                "arn:aws:kms:us-east-2:111122223333:alias/team-a"
            ]))
        );
        let eu_only = vec!["arn:aws:kms:eu-west-1:111122223333:alias/eu-only".to_string()];
        assert_eq!(
            reason(kms_by_arn(KEY, "us-east-2", &eu_only).map(|_| ())),
            "KmsKeyNotAllowed"
        );
        let names_it = [
            ("alias/milvus", None),
            ("arn:...:alias/team-a", Some(KEY.to_string())),
        ];
        assert_eq!(
            reason(kms_by_aliases(KEY, "us-east-2", &entries, &names_it)),
            "Allowed"
        );
        let names_another = [("alias/milvus", Some(KEY.replace("1234abcd", "ffffffff")))];
        let err = kms_by_aliases(KEY, "us-east-2", &entries, &names_another).expect_err("other key");
        assert!(err.to_string().contains("none of the 1 alias(es)"), "{err}");
    }

    #[test]
    fn only_a_created_buckets_spec_key_is_checked() {
        let kms = json!({"type": "SSE-KMS", "kmsKeyArn": KEY});
        let created = spec(json!({"region": "us-east-2", "bucket": {"encryption": kms}}));
        assert_eq!(spec_kms_key(&created), Some(KEY));
        let adopted = spec(json!({"region": "us-east-2", "bucket": {"create": false, "encryption": kms}}));
        assert_eq!(spec_kms_key(&adopted), None);
        assert_eq!(spec_kms_key(&spec(json!({"region": "us-east-2"}))), None);
    }
}
