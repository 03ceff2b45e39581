//! The apply steps, in order. Each reads what exists, decides with pure functions, and writes
//! only the differences; each is idempotent, so a crash at any point is repaired by the next
//! reconcile.

pub mod bucket;
pub mod iam;
pub mod iam_view;
pub mod kubernetes;
pub mod milvus_operator;
pub mod pod_identity;

/// What a step did, as a condition reason and a human message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// `Created`, `Adopted`, `UpToDate` or `DriftCorrected`.
    pub reason: &'static str,
    pub message: String,
}

impl Outcome {
    pub fn created(message: String) -> Self {
        Self {
            reason: "Created",
            message,
        }
    }
    pub fn adopted(message: String) -> Self {
        Self {
            reason: "Adopted",
            message,
        }
    }
    pub fn up_to_date(message: String) -> Self {
        Self {
            reason: "UpToDate",
            message,
        }
    }
    pub fn drift_corrected(message: String) -> Self {
        Self {
            reason: "DriftCorrected",
            message,
        }
    }
    /// Whether this step changed something.
    pub fn changed(&self) -> bool {
        self.reason != "UpToDate"
    }
}
