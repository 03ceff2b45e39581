//! The test bed decides as AWS documents (issue 14, item 5). Each behaviour below cites the AWS
//! documentation page it comes from; the test builds its principals, buckets, roles and keys as
//! the test bed's administrators (of the test bed's account, and of a second account), then signs
//! every probe with the real SDK clients as the principal named, and asserts what the
//! documentation says: allowed, or denied with `AccessDenied`. A probe that fails any other way
//! (a bad signature, a missing resource) is a failure, never a denial.
//!
//! Where the simulator and the documentation disagree, tests/testbed/SIMULATOR.md names the case
//! and the probe here that pins it.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use common::aws::{self, Credentials, Outcome, SignedAs};
use common::{TestBed, results, setup};

const REGION: &str = "us-east-2";
/// The session name of every role session the test makes.
const SESSION: &str = "iam-semantics";

/// The names one behaviour's setup refers to (all derived from the test's namespace, so every
/// run has its own; ARNs are known before anything is created).
struct Names {
    /// `<namespace>-b<n>`: prefix of every IAM name and bucket of the behaviour.
    prefix: String,
    /// The Kubernetes namespace of the ServiceAccounts.
    ns: String,
    account: String,
    second_account: String,
    admin_arn: String,
    /// `<issuer host>/<path>`: the prefix of the web-identity condition keys.
    issuer: String,
    provider_arn: String,
}

impl Names {
    fn bucket(&self, which: Bucket) -> String {
        aws::unique_bucket(&self.prefix, which.suffix())
    }

    fn bucket_arn(&self, which: Bucket) -> String {
        format!("arn:aws:s3:::{}", self.bucket(which))
    }

    fn user(&self, label: &str) -> String {
        format!("{}-{label}", self.prefix)
    }

    fn user_arn(&self, label: &str) -> String {
        format!("arn:aws:iam::{}:user/{}", self.account, self.user(label))
    }

    fn second_user_arn(&self, label: &str) -> String {
        format!("arn:aws:iam::{}:user/{}", self.second_account, self.user(label))
    }

    fn role_arn(&self, label: &str) -> String {
        format!("arn:aws:iam::{}:role/{}", self.account, self.user(label))
    }

    /// The session ARN of a `BoundedRole` caller (the administrator assumes it as SESSION).
    fn session_arn(&self, label: &str) -> String {
        format!(
            "arn:aws:sts::{}:assumed-role/{}/{SESSION}",
            self.account,
            self.user(label)
        )
    }
}

#[derive(Clone, Copy, Debug)]
enum Bucket {
    /// The behaviour's bucket (it carries the behaviour's bucket policy, if any).
    Own,
    /// A second bucket of the same account, without a bucket policy.
    Other,
}

impl Bucket {
    fn suffix(self) -> &'static str {
        match self {
            Bucket::Own => "own",
            Bucket::Other => "other",
        }
    }
}

/// Who signs a probe.
enum Caller {
    /// An IAM user of the test bed's account with these inline policies, signing with its
    /// long-term access key.
    User(Vec<Value>),
    /// A role of the test bed's account with these inline policies and this permissions
    /// boundary, assumed by the administrator (temporary credentials).
    BoundedRole { policies: Vec<Value>, boundary: Value },
    /// An IAM user of the second account with these inline policies.
    SecondAccountUser(Vec<Value>),
}

/// A role's tags: (key, value).
type Tags = Vec<(&'static str, &'static str)>;

/// What a behaviour needs before its probes run.
#[derive(Default)]
struct Setup {
    callers: Vec<(&'static str, Caller)>,
    /// The policy of bucket `Own`.
    bucket_policy: Option<Value>,
    /// Roles to be assumed or read, with their trust policies and tags (test bed's account).
    roles: Vec<(&'static str, Value, Tags)>,
    /// KMS keys (in REGION) with their key policies.
    keys: Vec<(&'static str, Value)>,
}

#[derive(Clone, Copy, Debug)]
enum Request {
    /// ListObjectsV2 (authorized as s3:ListBucket), through the secure or the insecure endpoint.
    ListObjects {
        bucket: Bucket,
        prefix: Option<&'static str>,
        insecure: bool,
    },
    HeadBucket(Bucket),
    GetBucketLocation(Bucket),
    /// iam:GetRole on one of the setup's roles.
    GetRole(&'static str),
    /// sts:AssumeRole of one of the setup's roles.
    AssumeRole {
        role: &'static str,
        external_id: Option<&'static str>,
    },
    /// sts:AssumeRoleWithWebIdentity of one of the setup's roles, with a TokenRequest token of
    /// ServiceAccount `sa` (of the test's namespace) for `audience`: unsigned, the token is the
    /// credential (the probe's caller is ignored).
    WebIdentity {
        role: &'static str,
        sa: &'static str,
        audience: &'static str,
    },
    /// kms:DescribeKey of one of the setup's keys.
    DescribeKey(&'static str),
    /// PutObject with SSE-KMS under one of the setup's keys: S3 calls kms:GenerateDataKey on the
    /// caller's behalf, with the object's ARN as encryption context (no bucket key).
    PutObjectKms {
        bucket: Bucket,
        key: &'static str,
    },
}

impl Request {
    /// The IAM action AWS authorizes the request with.
    fn iam_action(&self) -> &'static str {
        match self {
            Request::ListObjects { .. } | Request::HeadBucket(_) => "s3:ListBucket",
            Request::GetBucketLocation(_) => "s3:GetBucketLocation",
            Request::GetRole(_) => "iam:GetRole",
            Request::AssumeRole { .. } => "sts:AssumeRole",
            Request::WebIdentity { .. } => "sts:AssumeRoleWithWebIdentity",
            Request::DescribeKey(_) => "kms:DescribeKey",
            Request::PutObjectKms { .. } => "kms:GenerateDataKey",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Allowed,
    Denied,
}

struct Probe {
    by: &'static str,
    request: Request,
    expect: Expect,
}

struct Behaviour {
    name: &'static str,
    doc: &'static str,
    setup: fn(&Names) -> Setup,
    probes: Vec<Probe>,
}

fn probe(by: &'static str, request: Request, expect: Expect) -> Probe {
    Probe { by, request, expect }
}

fn list(bucket: Bucket) -> Request {
    Request::ListObjects {
        bucket,
        prefix: None,
        insecure: false,
    }
}

fn policy(statements: Value) -> Value {
    json!({"Version": "2012-10-17", "Statement": statements})
}

fn allow(actions: Value, resource: Value) -> Value {
    policy(json!([{"Effect": "Allow", "Action": actions, "Resource": resource}]))
}

/// The documented behaviours, each with the probes that show it.
fn behaviours() -> Vec<Behaviour> {
    use Expect::{Allowed, Denied};
    vec![
        Behaviour {
            name: "an explicit deny in an identity policy overrides an allow",
            doc: "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_AccessPolicyLanguage_Interplay.html",
            setup: |n| Setup {
                callers: vec![
                    (
                        "allowed",
                        Caller::User(vec![allow(
                            json!("s3:ListBucket"),
                            json!(n.bucket_arn(Bucket::Own)),
                        )]),
                    ),
                    (
                        "denied",
                        Caller::User(vec![policy(json!([
                        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": n.bucket_arn(Bucket::Own)},
                        {"Effect": "Deny", "Action": "s3:ListBucket", "Resource": n.bucket_arn(Bucket::Own)}]))]),
                    ),
                ],
                ..Default::default()
            },
            probes: vec![
                probe("allowed", list(Bucket::Own), Allowed),
                probe("denied", list(Bucket::Own), Denied),
            ],
        },
        Behaviour {
            name: "an explicit deny in a bucket policy overrides the identity policy's allow",
            doc: "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_policy-eval-basics.html",
            setup: |n| Setup {
                callers: vec![
                    (
                        "named",
                        Caller::User(vec![allow(
                            json!("s3:ListBucket"),
                            json!(n.bucket_arn(Bucket::Own)),
                        )]),
                    ),
                    (
                        "unnamed",
                        Caller::User(vec![allow(
                            json!("s3:ListBucket"),
                            json!(n.bucket_arn(Bucket::Own)),
                        )]),
                    ),
                ],
                bucket_policy: Some(policy(
                    json!([{"Effect": "Deny", "Principal": {"AWS": n.user_arn("named")},
                    "Action": "s3:ListBucket", "Resource": n.bucket_arn(Bucket::Own)}]),
                )),
                ..Default::default()
            },
            probes: vec![
                probe("named", list(Bucket::Own), Denied),
                probe("unnamed", list(Bucket::Own), Allowed),
            ],
        },
        Behaviour {
            name: "a permissions boundary intersects with the identity policy: each must allow",
            doc: "https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html",
            setup: |n| {
                let both = json!(["s3:GetBucketLocation", "s3:ListBucket"]);
                let bucket = json!(n.bucket_arn(Bucket::Own));
                Setup {
                    callers: vec![
                        (
                            "narrow-boundary",
                            Caller::BoundedRole {
                                policies: vec![allow(both.clone(), bucket.clone())],
                                boundary: allow(json!("s3:GetBucketLocation"), bucket.clone()),
                            },
                        ),
                        (
                            "narrow-identity",
                            Caller::BoundedRole {
                                policies: vec![allow(json!("s3:GetBucketLocation"), bucket.clone())],
                                boundary: allow(both, bucket),
                            },
                        ),
                    ],
                    ..Default::default()
                }
            },
            probes: vec![
                probe(
                    "narrow-boundary",
                    Request::GetBucketLocation(Bucket::Own),
                    Allowed,
                ),
                probe("narrow-boundary", list(Bucket::Own), Denied),
                probe(
                    "narrow-identity",
                    Request::GetBucketLocation(Bucket::Own),
                    Allowed,
                ),
                probe("narrow-identity", list(Bucket::Own), Denied),
            ],
        },
        Behaviour {
            name: "within one account, a bucket policy naming the user is enough without an identity policy",
            doc: "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_policy-eval-basics.html",
            setup: |n| Setup {
                callers: vec![("named", Caller::User(vec![])), ("unnamed", Caller::User(vec![]))],
                bucket_policy: Some(policy(
                    json!([{"Effect": "Allow", "Principal": {"AWS": n.user_arn("named")},
                    "Action": "s3:ListBucket", "Resource": n.bucket_arn(Bucket::Own)}]),
                )),
                ..Default::default()
            },
            probes: vec![
                probe("named", list(Bucket::Own), Allowed),
                probe("unnamed", list(Bucket::Own), Denied),
            ],
        },
        Behaviour {
            name: "a permissions boundary limits a bucket policy that names the role, not one that names the role session",
            doc: "https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html",
            setup: |n| {
                let bounded = || Caller::BoundedRole {
                    policies: vec![],
                    boundary: allow(json!("s3:GetBucketLocation"), json!(n.bucket_arn(Bucket::Own))),
                };
                Setup {
                    callers: vec![("role-named", bounded()), ("session-named", bounded())],
                    bucket_policy: Some(policy(json!([{"Effect": "Allow",
                        "Principal": {"AWS": [n.role_arn("role-named"), n.session_arn("session-named")]},
                        "Action": "s3:ListBucket", "Resource": n.bucket_arn(Bucket::Own)}]))),
                    ..Default::default()
                }
            },
            probes: vec![
                probe("role-named", list(Bucket::Own), Denied),
                probe("session-named", list(Bucket::Own), Allowed),
            ],
        },
        Behaviour {
            name: "a missing key does not match Bool, and matches BoolIfExists (aws:MultiFactorAuthPresent with long-term keys)",
            doc: "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-multifactorauthpresent",
            setup: |n| {
                let deny_without_mfa = |operator: &str| {
                    policy(json!([
                        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": n.bucket_arn(Bucket::Own)},
                        {"Effect": "Deny", "Action": "s3:ListBucket", "Resource": n.bucket_arn(Bucket::Own),
                         "Condition": {operator: {"aws:MultiFactorAuthPresent": "false"}}}]))
                };
                Setup {
                    callers: vec![
                        ("bool", Caller::User(vec![deny_without_mfa("Bool")])),
                        (
                            "bool-if-exists",
                            Caller::User(vec![deny_without_mfa("BoolIfExists")]),
                        ),
                    ],
                    ..Default::default()
                }
            },
            probes: vec![
                probe("bool", list(Bucket::Own), Allowed),
                probe("bool-if-exists", list(Bucket::Own), Denied),
            ],
        },
        Behaviour {
            name: "a missing key does not match StringEquals, and matches StringEqualsIfExists (aws:PrincipalTag of an untagged user)",
            doc: "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html#Conditions_IfExists",
            setup: |n| {
                let allow_team = |operator: &str| {
                    policy(
                        json!([{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": n.bucket_arn(Bucket::Own),
                        "Condition": {operator: {"aws:PrincipalTag/team": "analytics"}}}]),
                    )
                };
                Setup {
                    callers: vec![
                        ("string-equals", Caller::User(vec![allow_team("StringEquals")])),
                        (
                            "string-equals-if-exists",
                            Caller::User(vec![allow_team("StringEqualsIfExists")]),
                        ),
                    ],
                    ..Default::default()
                }
            },
            probes: vec![
                probe("string-equals", list(Bucket::Own), Denied),
                probe("string-equals-if-exists", list(Bucket::Own), Allowed),
            ],
        },
        Behaviour {
            name: "HeadBucket is authorized by s3:ListBucket",
            doc: "https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadBucket.html",
            setup: |n| Setup {
                callers: vec![
                    (
                        "list-bucket",
                        Caller::User(vec![allow(
                            json!("s3:ListBucket"),
                            json!(n.bucket_arn(Bucket::Own)),
                        )]),
                    ),
                    (
                        "location-only",
                        Caller::User(vec![allow(
                            json!("s3:GetBucketLocation"),
                            json!(n.bucket_arn(Bucket::Own)),
                        )]),
                    ),
                ],
                ..Default::default()
            },
            probes: vec![
                probe("list-bucket", Request::HeadBucket(Bucket::Own), Allowed),
                probe("location-only", Request::GetBucketLocation(Bucket::Own), Allowed),
                probe("location-only", Request::HeadBucket(Bucket::Own), Denied),
            ],
        },
        Behaviour {
            name: "cross-account access needs both the caller's identity policy and the bucket policy",
            doc: "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html",
            setup: |n| Setup {
                callers: vec![
                    (
                        "both",
                        Caller::SecondAccountUser(vec![allow(
                            json!("s3:ListBucket"),
                            json!(n.bucket_arn(Bucket::Own)),
                        )]),
                    ),
                    (
                        "identity-only",
                        Caller::SecondAccountUser(vec![allow(
                            json!("s3:ListBucket"),
                            json!(n.bucket_arn(Bucket::Other)),
                        )]),
                    ),
                    (
                        "bucket-policy-only",
                        Caller::SecondAccountUser(vec![allow(
                            json!("s3:GetBucketLocation"),
                            json!(n.bucket_arn(Bucket::Own)),
                        )]),
                    ),
                ],
                bucket_policy: Some(policy(json!([{"Effect": "Allow",
                    "Principal": {"AWS": [n.second_user_arn("both"), n.second_user_arn("bucket-policy-only")]},
                    "Action": "s3:ListBucket", "Resource": n.bucket_arn(Bucket::Own)}]))),
                ..Default::default()
            },
            probes: vec![
                probe("both", list(Bucket::Own), Allowed),
                probe("identity-only", list(Bucket::Other), Denied),
                probe("bucket-policy-only", list(Bucket::Own), Denied),
            ],
        },
        Behaviour {
            name: "a trust policy conditioned on sts:ExternalId and aws:PrincipalArn admits only that principal with that ID",
            doc: "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_create_for-user_externalid.html",
            setup: |n| {
                let may_assume = allow(json!("sts:AssumeRole"), json!(n.role_arn("vendor")));
                Setup {
                    callers: vec![
                        ("trusted", Caller::User(vec![may_assume.clone()])),
                        ("other", Caller::User(vec![may_assume])),
                    ],
                    roles: vec![(
                        "vendor",
                        policy(json!([{"Effect": "Allow",
                        "Principal": {"AWS": format!("arn:aws:iam::{}:root", n.account)},
                        "Action": "sts:AssumeRole",
                        "Condition": {"StringEquals": {"sts:ExternalId": "ext-7f3a"},
                                      "ArnEquals": {"aws:PrincipalArn": n.user_arn("trusted")}}}])),
                        vec![],
                    )],
                    ..Default::default()
                }
            },
            probes: vec![
                probe(
                    "trusted",
                    Request::AssumeRole {
                        role: "vendor",
                        external_id: Some("ext-7f3a"),
                    },
                    Allowed,
                ),
                probe(
                    "trusted",
                    Request::AssumeRole {
                        role: "vendor",
                        external_id: Some("ext-0000"),
                    },
                    Denied,
                ),
                probe(
                    "trusted",
                    Request::AssumeRole {
                        role: "vendor",
                        external_id: None,
                    },
                    Denied,
                ),
                probe(
                    "other",
                    Request::AssumeRole {
                        role: "vendor",
                        external_id: Some("ext-7f3a"),
                    },
                    Denied,
                ),
            ],
        },
        Behaviour {
            name: "a role's trust policy must allow the caller: an identity policy alone does not, even in the same account",
            doc: "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_policy-eval-basics.html",
            setup: |n| Setup {
                callers: vec![
                    ("named", Caller::User(vec![])),
                    (
                        "unnamed",
                        Caller::User(vec![allow(json!("sts:AssumeRole"), json!(n.role_arn("guarded")))]),
                    ),
                ],
                roles: vec![(
                    "guarded",
                    policy(
                        json!([{"Effect": "Allow", "Principal": {"AWS": n.user_arn("named")},
                    "Action": "sts:AssumeRole"}]),
                    ),
                    vec![],
                )],
                ..Default::default()
            },
            probes: vec![
                probe(
                    "named",
                    Request::AssumeRole {
                        role: "guarded",
                        external_id: None,
                    },
                    Allowed,
                ),
                probe(
                    "unnamed",
                    Request::AssumeRole {
                        role: "guarded",
                        external_id: None,
                    },
                    Denied,
                ),
            ],
        },
        Behaviour {
            name: "a web-identity trust policy with StringEquals on <issuer>:sub and <issuer>:aud",
            doc: "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_iam-condition-keys.html#condition-keys-wif",
            setup: |n| {
                let trust = |audience: &str| {
                    policy(
                        json!([{"Effect": "Allow", "Principal": {"Federated": n.provider_arn},
                        "Action": "sts:AssumeRoleWithWebIdentity",
                        "Condition": {"StringEquals": {
                            format!("{}:sub", n.issuer): format!("system:serviceaccount:{}:workload", n.ns),
                            format!("{}:aud", n.issuer): audience}}}]),
                    )
                };
                Setup {
                    roles: vec![
                        ("irsa", trust("sts.amazonaws.com"), vec![]),
                        ("other-audience", trust("bucketwire.io/other-audience"), vec![]),
                    ],
                    ..Default::default()
                }
            },
            probes: vec![
                probe(
                    "-",
                    Request::WebIdentity {
                        role: "irsa",
                        sa: "workload",
                        audience: "sts.amazonaws.com",
                    },
                    Allowed,
                ),
                probe(
                    "-",
                    Request::WebIdentity {
                        role: "irsa",
                        sa: "neighbour",
                        audience: "sts.amazonaws.com",
                    },
                    Denied,
                ),
                probe(
                    "-",
                    Request::WebIdentity {
                        role: "other-audience",
                        sa: "workload",
                        audience: "sts.amazonaws.com",
                    },
                    Denied,
                ),
            ],
        },
        Behaviour {
            name: "a bucket policy denying aws:SecureTransport false refuses plain HTTP",
            doc: "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-securetransport",
            setup: |n| Setup {
                callers: vec![(
                    "user",
                    Caller::User(vec![allow(
                        json!("s3:ListBucket"),
                        json!(n.bucket_arn(Bucket::Own)),
                    )]),
                )],
                bucket_policy: Some(policy(
                    json!([{"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                    "Resource": [n.bucket_arn(Bucket::Own), format!("{}/*", n.bucket_arn(Bucket::Own))],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]),
                )),
                ..Default::default()
            },
            probes: vec![
                probe("user", list(Bucket::Own), Allowed),
                probe(
                    "user",
                    Request::ListObjects {
                        bucket: Bucket::Own,
                        prefix: None,
                        insecure: true,
                    },
                    Denied,
                ),
            ],
        },
        Behaviour {
            name: "NotAction: an Allow of every action but the listed ones",
            doc: "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notaction.html",
            setup: |n| Setup {
                callers: vec![(
                    "user",
                    Caller::User(vec![policy(json!([{"Effect": "Allow",
                    "NotAction": "s3:ListBucket", "Resource": n.bucket_arn(Bucket::Own)}]))]),
                )],
                ..Default::default()
            },
            probes: vec![
                probe("user", Request::GetBucketLocation(Bucket::Own), Allowed),
                probe("user", list(Bucket::Own), Denied),
            ],
        },
        Behaviour {
            name: "NotResource: a Deny of every resource but the listed ones",
            doc: "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notresource.html",
            setup: |n| Setup {
                callers: vec![(
                    "user",
                    Caller::User(vec![policy(json!([
                    {"Effect": "Allow", "Action": "s3:ListBucket",
                     "Resource": [n.bucket_arn(Bucket::Own), n.bucket_arn(Bucket::Other)]},
                    {"Effect": "Deny", "Action": "s3:ListBucket", "NotResource": n.bucket_arn(Bucket::Own)}]))]),
                )],
                ..Default::default()
            },
            probes: vec![
                probe("user", list(Bucket::Own), Allowed),
                probe("user", list(Bucket::Other), Denied),
            ],
        },
        Behaviour {
            name: "aws:ResourceTag on IAM roles",
            doc: "https://docs.aws.amazon.com/IAM/latest/UserGuide/access_iam-tags.html",
            setup: |n| {
                let trust = policy(
                    json!([{"Effect": "Allow", "Principal": {"AWS": n.admin_arn}, "Action": "sts:AssumeRole"}]),
                );
                Setup {
                    callers: vec![(
                        "user",
                        Caller::User(vec![policy(json!([{"Effect": "Allow", "Action": "iam:GetRole",
                        "Resource": format!("arn:aws:iam::{}:role/{}-*", n.account, n.prefix),
                        "Condition": {"StringEquals": {"aws:ResourceTag/team": "analytics"}}}]))]),
                    )],
                    roles: vec![
                        ("analytics", trust.clone(), vec![("team", "analytics")]),
                        ("finance", trust, vec![("team", "finance")]),
                    ],
                    ..Default::default()
                }
            },
            probes: vec![
                probe("user", Request::GetRole("analytics"), Allowed),
                probe("user", Request::GetRole("finance"), Denied),
            ],
        },
        Behaviour {
            name: "s3:prefix limits ListBucket to the prefixes a policy names",
            doc: "https://docs.aws.amazon.com/AmazonS3/latest/userguide/amazon-s3-policy-keys.html",
            setup: |n| Setup {
                callers: vec![(
                    "user",
                    Caller::User(vec![policy(
                        json!([{"Effect": "Allow", "Action": "s3:ListBucket",
                    "Resource": n.bucket_arn(Bucket::Own),
                    "Condition": {"StringLike": {"s3:prefix": "home/alice/*"}}}]),
                    )]),
                )],
                ..Default::default()
            },
            probes: vec![
                probe(
                    "user",
                    Request::ListObjects {
                        bucket: Bucket::Own,
                        prefix: Some("home/alice/"),
                        insecure: false,
                    },
                    Allowed,
                ),
                probe(
                    "user",
                    Request::ListObjects {
                        bucket: Bucket::Own,
                        prefix: Some("home/bob/"),
                        insecure: false,
                    },
                    Denied,
                ),
            ],
        },
        Behaviour {
            name: "an IAM policy grants nothing on a KMS key whose key policy does not enable IAM policies",
            doc: "https://docs.aws.amazon.com/kms/latest/developerguide/key-policies.html",
            setup: |n| Setup {
                callers: vec![(
                    "user",
                    Caller::User(vec![allow(
                        json!("kms:DescribeKey"),
                        json!(format!("arn:aws:kms:{REGION}:{}:key/*", n.account)),
                    )]),
                )],
                keys: vec![
                    (
                        "iam-enabled",
                        policy(json!([{"Effect": "Allow",
                        "Principal": {"AWS": format!("arn:aws:iam::{}:root", n.account)}, "Action": "kms:*", "Resource": "*"}])),
                    ),
                    (
                        "admin-only",
                        policy(json!([{"Effect": "Allow",
                        "Principal": {"AWS": n.admin_arn}, "Action": "kms:*", "Resource": "*"}])),
                    ),
                ],
                ..Default::default()
            },
            probes: vec![
                probe("user", Request::DescribeKey("iam-enabled"), Allowed),
                probe("user", Request::DescribeKey("admin-only"), Denied),
            ],
        },
        Behaviour {
            name: "kms:EncryptionContext:aws:s3:arn is the ARN of what S3 encrypts for the caller",
            doc: "https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html#encryption-context",
            setup: |n| Setup {
                callers: vec![(
                    "user",
                    Caller::User(vec![policy(json!([
                    {"Effect": "Allow", "Action": "s3:PutObject",
                     "Resource": [format!("{}/*", n.bucket_arn(Bucket::Own)), format!("{}/*", n.bucket_arn(Bucket::Other))]},
                    {"Effect": "Allow", "Action": "kms:GenerateDataKey",
                     "Resource": format!("arn:aws:kms:{REGION}:{}:key/*", n.account),
                     "Condition": {"StringEquals": {"kms:ViaService": format!("s3.{REGION}.amazonaws.com")},
                                   "StringLike": {"kms:EncryptionContext:aws:s3:arn": format!("{}/*", n.bucket_arn(Bucket::Own))}}}]))]),
                )],
                keys: vec![(
                    "s3",
                    policy(json!([{"Effect": "Allow",
                    "Principal": {"AWS": format!("arn:aws:iam::{}:root", n.account)}, "Action": "kms:*", "Resource": "*"}])),
                )],
                ..Default::default()
            },
            probes: vec![
                probe(
                    "user",
                    Request::PutObjectKms {
                        bucket: Bucket::Own,
                        key: "s3",
                    },
                    Allowed,
                ),
                probe(
                    "user",
                    Request::PutObjectKms {
                        bucket: Bucket::Other,
                        key: "s3",
                    },
                    Denied,
                ),
            ],
        },
    ]
}

/// One probe's result, as reported.
#[derive(Debug, serde::Serialize)]
struct Row {
    behaviour: &'static str,
    doc: &'static str,
    by: &'static str,
    request: String,
    expected: String,
    got: String,
    /// The simulator's decision for the probe's IAM action, from the request log.
    decided: String,
    ok: bool,
}

/// Everything a behaviour created that its probes use.
struct Built {
    names: Names,
    credentials: BTreeMap<&'static str, Credentials>,
    keys: BTreeMap<&'static str, String>,
}

async fn build(bed: &TestBed, names: Names, setup: Setup) -> Built {
    let admin = SignedAs::new(bed, aws::admin_credentials(bed), REGION).await;
    let (_, second_admin) = aws::second_account(bed);
    let (s3, iam) = (admin.s3(), admin.iam());
    for which in [Bucket::Own, Bucket::Other] {
        aws::create_bucket(&s3, &names.bucket(which), REGION).await;
    }
    if let Some(policy) = &setup.bucket_policy {
        s3.put_bucket_policy()
            .bucket(names.bucket(Bucket::Own))
            .policy(policy.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("bucket policy {policy}: {e:?}"));
    }
    for (label, trust, tags) in &setup.roles {
        let tags = tags
            .iter()
            .map(|(k, v)| {
                aws_sdk_iam::types::Tag::builder()
                    .key(*k)
                    .value(*v)
                    .build()
                    .expect("tag")
            })
            .collect::<Vec<_>>();
        iam.create_role()
            .role_name(names.user(label))
            .assume_role_policy_document(trust.to_string())
            .set_tags(Some(tags))
            .send()
            .await
            .unwrap_or_else(|e| panic!("role {label}: {e:?}"));
    }
    let mut keys = BTreeMap::new();
    for (label, key_policy) in &setup.keys {
        let key = admin
            .kms()
            .create_key()
            .description(format!("{} {label}", names.prefix))
            .policy(key_policy.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("key {label}: {e:?}"));
        let arn = key
            .key_metadata()
            .and_then(|m| m.arn())
            .expect("key ARN")
            .to_string();
        keys.insert(*label, arn);
    }
    let mut credentials = BTreeMap::new();
    for (label, caller) in setup.callers {
        let name = names.user(label);
        let creds = match caller {
            Caller::User(policies) => aws::create_user(&iam, &name, &policies).await.1,
            Caller::SecondAccountUser(policies) => {
                let second = SignedAs::new(bed, second_admin.clone(), REGION).await;
                aws::create_user(&second.iam(), &name, &policies).await.1
            }
            Caller::BoundedRole { policies, boundary } => {
                let boundary_arn = iam
                    .create_policy()
                    .policy_name(format!("{name}-boundary"))
                    .policy_document(boundary.to_string())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("boundary of {label}: {e:?}"))
                    .policy
                    .and_then(|p| p.arn)
                    .expect("boundary ARN");
                let trust = policy(
                    json!([{"Effect": "Allow", "Principal": {"AWS": names.admin_arn}, "Action": "sts:AssumeRole"}]),
                );
                iam.create_role()
                    .role_name(&name)
                    .assume_role_policy_document(trust.to_string())
                    .permissions_boundary(&boundary_arn)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("role {label}: {e:?}"));
                for (i, p) in policies.iter().enumerate() {
                    iam.put_role_policy()
                        .role_name(&name)
                        .policy_name(format!("p{i}"))
                        .policy_document(p.to_string())
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("policy of role {label}: {e:?}"));
                }
                let assumed = admin
                    .sts()
                    .assume_role()
                    .role_arn(names.role_arn(label))
                    .role_session_name(SESSION)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("the administrator assumes {label}: {e:?}"));
                aws::sts_credentials(assumed.credentials.expect("credentials"))
            }
        };
        credentials.insert(label, creds);
    }
    Built {
        names,
        credentials,
        keys,
    }
}

async fn run_probe(bed: &TestBed, client: &kube::Client, built: &Built, probe: &Probe) -> Outcome {
    let names = &built.names;
    if let Request::WebIdentity { role, sa, audience } = probe.request {
        let token = aws::service_account_token(client, &names.ns, sa, Some(audience)).await;
        return match aws::assume_role_with_web_identity(bed, &names.role_arn(role), &token).await {
            Ok(_) => Outcome::Allowed,
            Err(outcome) => outcome,
        };
    }
    let creds = built
        .credentials
        .get(probe.by)
        .unwrap_or_else(|| panic!("no caller {}", probe.by))
        .clone();
    let insecure = matches!(probe.request, Request::ListObjects { insecure: true, .. });
    let signed = if insecure {
        SignedAs::insecure(bed, creds, REGION).await
    } else {
        SignedAs::new(bed, creds, REGION).await
    };
    match probe.request {
        Request::ListObjects { bucket, prefix, .. } => aws::outcome(
            signed
                .s3()
                .list_objects_v2()
                .bucket(names.bucket(bucket))
                .set_prefix(prefix.map(str::to_string))
                .send()
                .await,
        ),
        Request::HeadBucket(bucket) => aws::head_outcome(
            signed
                .s3()
                .head_bucket()
                .bucket(names.bucket(bucket))
                .send()
                .await,
        ),
        Request::GetBucketLocation(bucket) => aws::outcome(
            signed
                .s3()
                .get_bucket_location()
                .bucket(names.bucket(bucket))
                .send()
                .await,
        ),
        Request::GetRole(role) => {
            aws::outcome(signed.iam().get_role().role_name(names.user(role)).send().await)
        }
        Request::AssumeRole { role, external_id } => aws::outcome(
            signed
                .sts()
                .assume_role()
                .role_arn(names.role_arn(role))
                .role_session_name(SESSION)
                .set_external_id(external_id.map(str::to_string))
                .send()
                .await,
        ),
        Request::DescribeKey(key) => aws::outcome(
            signed
                .kms()
                .describe_key()
                .key_id(built.keys.get(key).expect("key"))
                .send()
                .await,
        ),
        Request::PutObjectKms { bucket, key } => aws::outcome(
            signed
                .s3()
                .put_object()
                .bucket(names.bucket(bucket))
                .key("files/encrypted")
                .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x"))
                .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                .ssekms_key_id(built.keys.get(key).expect("key"))
                .send()
                .await,
        ),
        Request::WebIdentity { .. } => unreachable!("handled above"),
    }
}

/// The request-log lines of one probe: those signed by its caller since `mark` (each caller's
/// key is its own), or for a web-identity probe (unsigned) those deciding on its role.
fn logged_for(bed: &TestBed, mark: usize, built: &Built, probe: &Probe) -> Vec<aws::EmulatorRequest> {
    let lines = aws::emulator_requests_since(bed, mark);
    if let Request::WebIdentity { role, .. } = probe.request {
        let role_arn = built.names.role_arn(role);
        return lines
            .into_iter()
            .filter(|l| {
                l.action == "AssumeRoleWithWebIdentity" && l.decisions.iter().any(|d| d.resource == role_arn)
            })
            .collect();
    }
    let key = built.credentials[probe.by].access_key_id().to_string();
    lines.into_iter().filter(|l| l.access_key == key).collect()
}

fn matches(expect: Expect, got: &Outcome) -> bool {
    match expect {
        Expect::Allowed => *got == Outcome::Allowed,
        Expect::Denied => got.is_denied(),
    }
}

/// Runs one behaviour: its setup, then each probe in order.
async fn run_behaviour(
    bed: Arc<TestBed>,
    client: kube::Client,
    ns: String,
    index: usize,
    behaviour: Behaviour,
) -> Vec<Row> {
    let (second_account, _) = aws::second_account(&bed);
    let admin = SignedAs::new(&bed, aws::admin_credentials(&bed), REGION).await;
    let admin_arn = admin
        .sts()
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity")
        .arn
        .expect("arn");
    let names = Names {
        prefix: format!("{ns}-b{index}"),
        ns: ns.clone(),
        account: bed.var("BUCKETWIRE_TESTBED_ACCOUNT_ID").to_string(),
        second_account,
        admin_arn,
        issuer: bed
            .var("BUCKETWIRE_TESTBED_OIDC_ISSUER")
            .trim_start_matches("https://")
            .to_string(),
        provider_arn: bed.var("BUCKETWIRE_TESTBED_OIDC_PROVIDER_ARN").to_string(),
    };
    let setup = (behaviour.setup)(&names);
    let built = build(&bed, names, setup).await;
    let mut rows = Vec::new();
    for probe in &behaviour.probes {
        let mark = aws::request_log_mark(&bed);
        let got = run_probe(&bed, &client, &built, probe).await;
        let decided = aws::simulator_decided(
            &logged_for(&bed, mark, &built, probe),
            probe.request.iam_action(),
            probe.expect == Expect::Denied,
        );
        rows.push(Row {
            behaviour: behaviour.name,
            doc: behaviour.doc,
            by: probe.by,
            request: format!("{:?}", probe.request),
            expected: format!("{:?}", probe.expect),
            ok: matches(probe.expect, &got) && decided.is_ok(),
            got: format!("{got:?}"),
            decided: decided.unwrap_or_else(|e| e),
        });
    }
    rows
}

#[tokio::test]
async fn the_test_bed_decides_as_the_aws_documentation_says() {
    let (bed, client, ns) = setup("iamsem").await;
    let bed = Arc::new(bed);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    for sa in ["workload", "neighbour"] {
        let object: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": sa}})).expect("sa");
        accounts
            .create(&PostParams::default(), &object)
            .await
            .expect("ServiceAccount");
    }

    // Each behaviour in its own task: a setup that panics (say, a variable missing from the test
    // bed's environment) is reported as that behaviour's failure, and the others still run.
    let table = behaviours();
    let mut tasks = Vec::new();
    let mut expected = Vec::new();
    for (index, behaviour) in table.into_iter().enumerate() {
        expected.push((behaviour.name, behaviour.doc, behaviour.probes.len()));
        tasks.push(tokio::spawn(run_behaviour(
            bed.clone(),
            client.clone(),
            ns.clone(),
            index,
            behaviour,
        )));
    }
    let mut rows = Vec::new();
    let mut broken = Vec::new();
    for ((name, doc, probes), task) in expected.iter().zip(tasks) {
        match task.await {
            Ok(done) => rows.extend(done),
            Err(err) => broken.push(format!("{name} ({doc}, {probes} probes): setup failed: {err}")),
        }
    }

    let report = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} | by {} | {} | expected {} | got {} | decided: {}",
                if r.ok { "ok  " } else { "FAIL" },
                r.behaviour,
                r.by,
                r.request,
                r.expected,
                r.got,
                r.decided
            )
        })
        .chain(broken.iter().map(|b| format!("FAIL {b}")))
        .collect::<Vec<_>>()
        .join("\n");
    let failed = rows.iter().filter(|r| !r.ok).count() + broken.len();
    assert_eq!(
        failed, 0,
        "the test bed decided otherwise than documented:\n{report}"
    );

    let denied = rows.iter().filter(|r| r.expected == "Denied").count();
    results::record(
        "iam_semantics",
        &json!({
            "test": "tests/iam_semantics.rs::the_test_bed_decides_as_the_aws_documentation_says",
            "behaviours": expected.len(),
            "probes": rows.len(),
            "allowed_as_documented": rows.len() - denied,
            "denied_as_documented": denied,
            "rows": rows,
        }),
    );
}

/// Not a documented behaviour but a choice of the test bed (tests/testbed/SIMULATOR.md, "the path
/// of a role that does not exist"): a request naming a role by name only (iam:GetRole) is
/// authorized on `role/<name>` when no such role exists, since nothing can tell its path. A
/// policy on a path therefore does not allow it (AccessDenied, not NoSuchEntity), and a policy
/// on the bare name does (then NoSuchEntity).
#[tokio::test]
async fn a_role_that_does_not_exist_is_authorized_without_a_path() {
    let (bed, _client, ns) = setup("iamsem-path").await;
    let account = bed.var("BUCKETWIRE_TESTBED_ACCOUNT_ID").to_string();
    let admin = SignedAs::new(&bed, aws::admin_credentials(&bed), REGION).await;
    let missing = format!("{ns}-missing");
    let get_role = |resource: String| json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:GetRole", "Resource": resource}]});
    let (_, on_path) = aws::create_user(
        &admin.iam(),
        &format!("{ns}-on-path"),
        &[get_role(format!("arn:aws:iam::{account}:role/{ns}/*"))],
    )
    .await;
    let (_, on_name) = aws::create_user(
        &admin.iam(),
        &format!("{ns}-on-name"),
        &[get_role(format!("arn:aws:iam::{account}:role/{ns}-*"))],
    )
    .await;
    let ask = |credentials: Credentials| {
        let bed = &bed;
        let missing = missing.clone();
        async move {
            SignedAs::new(bed, credentials, REGION)
                .await
                .iam()
                .get_role()
                .role_name(missing)
                .send()
                .await
        }
    };
    let denied = aws::outcome(ask(on_path).await);
    assert!(
        denied.is_denied(),
        "a policy on role/{ns}/* allowed GetRole of a missing role: {denied:?}"
    );
    match ask(on_name).await {
        Err(err) => {
            use aws_sdk_s3::error::ProvideErrorMetadata;
            assert_eq!(err.code(), Some("NoSuchEntity"), "{err:?}");
        }
        Ok(out) => panic!("a role that does not exist was found: {out:?}"),
    }
}
