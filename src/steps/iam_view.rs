//! Bulk drift detection for IAM. One paginated `GetAccountAuthorizationDetails` (roles and
//! local managed policies, 250 a page) says, for every role under bucketwire's path,
//! its trust policy, boundary, attached and inline policies and ownership tag, and for every
//! policy its default version's document. A no-op resync that finds its role and policy
//! unchanged in that view makes no IAM call of its own; one whose view shows drift, or that is
//! missing from it, falls back to the per-resource reads (and writes) of `steps::iam`.
//!
//! The view is a read-only shortcut: it never decides a write. It keeps a SHA-256 of each
//! document's canonical form (32 bytes), not the document's text.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_iam::types::EntityType;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::aws::AwsFailure;
use crate::aws::actions::{Call, Operation};
use crate::documents::{TAG_UID, canonical, parse_document};
use crate::error::Error;
use crate::steps::iam::{BoundaryChange, DesiredPolicy, DesiredRole, boundary_change};

/// Entities (roles and policies together) per page of GetAccountAuthorizationDetails, a
/// quarter of its largest. A page is the bulk read's whole transient memory: its body, the
/// buffers it arrived in and its parsed form are held at once; the first two were 3.8 MB for a
/// page of 1000 (bench/heap-profile-1000-windows.txt). At 10,000 integrations a view is 80 pages, 320
/// calls an hour at four views an hour: 0.03 per integration.
const PAGE_SIZE: i32 = 250;

type DocumentDigest = [u8; 32];

/// What a role looks like in the bulk view, kept to what `role_unchanged` compares: one digest
/// of the parts that must equal the desired ones exactly (ARN, trust, owner tag, attachments,
/// inline policies), and the boundary, which may differ (someone else's boundary, with none
/// configured, is theirs to keep). 48 bytes per role besides its name, where the view kept the
/// ARN, the owner tag and each attached ARN as strings of their own: at 10,000 integrations it
/// is one of the operator's largest per-integration states.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleView {
    exact: DocumentDigest,
    /// Shared between the roles that have the same one (usually every role has the
    /// operator's configured boundary, or none).
    pub boundary: Option<Arc<str>>,
}

/// Pure: the digest of a role's exactly-compared parts, as the view saw them or as desired.
/// JSON makes the encoding unambiguous (no field can run into the next).
fn role_digest(
    arn: &str,
    trust: Option<DocumentDigest>,
    uid_tag: Option<&str>,
    attached: &[&str],
    inline_policies: usize,
) -> DocumentDigest {
    let parts = serde_json::json!([arn, trust.map(|t| t.to_vec()), uid_tag, attached, inline_policies]);
    Sha256::digest(parts.to_string().as_bytes()).into()
}

/// What a customer-managed policy looks like in the bulk view: its default version's document.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyView {
    pub default_document: Option<DocumentDigest>,
}

/// The roles (by name) and policies (by ARN) under one path, as one bulk read saw them.
#[derive(Debug, Default)]
pub struct IamView {
    pub roles: HashMap<String, RoleView>,
    pub policies: HashMap<String, PolicyView>,
    /// The distinct boundaries the roles have, each held once.
    boundaries: HashSet<Arc<str>>,
    /// Pages read to build it (what it cost).
    pub pages: usize,
}

/// Pure: the digest of a document's canonical form (statement order, `Sid`s, one-element lists
/// do not matter, as for `documents_equivalent`).
pub fn digest(document: &Value) -> DocumentDigest {
    Sha256::digest(canonical(document).to_string().as_bytes()).into()
}

fn digest_text(text: Option<&str>) -> Option<DocumentDigest> {
    text.and_then(parse_document).map(|d| digest(&d))
}

impl IamView {
    /// Pure: adds one page of GetAccountAuthorizationDetails, keeping only what is under
    /// `path` (roles and policies elsewhere in the account are not bucketwire's business).
    pub fn add_page(
        &mut self,
        page: &aws_sdk_iam::operation::get_account_authorization_details::GetAccountAuthorizationDetailsOutput,
        path: &str,
    ) {
        self.pages += 1;
        for role in page.role_detail_list() {
            let (Some(name), Some(arn)) = (role.role_name(), role.arn()) else {
                continue;
            };
            if !role.path().unwrap_or("/").starts_with(path) {
                continue;
            }
            let attached: Vec<&str> = role
                .attached_managed_policies()
                .iter()
                .filter_map(|p| p.policy_arn())
                .collect();
            let uid_tag = role.tags().iter().find(|t| t.key() == TAG_UID).map(|t| t.value());
            let exact = role_digest(
                arn,
                digest_text(role.assume_role_policy_document()),
                uid_tag,
                &attached,
                role.role_policy_list().len(),
            );
            let boundary = role
                .permissions_boundary()
                .and_then(|b| b.permissions_boundary_arn())
                .map(|b| self.shared_boundary(b));
            self.roles.insert(name.to_string(), RoleView { exact, boundary });
        }
        for policy in page.policies() {
            let Some(arn) = policy.arn() else { continue };
            if !policy.path().unwrap_or("/").starts_with(path) {
                continue;
            }
            let default = policy
                .policy_version_list()
                .iter()
                .find(|v| v.is_default_version())
                .and_then(|v| v.document());
            self.policies.insert(
                arn.to_string(),
                PolicyView {
                    default_document: digest_text(default),
                },
            );
        }
    }

    fn shared_boundary(&mut self, arn: &str) -> Arc<str> {
        if let Some(shared) = self.boundaries.get(arn) {
            return shared.clone();
        }
        let shared: Arc<str> = arn.into();
        self.boundaries.insert(shared.clone());
        shared
    }

    /// Pure: whether the view shows the policy exactly as desired (then a resync reads nothing).
    pub fn policy_unchanged(&self, desired: &DesiredPolicy) -> bool {
        self.policies
            .get(&desired.arn)
            .and_then(|p| p.default_document)
            .is_some_and(|d| d == digest(&desired.document))
    }

    /// Pure: whether the view shows the role exactly as desired: the same ARN (so the same
    /// path), tagged as this integration's, the same trust, no boundary change to make, no
    /// inline policy, and only our policy attached. Anything else (or a role the view does not
    /// have) goes to the full reads.
    pub fn role_unchanged(&self, desired: &DesiredRole) -> Option<&RoleView> {
        let role = self.roles.get(&desired.name)?;
        let exact = role_digest(
            &desired.arn,
            Some(digest(&desired.trust)),
            Some(&desired.uid),
            &[&desired.policy_arn],
            0,
        );
        let unchanged = role.exact == exact
            && boundary_change(
                role.boundary.as_deref(),
                desired.permissions_boundary.as_deref(),
                desired.boundary_set_by_us.as_deref(),
            ) == BoundaryChange::None;
        unchanged.then_some(role)
    }
}

/// Reads every page: roles and local managed policies under `path`.
pub async fn read(iam: &aws_sdk_iam::Client, path: &str) -> Result<IamView, Error> {
    let mut view = IamView::default();
    let mut pages = iam
        .get_account_authorization_details()
        .filter(EntityType::Role)
        .filter(EntityType::LocalManagedPolicy)
        .max_items(PAGE_SIZE)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            Error::aws(
                Call::new(Operation::GetAccountAuthorizationDetails, "*"),
                AwsFailure::from_sdk(&e),
            )
        })?;
        view.add_page(&page, path);
    }
    Ok(view)
}

/// The operator's one bulk view, shared by every reconcile, read again when older than its
/// maximum age; one reconcile reads it while the others wait (single flight).
#[derive(Default)]
pub struct SharedView {
    /// When the last read was made, and the view it gave (`None`: it failed).
    last: Mutex<Option<(Instant, Option<Arc<IamView>>)>>,
}

impl SharedView {
    /// The view, read now if the last read is older than `max_age`. A failed read (a refusal:
    /// the operator's policy may leave the bulk read out) gives `None` until `max_age` has
    /// passed again, and callers read per resource meanwhile, as without it.
    pub async fn get(
        &self,
        iam: &aws_sdk_iam::Client,
        path: &str,
        max_age: Duration,
    ) -> Option<Arc<IamView>> {
        let mut last = self.last.lock().await;
        if let Some((taken, view)) = last.as_ref()
            && taken.elapsed() < max_age
        {
            return view.clone();
        }
        // The old view goes before the new one is read, so that two are not held at once (the
        // reconciles that still hold it let go of it as they finish).
        *last = None;
        let view = match read(iam, path).await {
            Ok(view) => {
                info!(
                    roles = view.roles.len(),
                    policies = view.policies.len(),
                    pages = view.pages,
                    "read IAM's bulk view (GetAccountAuthorizationDetails)"
                );
                Some(Arc::new(view))
            }
            Err(err) => {
                warn!(%err, "IAM's bulk view is unavailable; reading each role and policy instead");
                None
            }
        };
        *last = Some((Instant::now(), view.clone()));
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_iam::operation::get_account_authorization_details::GetAccountAuthorizationDetailsOutput;
    use aws_sdk_iam::types::{
        AttachedPermissionsBoundary, AttachedPolicy, ManagedPolicyDetail, PolicyDetail, PolicyVersion,
        RoleDetail, Tag,
    };
    use serde_json::json;
    use std::collections::BTreeMap;

    const POLICY: &str = "arn:aws:iam::123456789012:policy/bucketwire/bucketwire-p";
    const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::123456789012:oidc-provider/x"},"Action":"sts:AssumeRoleWithWebIdentity"}]}"#;
    const DOCUMENT: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":"arn:aws:s3:::b/*"}]}"#;

    fn desired_role() -> DesiredRole {
        DesiredRole {
            name: "bucketwire-r".into(),
            arn: "arn:aws:iam::123456789012:role/bucketwire/bucketwire-r".into(),
            path: "/bucketwire/".into(),
            description: String::new(),
            // The same document, statements written differently.
            trust: json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow",
                "Principal": {"Federated": ["arn:aws:iam::123456789012:oidc-provider/x"]},
                "Action": ["sts:AssumeRoleWithWebIdentity"]}}),
            permissions_boundary: None,
            boundary_set_by_us: None,
            policy_arn: POLICY.into(),
            tags: BTreeMap::new(),
            uid: "uid-1".into(),
        }
    }

    fn desired_policy() -> DesiredPolicy {
        DesiredPolicy {
            arn: POLICY.into(),
            name: "bucketwire-p".into(),
            path: "/bucketwire/".into(),
            description: String::new(),
            document: serde_json::from_str(DOCUMENT).expect("json"),
            tags: BTreeMap::new(),
            uid: "uid-1".into(),
        }
    }

    fn role(
        path: &str,
        edit: impl FnOnce(
            aws_sdk_iam::types::builders::RoleDetailBuilder,
        ) -> aws_sdk_iam::types::builders::RoleDetailBuilder,
    ) -> RoleDetail {
        let builder = RoleDetail::builder()
            .role_name("bucketwire-r")
            .arn("arn:aws:iam::123456789012:role/bucketwire/bucketwire-r")
            .path(path)
            // IAM answers with URL-encoded documents.
            .assume_role_policy_document(
                percent_encoding::utf8_percent_encode(TRUST, percent_encoding::NON_ALPHANUMERIC).to_string(),
            )
            .tags(Tag::builder().key(TAG_UID).value("uid-1").build().expect("tag"))
            .attached_managed_policies(AttachedPolicy::builder().policy_arn(POLICY).build());
        edit(builder).build()
    }

    fn page(roles: Vec<RoleDetail>, document: &str) -> GetAccountAuthorizationDetailsOutput {
        GetAccountAuthorizationDetailsOutput::builder()
            .set_role_detail_list(Some(roles))
            .policies(
                ManagedPolicyDetail::builder()
                    .arn(POLICY)
                    .path("/bucketwire/")
                    .policy_version_list(
                        PolicyVersion::builder()
                            .version_id("v1")
                            .document(DOCUMENT)
                            .is_default_version(false)
                            .build(),
                    )
                    .policy_version_list(
                        PolicyVersion::builder()
                            .version_id("v2")
                            .document(document)
                            .is_default_version(true)
                            .build(),
                    )
                    .build(),
            )
            .build()
    }

    fn view_of(roles: Vec<RoleDetail>, document: &str) -> IamView {
        let mut view = IamView::default();
        view.add_page(&page(roles, document), "/bucketwire/");
        view
    }

    #[test]
    fn an_unchanged_role_and_policy_are_seen_unchanged_whatever_the_documents_layout() {
        let view = view_of(vec![role("/bucketwire/", |b| b)], DOCUMENT);
        assert!(view.role_unchanged(&desired_role()).is_some());
        assert!(view.policy_unchanged(&desired_policy()));
        assert_eq!(view.pages, 1);
    }

    #[test]
    fn every_kind_of_drift_or_absence_sends_the_integration_to_the_full_reads() {
        let desired = desired_role();
        let cases: Vec<(&str, RoleDetail)> = vec![
            (
                "another trust",
                role("/bucketwire/", |b| b.assume_role_policy_document(DOCUMENT)),
            ),
            (
                "an inline policy",
                role("/bucketwire/", |b| {
                    b.role_policy_list(PolicyDetail::builder().policy_name("wide").build())
                }),
            ),
            (
                "a second attachment",
                role("/bucketwire/", |b| {
                    b.attached_managed_policies(
                        AttachedPolicy::builder()
                            .policy_arn("arn:aws:iam::aws:policy/AdministratorAccess")
                            .build(),
                    )
                }),
            ),
            (
                "another owner",
                role("/bucketwire/", |b| {
                    b.set_tags(Some(vec![
                        Tag::builder().key(TAG_UID).value("uid-2").build().expect("tag"),
                    ]))
                }),
            ),
            (
                "another ARN (a deeper path)",
                role("/bucketwire/", |b| {
                    b.arn("arn:aws:iam::123456789012:role/bucketwire/deeper/bucketwire-r")
                }),
            ),
            (
                "no attachment",
                role("/bucketwire/", |b| b.set_attached_managed_policies(Some(vec![]))),
            ),
        ];
        for (what, detail) in cases {
            let view = view_of(vec![detail], DOCUMENT);
            assert!(view.role_unchanged(&desired).is_none(), "{what}");
        }
        // Outside bucketwire's path: not in the view at all.
        assert!(view_of(vec![role("/other/", |b| b)], DOCUMENT).roles.is_empty());
        assert!(
            view_of(vec![], DOCUMENT).role_unchanged(&desired).is_none(),
            "missing"
        );
        // The policy's default version drifted (an older version matching does not count).
        let widened =
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
        assert!(!view_of(vec![], widened).policy_unchanged(&desired_policy()));
    }

    /// The view holds one of these per role: at 10,000 integrations each byte is 10 kB.
    #[test]
    fn a_role_in_the_view_is_a_digest_and_a_shared_boundary() {
        assert_eq!(std::mem::size_of::<RoleView>(), 48);
        let boundary = |b: aws_sdk_iam::types::builders::RoleDetailBuilder| {
            b.permissions_boundary(
                AttachedPermissionsBoundary::builder()
                    .permissions_boundary_arn("arn:aws:iam::123456789012:policy/boundary")
                    .build(),
            )
        };
        let mut view = IamView::default();
        let second = role("/bucketwire/", |b| boundary(b).role_name("bucketwire-s"));
        view.add_page(
            &page(vec![role("/bucketwire/", boundary), second], DOCUMENT),
            "/bucketwire/",
        );
        let [a, b] =
            ["bucketwire-r", "bucketwire-s"].map(|n| view.roles[n].boundary.clone().expect("boundary"));
        assert!(Arc::ptr_eq(&a, &b), "one copy of a boundary both roles have");
    }

    #[test]
    fn a_boundary_is_unchanged_only_when_it_is_the_one_configured() {
        let boundary = "arn:aws:iam::123456789012:policy/boundary";
        let with = role("/bucketwire/", |b| {
            b.permissions_boundary(
                AttachedPermissionsBoundary::builder()
                    .permissions_boundary_arn(boundary)
                    .build(),
            )
        });
        let view = view_of(vec![with], DOCUMENT);
        let mut desired = desired_role();
        desired.permissions_boundary = Some(boundary.into());
        assert!(view.role_unchanged(&desired).is_some());
        // Someone else's boundary with none configured is theirs to keep: no change either.
        desired.permissions_boundary = None;
        assert!(view.role_unchanged(&desired).is_some());
        // The one bucketwire set, no longer configured, is to be removed.
        desired.boundary_set_by_us = Some(boundary.into());
        assert!(view.role_unchanged(&desired).is_none());
    }
}
