//! API (temporary: pure parts only).
#![forbid(unsafe_code)]
pub mod coalesce;
pub mod matching;
pub mod provider;
pub mod push;
pub mod repo_url;
pub mod signature;
