//! Alibaba Cloud on the test bed: its FAKES of RAM, STS, ACK and OSS (tests/testbed/alibaba/),
//! the accounts' administrators, and the operator as the RAM user that carries exactly
//! deploy/alibaba/operator-policy.json (tests/testbed/alibaba/seed.py).

use std::collections::BTreeMap;

use serde_json::Value;

use bucketwire::provider::alibaba::openapi::RAM;
use bucketwire::provider::alibaba::services::RAM_HOST;
use bucketwire::provider::alibaba::signer::AccessKey;
use bucketwire::provider::alibaba::{Alibaba, Credentials};

use super::TestBed;
use super::operator::Operator;

pub const REGION: &str = "cn-hangzhou";

fn key(bed: &TestBed, prefix: &str) -> AccessKey {
    AccessKey {
        id: bed.var(&format!("{prefix}ACCESS_KEY_ID")).into(),
        secret: bed.var(&format!("{prefix}ACCESS_KEY_SECRET")).into(),
        security_token: None,
    }
}

/// The main account's administrator (the test's own view of the account).
pub fn admin(bed: &TestBed) -> AccessKey {
    key(bed, "BUCKETWIRE_TESTBED_ALIBABA_")
}

/// The administrator of the account standing for Zilliz Cloud.
pub fn second_admin(bed: &TestBed) -> AccessKey {
    key(bed, "BUCKETWIRE_TESTBED_ALIBABA_SECOND_")
}

/// The operator's RAM user: exactly deploy/alibaba/operator-policy.json, rendered for the test
/// bed's account, ACK cluster and bucket prefix.
pub fn operator_key(bed: &TestBed) -> AccessKey {
    key(bed, "BUCKETWIRE_TESTBED_ALIBABA_OPERATOR_")
}

/// A client of the fakes with no credentials of its own (each call is given a key).
pub fn cloud(bed: &TestBed) -> Alibaba {
    Alibaba::new(
        Some(bed.var("BUCKETWIRE_TESTBED_ALIBABA_ENDPOINT_URL")),
        Credentials::None,
    )
    .expect("endpoint")
}

/// The operator for Alibaba integrations: the fakes' endpoint, the test bed's ACK cluster, the
/// second account allowed, `extra` flags, and the operator RAM user's key.
pub fn start_operator(bed: &TestBed, ns: &str, extra: &[&str]) -> Operator {
    start_operator_with_env(bed, ns, extra, &[])
}

/// `start_operator` with more environment (crash points).
pub fn start_operator_with_env(bed: &TestBed, ns: &str, extra: &[&str], env: &[(&str, &str)]) -> Operator {
    let key = operator_key(bed);
    let mut args = vec![
        "--alibaba-endpoint-url",
        bed.var("BUCKETWIRE_TESTBED_ALIBABA_ENDPOINT_URL"),
        "--ack-cluster-id",
        bed.var("BUCKETWIRE_TESTBED_ALIBABA_CLUSTER_ID"),
        "--allowed-trusted-accounts",
        bed.var("BUCKETWIRE_TESTBED_ALIBABA_SECOND_ACCOUNT_ID"),
    ];
    args.extend_from_slice(extra);
    let mut all_env = vec![
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", key.id.as_str()),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", key.secret.as_str()),
    ];
    all_env.extend_from_slice(env);
    Operator::start_with_env(bed, ns, &args, &all_env)
}

/// The OSS fake's request log: every request it answered.
pub fn oss_requests(bed: &TestBed) -> Vec<Value> {
    std::fs::read_to_string(bed.var("BUCKETWIRE_TESTBED_OSS_REQUEST_LOG"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Alibaba Cloud calls the operator made so far, as `/metrics` counts them (both identities).
pub async fn calls(operator: &Operator) -> u64 {
    operator
        .metrics()
        .await
        .lines()
        .filter(|l| l.starts_with("bucketwire_alibaba_calls_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Every item of a paginated RAM list (`ListRoles` -> `Roles.Role`), as the administrator.
async fn ram_list(
    bed: &TestBed,
    action: &str,
    outer: &str,
    inner: &str,
    extra: &[(&str, &str)],
) -> Vec<Value> {
    let cloud = cloud(bed);
    let admin = admin(bed);
    let mut items = vec![];
    let mut marker: Option<String> = None;
    loop {
        let mut params: BTreeMap<String, String> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        params.insert("MaxItems".into(), "1000".into());
        if let Some(m) = &marker {
            params.insert("Marker".into(), m.clone());
        }
        let page = cloud
            .api
            .rpc(RAM, RAM_HOST, action, &params, Some(&admin))
            .await
            .unwrap_or_else(|e| panic!("{action}: {e}"));
        items.extend(page[outer][inner].as_array().cloned().unwrap_or_default());
        if page["IsTruncated"] != true {
            return items;
        }
        marker = page["Marker"].as_str().map(str::to_string);
    }
}

/// Every role and custom policy name in the main account containing `part`, tagged or not.
pub async fn ram_names(bed: &TestBed, part: &str) -> (Vec<String>, Vec<String>) {
    let names = |items: Vec<Value>, field: &str| {
        let mut names: Vec<String> = items
            .iter()
            .filter_map(|i| i[field].as_str())
            .filter(|n| n.contains(part))
            .map(str::to_string)
            .collect();
        names.sort();
        names
    };
    let roles = ram_list(bed, "ListRoles", "Roles", "Role", &[]).await;
    let policies = ram_list(
        bed,
        "ListPolicies",
        "Policies",
        "Policy",
        &[("PolicyType", "Custom")],
    )
    .await;
    (names(roles, "RoleName"), names(policies, "PolicyName"))
}
