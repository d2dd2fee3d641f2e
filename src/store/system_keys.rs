//! The keys of the store's own state in `meta`, all under the reserved system tenant:
//! the format version, the numbering of groups and chunks, where the term filter and the
//! column layout start, adaptive sampling's probabilities and the tenants' usage. Part of
//! `keys`, the one key encoder.

use super::{Tenant, SYSTEM_TENANT};

/// A tenant's bytes written in one hour (`quota`): `SYSTEM | "usage" | tenant(2) |
/// hour(8)`, all under one prefix so they load in one scan.
pub fn usage_key(tenant: Tenant, hour: u64) -> Vec<u8> {
    let mut v = usage_prefix();
    v.extend_from_slice(&tenant.to_be_bytes());
    v.extend_from_slice(&hour.to_be_bytes());
    v
}

pub fn usage_prefix() -> Vec<u8> {
    let mut v = SYSTEM_TENANT.to_be_bytes().to_vec();
    v.extend_from_slice(b"usage");
    v
}

/// The (tenant, hour) of a `usage_key`.
pub fn parse_usage_key(k: &[u8]) -> Option<(Tenant, u64)> {
    let rest = k.strip_prefix(usage_prefix().as_slice())?;
    let tenant = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?);
    let hour = u64::from_be_bytes(rest.get(2..10)?.try_into().ok()?);
    (rest.len() == 10).then_some((tenant, hour))
}

/// The last chunk number the writer used, so a restart never reuses one.
pub fn chunk_seq_key() -> Vec<u8> {
    let mut v = SYSTEM_TENANT.to_be_bytes().to_vec();
    v.extend_from_slice(b"chunk_seq");
    v
}

/// Wall-clock µs from which every write recorded its terms (0 for a store made with the
/// filter): the filter is used once everything older has passed retention.
/// From which posting group on blocks are in columns (format 8).
pub fn columns_from_key() -> Vec<u8> {
    let mut v = SYSTEM_TENANT.to_be_bytes().to_vec();
    v.extend_from_slice(b"columns_from");
    v
}

pub fn terms_from_key() -> Vec<u8> {
    let mut v = SYSTEM_TENANT.to_be_bytes().to_vec();
    v.extend_from_slice(b"terms_from");
    v
}

/// Adaptive sampling's probabilities (JSON: service → operation → probability).
pub fn adaptive_sampling_key() -> Vec<u8> {
    let mut v = SYSTEM_TENANT.to_be_bytes().to_vec();
    v.extend_from_slice(b"adaptive_sampling");
    v
}

pub fn format_version_key() -> Vec<u8> {
    let mut v = SYSTEM_TENANT.to_be_bytes().to_vec();
    v.extend_from_slice(b"format_version");
    v
}

/// The journal bound of the last fold of metric aggregates written (`journal`): reads
/// compare it with the bound of a fold in flight.
pub fn metrics_folded_key() -> Vec<u8> {
    let mut v = SYSTEM_TENANT.to_be_bytes().to_vec();
    v.extend_from_slice(b"metrics_folded");
    v
}
