//! The provider seam: what each cloud brings to the shared pipeline (resolve -> plan ->
//! observe/apply -> validate -> status). A provider owns its resources (bucket, permission
//! policy, role), its documents and their canonical form, its naming rules and its token
//! exchange; ownership and recording rules, conditions, error classes and the workload probe
//! stay shared.
//!
//! AWS's parts still live at the crate's top level (`naming`, `documents`, `aws`, `steps`);
//! they move under `provider::aws` when the Alibaba steps join the reconcile, so that AWS's
//! behaviour and tests stay unchanged while the code moves (docs/decisions.md, "The provider
//! seam").

pub mod alibaba;
