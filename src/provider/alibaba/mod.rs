//! Alibaba Cloud: OSS buckets, RAM policies and roles, RRSA (RAM Roles for Service Accounts on
//! ACK) and the cross-account flow. Pure parts so far: names and endpoints (`naming`) and the
//! RAM and OSS documents (`documents`).

pub mod documents;
pub mod naming;
pub mod openapi;
pub mod services;
pub mod signer;
