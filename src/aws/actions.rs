//! Which IAM action AWS authorizes each API operation with, in one table.
//!
//! The SDK names operations (`PutBucketEncryption`), IAM policies name actions
//! (`s3:PutEncryptionConfiguration`), and the two differ more often than one would guess:
//! `HeadBucket` is authorized by `s3:ListBucket`, `ListObjectVersions` by
//! `s3:ListBucketVersions`, a `DeleteObject` with a version id by `s3:DeleteObjectVersion`. A
//! refusal is reported with the action (what the policy must grant) and the resource it was
//! refused on, so that the message says exactly what to add, and to which statement.
//!
//! Source: the Service Authorization Reference (actions, resources and condition keys for
//! Amazon S3, IAM, AWS STS, Amazon EKS and AWS KMS) and each API's own "Permissions" section.

use std::fmt;

/// An AWS API operation the operator calls, with its own credentials or as the workload it
/// validates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    // S3, bucket level.
    CreateBucket,
    DeleteBucket,
    HeadBucket,
    ListBuckets,
    GetBucketLocation,
    GetBucketTagging,
    PutBucketTagging,
    GetPublicAccessBlock,
    PutPublicAccessBlock,
    GetBucketOwnershipControls,
    PutBucketOwnershipControls,
    GetBucketEncryption,
    PutBucketEncryption,
    GetBucketPolicy,
    PutBucketPolicy,
    GetBucketVersioning,
    PutBucketVersioning,
    ListObjectVersions,
    ListObjectsV2,
    // S3, object level.
    PutObject,
    GetObject,
    DeleteObject,
    /// `DeleteObject` with a version id: another IAM action than without one.
    DeleteObjectVersion,
    // IAM.
    CreatePolicy,
    TagPolicy,
    GetPolicy,
    GetPolicyVersion,
    ListPolicyVersions,
    CreatePolicyVersion,
    DeletePolicyVersion,
    DeletePolicy,
    CreateRole,
    TagRole,
    GetRole,
    UpdateAssumeRolePolicy,
    PutRolePermissionsBoundary,
    DeleteRolePermissionsBoundary,
    ListAttachedRolePolicies,
    ListRolePolicies,
    DeleteRolePolicy,
    AttachRolePolicy,
    DetachRolePolicy,
    DeleteRole,
    GetOpenIDConnectProvider,
    /// The bulk read of every role and local managed policy (resource `*`: IAM has no
    /// resource-level permission for it).
    GetAccountAuthorizationDetails,
    // STS, EKS, KMS.
    GetCallerIdentity,
    AssumeRoleWithWebIdentity,
    DescribeCluster,
    DescribeKey,
    // S3 multipart uploads (the validation probe, as Milvus writes large files).
    CreateMultipartUpload,
    UploadPart,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListMultipartUploads,
    // EKS Pod Identity.
    CreatePodIdentityAssociation,
    ListPodIdentityAssociations,
    DescribePodIdentityAssociation,
    UpdatePodIdentityAssociation,
    DeletePodIdentityAssociation,
    TagEksResource,
    PassRole,
    AssumeRoleForPodIdentity,
}

/// Who makes a call: the operator with its own credentials (what
/// deploy/iam/operator-policy.json must grant), the workload's role during validation (what
/// the generated permission policy grants), or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    Operator,
    Workload,
    Both,
}

impl Operation {
    /// The table: (SDK operation, IAM action, who calls it). `None` as the action: AWS
    /// authorizes no action (GetCallerIdentity works even under an explicit deny, and
    /// AssumeRoleWithWebIdentity is decided by the role's trust policy, not by the caller's).
    const fn entry(self) -> (&'static str, Option<&'static str>, Caller) {
        use Caller::{Both as B, Operator as O, Workload as W};
        match self {
            Self::CreateBucket => ("CreateBucket", Some("s3:CreateBucket"), O),
            Self::DeleteBucket => ("DeleteBucket", Some("s3:DeleteBucket"), O),
            Self::HeadBucket => ("HeadBucket", Some("s3:ListBucket"), W),
            Self::ListBuckets => ("ListBuckets", Some("s3:ListAllMyBuckets"), O),
            Self::GetBucketLocation => ("GetBucketLocation", Some("s3:GetBucketLocation"), B),
            Self::GetBucketTagging => ("GetBucketTagging", Some("s3:GetBucketTagging"), O),
            Self::PutBucketTagging => ("PutBucketTagging", Some("s3:PutBucketTagging"), O),
            Self::GetPublicAccessBlock => ("GetPublicAccessBlock", Some("s3:GetBucketPublicAccessBlock"), O),
            Self::PutPublicAccessBlock => ("PutPublicAccessBlock", Some("s3:PutBucketPublicAccessBlock"), O),
            Self::GetBucketOwnershipControls => (
                "GetBucketOwnershipControls",
                Some("s3:GetBucketOwnershipControls"),
                O,
            ),
            Self::PutBucketOwnershipControls => (
                "PutBucketOwnershipControls",
                Some("s3:PutBucketOwnershipControls"),
                O,
            ),
            Self::GetBucketEncryption => ("GetBucketEncryption", Some("s3:GetEncryptionConfiguration"), O),
            Self::PutBucketEncryption => ("PutBucketEncryption", Some("s3:PutEncryptionConfiguration"), O),
            Self::GetBucketPolicy => ("GetBucketPolicy", Some("s3:GetBucketPolicy"), O),
            Self::PutBucketPolicy => ("PutBucketPolicy", Some("s3:PutBucketPolicy"), O),
            Self::GetBucketVersioning => ("GetBucketVersioning", Some("s3:GetBucketVersioning"), O),
            Self::PutBucketVersioning => ("PutBucketVersioning", Some("s3:PutBucketVersioning"), O),
            Self::ListObjectVersions => ("ListObjectVersions", Some("s3:ListBucketVersions"), O),
            Self::ListObjectsV2 => ("ListObjectsV2", Some("s3:ListBucket"), W),
            Self::PutObject => ("PutObject", Some("s3:PutObject"), W),
            Self::GetObject => ("GetObject", Some("s3:GetObject"), W),
            Self::DeleteObject => ("DeleteObject", Some("s3:DeleteObject"), W),
            Self::DeleteObjectVersion => ("DeleteObject", Some("s3:DeleteObjectVersion"), O),
            Self::CreatePolicy => ("CreatePolicy", Some("iam:CreatePolicy"), O),
            Self::TagPolicy => ("TagPolicy", Some("iam:TagPolicy"), O),
            Self::GetPolicy => ("GetPolicy", Some("iam:GetPolicy"), O),
            Self::GetPolicyVersion => ("GetPolicyVersion", Some("iam:GetPolicyVersion"), O),
            Self::ListPolicyVersions => ("ListPolicyVersions", Some("iam:ListPolicyVersions"), O),
            Self::CreatePolicyVersion => ("CreatePolicyVersion", Some("iam:CreatePolicyVersion"), O),
            Self::DeletePolicyVersion => ("DeletePolicyVersion", Some("iam:DeletePolicyVersion"), O),
            Self::DeletePolicy => ("DeletePolicy", Some("iam:DeletePolicy"), O),
            Self::CreateRole => ("CreateRole", Some("iam:CreateRole"), O),
            Self::TagRole => ("TagRole", Some("iam:TagRole"), O),
            Self::GetRole => ("GetRole", Some("iam:GetRole"), O),
            Self::UpdateAssumeRolePolicy => ("UpdateAssumeRolePolicy", Some("iam:UpdateAssumeRolePolicy"), O),
            Self::PutRolePermissionsBoundary => (
                "PutRolePermissionsBoundary",
                Some("iam:PutRolePermissionsBoundary"),
                O,
            ),
            Self::DeleteRolePermissionsBoundary => (
                "DeleteRolePermissionsBoundary",
                Some("iam:DeleteRolePermissionsBoundary"),
                O,
            ),
            Self::ListAttachedRolePolicies => (
                "ListAttachedRolePolicies",
                Some("iam:ListAttachedRolePolicies"),
                O,
            ),
            Self::ListRolePolicies => ("ListRolePolicies", Some("iam:ListRolePolicies"), O),
            Self::DeleteRolePolicy => ("DeleteRolePolicy", Some("iam:DeleteRolePolicy"), O),
            Self::AttachRolePolicy => ("AttachRolePolicy", Some("iam:AttachRolePolicy"), O),
            Self::DetachRolePolicy => ("DetachRolePolicy", Some("iam:DetachRolePolicy"), O),
            Self::DeleteRole => ("DeleteRole", Some("iam:DeleteRole"), O),
            Self::GetOpenIDConnectProvider => (
                "GetOpenIDConnectProvider",
                Some("iam:GetOpenIDConnectProvider"),
                O,
            ),
            Self::GetAccountAuthorizationDetails => (
                "GetAccountAuthorizationDetails",
                Some("iam:GetAccountAuthorizationDetails"),
                O,
            ),
            Self::GetCallerIdentity => ("GetCallerIdentity", None, O),
            Self::AssumeRoleWithWebIdentity => ("AssumeRoleWithWebIdentity", None, W),
            Self::DescribeCluster => ("DescribeCluster", Some("eks:DescribeCluster"), O),
            Self::DescribeKey => ("DescribeKey", Some("kms:DescribeKey"), O),
            // Multipart uploads are authorized as s3:PutObject, except abort and the listings.
            Self::CreateMultipartUpload => ("CreateMultipartUpload", Some("s3:PutObject"), W),
            Self::UploadPart => ("UploadPart", Some("s3:PutObject"), W),
            Self::CompleteMultipartUpload => ("CompleteMultipartUpload", Some("s3:PutObject"), W),
            Self::AbortMultipartUpload => ("AbortMultipartUpload", Some("s3:AbortMultipartUpload"), B),
            Self::ListMultipartUploads => ("ListMultipartUploads", Some("s3:ListBucketMultipartUploads"), O),
            Self::CreatePodIdentityAssociation => (
                "CreatePodIdentityAssociation",
                Some("eks:CreatePodIdentityAssociation"),
                O,
            ),
            Self::ListPodIdentityAssociations => (
                "ListPodIdentityAssociations",
                Some("eks:ListPodIdentityAssociations"),
                O,
            ),
            Self::DescribePodIdentityAssociation => (
                "DescribePodIdentityAssociation",
                Some("eks:DescribePodIdentityAssociation"),
                O,
            ),
            Self::UpdatePodIdentityAssociation => (
                "UpdatePodIdentityAssociation",
                Some("eks:UpdatePodIdentityAssociation"),
                O,
            ),
            Self::DeletePodIdentityAssociation => (
                "DeletePodIdentityAssociation",
                Some("eks:DeletePodIdentityAssociation"),
                O,
            ),
            // Authorizes the tags of CreatePodIdentityAssociation (no call of its own).
            Self::TagEksResource => ("TagResource", Some("eks:TagResource"), O),
            // EKS checks that the caller of Create/UpdatePodIdentityAssociation may pass the
            // role to pods.eks.amazonaws.com (no call of its own).
            Self::PassRole => ("PassRole", Some("iam:PassRole"), O),
            // What the EKS Pod Identity Agent calls; the operator calls it to validate as the
            // workload (docs/decisions.md).
            Self::AssumeRoleForPodIdentity => (
                "AssumeRoleForPodIdentity",
                Some("eks-auth:AssumeRoleForPodIdentity"),
                O,
            ),
        }
    }

    /// Every operation, in table order.
    pub const ALL: [Operation; 62] = [
        Self::CreateBucket,
        Self::DeleteBucket,
        Self::HeadBucket,
        Self::ListBuckets,
        Self::GetBucketLocation,
        Self::GetBucketTagging,
        Self::PutBucketTagging,
        Self::GetPublicAccessBlock,
        Self::PutPublicAccessBlock,
        Self::GetBucketOwnershipControls,
        Self::PutBucketOwnershipControls,
        Self::GetBucketEncryption,
        Self::PutBucketEncryption,
        Self::GetBucketPolicy,
        Self::PutBucketPolicy,
        Self::GetBucketVersioning,
        Self::PutBucketVersioning,
        Self::ListObjectVersions,
        Self::ListObjectsV2,
        Self::PutObject,
        Self::GetObject,
        Self::DeleteObject,
        Self::DeleteObjectVersion,
        Self::CreatePolicy,
        Self::TagPolicy,
        Self::GetPolicy,
        Self::GetPolicyVersion,
        Self::ListPolicyVersions,
        Self::CreatePolicyVersion,
        Self::DeletePolicyVersion,
        Self::DeletePolicy,
        Self::CreateRole,
        Self::TagRole,
        Self::GetRole,
        Self::UpdateAssumeRolePolicy,
        Self::PutRolePermissionsBoundary,
        Self::DeleteRolePermissionsBoundary,
        Self::ListAttachedRolePolicies,
        Self::ListRolePolicies,
        Self::DeleteRolePolicy,
        Self::AttachRolePolicy,
        Self::DetachRolePolicy,
        Self::DeleteRole,
        Self::GetOpenIDConnectProvider,
        Self::GetAccountAuthorizationDetails,
        Self::GetCallerIdentity,
        Self::AssumeRoleWithWebIdentity,
        Self::DescribeCluster,
        Self::DescribeKey,
        Self::CreateMultipartUpload,
        Self::UploadPart,
        Self::CompleteMultipartUpload,
        Self::AbortMultipartUpload,
        Self::ListMultipartUploads,
        Self::CreatePodIdentityAssociation,
        Self::ListPodIdentityAssociations,
        Self::DescribePodIdentityAssociation,
        Self::UpdatePodIdentityAssociation,
        Self::DeletePodIdentityAssociation,
        Self::TagEksResource,
        Self::PassRole,
        Self::AssumeRoleForPodIdentity,
    ];

    /// The API operation's name, as the SDK and CloudTrail's `eventName` give it.
    pub const fn sdk_name(self) -> &'static str {
        self.entry().0
    }

    /// The IAM action AWS authorizes the operation with (`None`: no action is authorized).
    pub const fn iam_action(self) -> Option<&'static str> {
        self.entry().1
    }

    /// Whether the operator makes this call with its own credentials.
    pub const fn by_operator(self) -> bool {
        matches!(self.entry().2, Caller::Operator | Caller::Both)
    }

    /// Whether the workload's role makes this call during validation.
    pub const fn by_workload(self) -> bool {
        matches!(self.entry().2, Caller::Workload | Caller::Both)
    }

    /// The IAM action if there is one, the operation's name otherwise: what a message about
    /// the call names first.
    pub fn name(self) -> &'static str {
        self.iam_action().unwrap_or(self.sdk_name())
    }
}

/// One call: the operation and the resource it was made on (an ARN where the operator can
/// build one, `*` for calls on no resource).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub operation: Operation,
    pub resource: String,
}

impl Call {
    pub fn new(operation: Operation, resource: impl Into<String>) -> Self {
        Self {
            operation,
            resource: resource.into(),
        }
    }
}

/// `s3:PutEncryptionConfiguration on arn:aws:s3:::bucket (PutBucketEncryption)`: the IAM action
/// first, since that is what a policy grants; the operation when it is named otherwise.
impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = self.operation;
        write!(f, "{} on {}", op.name(), self.resource)?;
        if op.iam_action().is_some() {
            write!(f, " ({})", op.sdk_name())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn operations_are_authorized_by_their_documented_actions() {
        // The pairs whose names differ, each from the API's "Permissions" section.
        for (op, action) in [
            (Operation::HeadBucket, "s3:ListBucket"),
            (Operation::ListObjectsV2, "s3:ListBucket"),
            (Operation::ListBuckets, "s3:ListAllMyBuckets"),
            (Operation::PutBucketEncryption, "s3:PutEncryptionConfiguration"),
            (Operation::GetBucketEncryption, "s3:GetEncryptionConfiguration"),
            (Operation::PutPublicAccessBlock, "s3:PutBucketPublicAccessBlock"),
            (Operation::GetPublicAccessBlock, "s3:GetBucketPublicAccessBlock"),
            (Operation::ListObjectVersions, "s3:ListBucketVersions"),
            (Operation::DeleteObjectVersion, "s3:DeleteObjectVersion"),
        ] {
            assert_eq!(op.iam_action(), Some(action), "{op:?}");
        }
        assert_eq!(Operation::DeleteObjectVersion.sdk_name(), "DeleteObject");
        assert_eq!(Operation::GetCallerIdentity.iam_action(), None);
        assert_eq!(Operation::AssumeRoleWithWebIdentity.iam_action(), None);
    }

    #[test]
    fn the_table_lists_every_operation_once() {
        let all: BTreeSet<Operation> = Operation::ALL.into_iter().collect();
        assert_eq!(all.len(), Operation::ALL.len());
        // The same SDK name maps to one action, except DeleteObject (with or without a version).
        for a in Operation::ALL {
            for b in Operation::ALL {
                if a != b && a.sdk_name() == b.sdk_name() {
                    assert_eq!(a.sdk_name(), "DeleteObject", "{a:?} {b:?}");
                }
            }
        }
        // Every action is a service prefix and a PascalCase name.
        for op in Operation::ALL {
            if let Some(action) = op.iam_action() {
                let (service, name) = action.split_once(':').expect("service:Action");
                assert!(
                    ["s3", "iam", "eks", "eks-auth", "kms"].contains(&service),
                    "{action}"
                );
                assert!(name.starts_with(|c: char| c.is_ascii_uppercase()), "{action}");
                assert!(name.chars().all(|c| c.is_ascii_alphanumeric()), "{action}");
            }
        }
    }

    /// The actions of deploy/iam/operator-policy.json, statement by statement.
    fn published_policy() -> Vec<(String, Vec<String>)> {
        let policy: serde_json::Value =
            serde_json::from_str(include_str!("../../deploy/iam/operator-policy.json")).expect("JSON");
        policy["Statement"]
            .as_array()
            .expect("statements")
            .iter()
            .map(|s| {
                (
                    s["Sid"].as_str().unwrap_or_default().to_string(),
                    crate::documents::string_list(&s["Action"]),
                )
            })
            .collect()
    }

    #[test]
    fn the_published_policy_grants_every_action_the_operator_needs_and_no_other() {
        let granted: BTreeSet<String> = published_policy().into_iter().flat_map(|(_, a)| a).collect();
        let needed: BTreeSet<String> = Operation::ALL
            .into_iter()
            .filter(|op| op.by_operator())
            .filter_map(Operation::iam_action)
            // Removing a boundary is never granted: the boundary is the ceiling of every role
            // the operator creates (docs/decisions.md). The operator still asks, and is refused,
            // when it runs without --permissions-boundary on a role whose boundary it set.
            .filter(|a| *a != "iam:DeleteRolePermissionsBoundary")
            .map(str::to_string)
            .collect();
        let missing: Vec<_> = needed.difference(&granted).collect();
        let extra: Vec<_> = granted.difference(&needed).collect();
        assert!(
            missing.is_empty(),
            "the operator calls, the policy does not grant: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "granted, never called by the operator: {extra:?}"
        );
    }

    #[test]
    fn the_workload_needs_only_what_the_generated_policy_grants() {
        let policy = crate::documents::permission_policy(
            crate::naming::Partition::Aws,
            "bw-b",
            crate::api::Access::ReadWrite,
            None,
        );
        let granted: BTreeSet<String> = crate::documents::statements(&policy)
            .iter()
            .flat_map(|s| crate::documents::string_list(&s["Action"]))
            .collect();
        for op in Operation::ALL.into_iter().filter(|op| op.by_workload()) {
            if let Some(action) = op.iam_action() {
                assert!(granted.contains(action), "{op:?}: {action} is not in {policy}");
            }
        }
    }

    #[test]
    fn a_call_names_the_action_the_resource_and_the_operation() {
        let call = Call::new(Operation::PutBucketEncryption, "arn:aws:s3:::bw-x");
        assert_eq!(
            call.to_string(),
            "s3:PutEncryptionConfiguration on arn:aws:s3:::bw-x (PutBucketEncryption)"
        );
        assert_eq!(
            Call::new(Operation::GetCallerIdentity, "*").to_string(),
            "GetCallerIdentity on *"
        );
    }
}
