//! The RAM, STS and ACK calls bucketwire makes, typed: request parameters as the official
//! SDKs send them (all in the query string, lists and tags as JSON strings) and answers read
//! from the fields the SDKs' response models name. Reads answer `None` for "not there";
//! nothing here retries or sleeps.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::openapi::{ApiError, CS, OpenApi, RAM, STS};
use super::signer::AccessKey;
use crate::documents::parse_document;

/// RAM is global: one endpoint for every region.
pub const RAM_HOST: &str = "ram.aliyuncs.com";
/// STS's public endpoint, the one Milvus's storage layer calls.
pub const STS_HOST: &str = "sts.aliyuncs.com";

/// ACK's endpoint for a region.
pub fn cs_host(region: &str) -> String {
    format!("cs.{region}.aliyuncs.com")
}

/// A RAM role as GetRole answers.
#[derive(Clone, Debug, PartialEq)]
pub struct Role {
    pub name: String,
    pub arn: String,
    pub trust: Value,
}

/// A custom RAM policy and its default version's document.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub name: String,
    pub default_version: String,
    pub document: Value,
}

/// The RAM resource types that carry tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tagged {
    Role,
    Policy,
}

impl Tagged {
    fn id(self) -> &'static str {
        match self {
            Self::Role => "role",
            Self::Policy => "policy",
        }
    }
}

/// The cluster's RRSA settings, from ACK DescribeClusterDetail.
#[derive(Clone, Debug, PartialEq)]
pub struct Rrsa {
    pub enabled: bool,
    /// The `iss` of its ServiceAccount tokens (the first of a comma-separated list).
    pub issuer: String,
    pub oidc_provider_arn: String,
    pub audiences: Vec<String>,
}

/// Who the caller is (STS GetCallerIdentity).
#[derive(Clone, Debug, PartialEq)]
pub struct CallerIdentity {
    pub account_id: String,
    pub arn: String,
}

fn params<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Tags as RAM's `Tag` parameter carries them: `[{"Key": ..., "Value": ...}]`.
fn tag_param(tags: &BTreeMap<String, String>) -> String {
    Value::Array(tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect()).to_string()
}

/// `None` for a "does not exist" answer.
fn found(result: Result<Value, ApiError>) -> Result<Option<Value>, ApiError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

fn document(text: &Value) -> Value {
    text.as_str().and_then(parse_document).unwrap_or(Value::Null)
}

fn role_of(answer: &Value) -> Role {
    let role = &answer["Role"];
    Role {
        name: role["RoleName"].as_str().unwrap_or_default().to_string(),
        arn: role["Arn"].as_str().unwrap_or_default().to_string(),
        trust: document(&role["AssumeRolePolicyDocument"]),
    }
}

impl OpenApi {
    async fn ram(
        &self,
        action: &str,
        p: BTreeMap<String, String>,
        key: &AccessKey,
    ) -> Result<Value, ApiError> {
        self.rpc(RAM, RAM_HOST, action, &p, Some(key)).await
    }

    pub async fn get_role(&self, key: &AccessKey, name: &str) -> Result<Option<Role>, ApiError> {
        let answer = found(
            self.ram("GetRole", params([("RoleName", name.into())]), key)
                .await,
        )?;
        Ok(answer.as_ref().map(role_of))
    }

    pub async fn create_role(
        &self,
        key: &AccessKey,
        name: &str,
        trust: &Value,
        description: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<Role, ApiError> {
        let answer = self
            .ram(
                "CreateRole",
                params([
                    ("RoleName", name.into()),
                    ("AssumeRolePolicyDocument", trust.to_string()),
                    ("Description", description.into()),
                    ("Tag", tag_param(tags)),
                ]),
                key,
            )
            .await?;
        Ok(role_of(&answer))
    }

    pub async fn update_role_trust(
        &self,
        key: &AccessKey,
        name: &str,
        trust: &Value,
    ) -> Result<(), ApiError> {
        self.ram(
            "UpdateRole",
            params([
                ("RoleName", name.into()),
                ("NewAssumeRolePolicyDocument", trust.to_string()),
            ]),
            key,
        )
        .await
        .map(drop)
    }

    pub async fn delete_role(&self, key: &AccessKey, name: &str) -> Result<(), ApiError> {
        found(
            self.ram("DeleteRole", params([("RoleName", name.into())]), key)
                .await,
        )
        .map(drop)
    }

    pub async fn get_policy(&self, key: &AccessKey, name: &str) -> Result<Option<Policy>, ApiError> {
        let answer = found(
            self.ram(
                "GetPolicy",
                params([("PolicyName", name.into()), ("PolicyType", "Custom".into())]),
                key,
            )
            .await,
        )?;
        Ok(answer.map(|a| Policy {
            name: a["Policy"]["PolicyName"].as_str().unwrap_or(name).to_string(),
            default_version: a["DefaultPolicyVersion"]["VersionId"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            document: document(&a["DefaultPolicyVersion"]["PolicyDocument"]),
        }))
    }

    pub async fn create_policy(
        &self,
        key: &AccessKey,
        name: &str,
        document: &Value,
        description: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        self.ram(
            "CreatePolicy",
            params([
                ("PolicyName", name.into()),
                ("PolicyDocument", document.to_string()),
                ("Description", description.into()),
                ("Tag", tag_param(tags)),
            ]),
            key,
        )
        .await
        .map(drop)
    }

    /// A new default version; RAM keeps at most five, and the oldest non-default one goes.
    pub async fn create_policy_version(
        &self,
        key: &AccessKey,
        name: &str,
        document: &Value,
    ) -> Result<(), ApiError> {
        self.ram(
            "CreatePolicyVersion",
            params([
                ("PolicyName", name.into()),
                ("PolicyDocument", document.to_string()),
                ("SetAsDefault", "true".into()),
                (
                    "RotateStrategy",
                    "DeleteOldestNonDefaultVersionWhenLimitExceeded".into(),
                ),
            ]),
            key,
        )
        .await
        .map(drop)
    }

    /// Deletes the policy. Without `cascading`, RAM refuses while it is attached anywhere or
    /// has versions besides the default; with it, RAM also deletes those versions (and detaches
    /// it from every principal).
    pub async fn delete_policy(&self, key: &AccessKey, name: &str, cascading: bool) -> Result<(), ApiError> {
        found(
            self.ram(
                "DeletePolicy",
                params([
                    ("PolicyName", name.into()),
                    ("CascadingDelete", cascading.to_string()),
                ]),
                key,
            )
            .await,
        )
        .map(drop)
    }

    /// The names of the custom policies attached to a role.
    pub async fn list_policies_for_role(
        &self,
        key: &AccessKey,
        role: &str,
    ) -> Result<Option<Vec<String>>, ApiError> {
        let answer = found(
            self.ram("ListPoliciesForRole", params([("RoleName", role.into())]), key)
                .await,
        )?;
        Ok(answer.map(|a| {
            a["Policies"]["Policy"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["PolicyType"] == "Custom")
                .filter_map(|p| p["PolicyName"].as_str().map(str::to_string))
                .collect()
        }))
    }

    pub async fn attach_policy_to_role(
        &self,
        key: &AccessKey,
        policy: &str,
        role: &str,
    ) -> Result<(), ApiError> {
        let p = params([
            ("PolicyType", "Custom".into()),
            ("PolicyName", policy.into()),
            ("RoleName", role.into()),
        ]);
        match self.ram("AttachPolicyToRole", p, key).await {
            // Already attached: what was asked for is true.
            Err(e) if e.is_already_exists() => Ok(()),
            other => other.map(drop),
        }
    }

    pub async fn detach_policy_from_role(
        &self,
        key: &AccessKey,
        policy: &str,
        role: &str,
    ) -> Result<(), ApiError> {
        let p = params([
            ("PolicyType", "Custom".into()),
            ("PolicyName", policy.into()),
            ("RoleName", role.into()),
        ]);
        found(self.ram("DetachPolicyFromRole", p, key).await).map(drop)
    }

    /// The tags of one role or policy.
    pub async fn list_tags(
        &self,
        key: &AccessKey,
        kind: Tagged,
        name: &str,
    ) -> Result<BTreeMap<String, String>, ApiError> {
        let mut tags = BTreeMap::new();
        let mut next: Option<String> = None;
        loop {
            let mut p = params([
                ("ResourceType", kind.id().into()),
                ("ResourceNames", json!([name]).to_string()),
            ]);
            if let Some(token) = &next {
                p.insert("NextToken".into(), token.clone());
            }
            let answer = self.ram("ListTagResources", p, key).await?;
            for item in answer["TagResources"].as_array().into_iter().flatten() {
                if let (Some(k), Some(v)) = (item["TagKey"].as_str(), item["TagValue"].as_str()) {
                    tags.insert(k.to_string(), v.to_string());
                }
            }
            match answer["NextToken"].as_str().filter(|t| !t.is_empty()) {
                Some(token) => next = Some(token.to_string()),
                None => return Ok(tags),
            }
        }
    }

    pub async fn tag(
        &self,
        key: &AccessKey,
        kind: Tagged,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        let p = params([
            ("ResourceType", kind.id().into()),
            ("ResourceNames", json!([name]).to_string()),
            ("Tag", tag_param(tags)),
        ]);
        self.ram("TagResources", p, key).await.map(drop)
    }

    pub async fn get_caller_identity(&self, key: &AccessKey) -> Result<CallerIdentity, ApiError> {
        let answer = self
            .rpc(STS, STS_HOST, "GetCallerIdentity", &BTreeMap::new(), Some(key))
            .await?;
        Ok(CallerIdentity {
            account_id: answer["AccountId"].as_str().unwrap_or_default().to_string(),
            arn: answer["Arn"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// STS AssumeRole, as the trusted account of a cross-account role calls it (bucketwire
    /// itself never does: the tests play that account).
    pub async fn assume_role(
        &self,
        key: &AccessKey,
        role_arn: &str,
        session_name: &str,
        external_id: Option<&str>,
    ) -> Result<AccessKey, ApiError> {
        let mut p = params([
            ("RoleArn", role_arn.into()),
            ("RoleSessionName", session_name.into()),
            ("DurationSeconds", "900".into()),
        ]);
        if let Some(id) = external_id {
            p.insert("ExternalId".into(), id.into());
        }
        let answer = self.rpc(STS, STS_HOST, "AssumeRole", &p, Some(key)).await?;
        Ok(credentials_of(&answer))
    }

    /// STS AssumeRoleWithOIDC, unsigned: the ServiceAccount token is the credential.
    pub async fn assume_role_with_oidc(
        &self,
        role_arn: &str,
        oidc_provider_arn: &str,
        token: &str,
        session_name: &str,
    ) -> Result<AccessKey, ApiError> {
        let p = params([
            ("RoleArn", role_arn.into()),
            ("OIDCProviderArn", oidc_provider_arn.into()),
            ("OIDCToken", token.into()),
            ("RoleSessionName", session_name.into()),
            ("DurationSeconds", "900".into()),
        ]);
        let answer = self.rpc(STS, STS_HOST, "AssumeRoleWithOIDC", &p, None).await?;
        Ok(credentials_of(&answer))
    }

    /// The RRSA settings of an ACK cluster; `None` when the cluster does not exist.
    pub async fn cluster_rrsa(
        &self,
        key: &AccessKey,
        region: &str,
        cluster_id: &str,
    ) -> Result<Option<Rrsa>, ApiError> {
        let path = format!("/clusters/{}", super::signer::percent_encode(cluster_id));
        let answer = found(
            self.roa(CS, &cs_host(region), "GET", &path, "DescribeClusterDetail", key)
                .await,
        )?;
        Ok(answer.map(|a| rrsa_of(&a["rrsa_config"])))
    }
}

/// The `Credentials` of an STS answer.
fn credentials_of(answer: &Value) -> AccessKey {
    let credentials = &answer["Credentials"];
    let field = |name: &str| credentials[name].as_str().unwrap_or_default().to_string();
    AccessKey {
        id: field("AccessKeyId"),
        secret: field("AccessKeySecret"),
        security_token: credentials["SecurityToken"].as_str().map(str::to_string),
    }
}

/// The RRSA block of DescribeClusterDetail; absent or disabled reads as not enabled.
pub fn rrsa_of(config: &Value) -> Rrsa {
    let list = |v: &Value| -> Vec<String> {
        v.as_str()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    Rrsa {
        enabled: config["enabled"].as_bool().unwrap_or(false),
        issuer: list(&config["issuer"]).into_iter().next().unwrap_or_default(),
        oidc_provider_arn: config["oidc_arn"].as_str().unwrap_or_default().to_string(),
        audiences: list(&config["audience"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_travel_as_a_json_list_of_key_value_pairs() {
        let tags = BTreeMap::from([("bucketwire.io/uid".to_string(), "u".to_string())]);
        assert_eq!(tag_param(&tags), r#"[{"Key":"bucketwire.io/uid","Value":"u"}]"#);
    }

    #[test]
    fn rrsa_reads_the_first_issuer_and_every_audience() {
        let rrsa = rrsa_of(&json!({
            "enabled": true,
            "issuer": "https://oidc-ack-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com/c1, https://other",
            "audience": "sts.aliyuncs.com,custom",
            "oidc_arn": "acs:ram::1:oidc-provider/ack-rrsa-c1",
        }));
        assert!(rrsa.enabled);
        assert_eq!(
            rrsa.issuer,
            "https://oidc-ack-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com/c1"
        );
        assert_eq!(rrsa.audiences, ["sts.aliyuncs.com", "custom"]);
        assert_eq!(rrsa.oidc_provider_arn, "acs:ram::1:oidc-provider/ack-rrsa-c1");
        assert!(!rrsa_of(&Value::Null).enabled);
    }

    #[test]
    fn a_role_answer_yields_its_trust_document() {
        let role = role_of(&json!({"Role": {"RoleName": "r", "Arn": "acs:ram::1:role/r",
            "AssumeRolePolicyDocument": "{\"Version\":\"1\",\"Statement\":[]}"}}));
        assert_eq!(role.trust["Version"], "1");
        assert_eq!(role.arn, "acs:ram::1:role/r");
    }
}
