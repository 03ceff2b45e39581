//! The admission cases in `tests/fixtures/admission.yaml`, shared by the CEL unit tests
//! (src/api.rs) and the apiserver tests (tests/admission.rs).

use serde::Deserialize;
use serde_json::{Value, json};

pub const FIXTURE: &str = include_str!("../fixtures/admission.yaml");

#[derive(Deserialize)]
pub struct Fixture {
    pub base: Value,
    pub valid: Vec<ValidCase>,
    pub invalid: Vec<InvalidCase>,
    pub transitions: Vec<Transition>,
}

#[derive(Deserialize)]
pub struct ValidCase {
    pub name: String,
    pub spec: Value,
}

#[derive(Deserialize, PartialEq, Eq, Clone, Copy, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Cel,
    Schema,
}

#[derive(Deserialize)]
pub struct InvalidCase {
    pub name: String,
    pub layer: Layer,
    pub spec: Value,
    pub field: String,
    pub message: String,
}

#[derive(Deserialize)]
pub struct Transition {
    pub name: String,
    pub old: Value,
    pub new: Value,
    pub field: String,
    pub message: String,
}

pub fn fixture() -> Fixture {
    serde_yaml::from_str(FIXTURE).expect("tests/fixtures/admission.yaml parses")
}

/// Deep-merges `patch` over `base`, like a JSON merge patch: objects merge, null removes.
pub fn merge(base: &Value, patch: &Value) -> Value {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            let mut out = b.clone();
            for (k, v) in p {
                if v.is_null() {
                    out.remove(k);
                } else {
                    let merged = merge(b.get(k).unwrap_or(&Value::Null), v);
                    out.insert(k.clone(), merged);
                }
            }
            Value::Object(out)
        }
        (_, p) => p.clone(),
    }
}

/// A whole BucketIntegration object with the given spec.
pub fn object(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "bucketwire.io/v1alpha1",
        "kind": "BucketIntegration",
        "metadata": {"name": name},
        "spec": spec,
    })
}
