//! fctrace: a trace collector for self-hosted serverless functions.
//!
//! # Layout
//! The modules follow the data path, in one direction:
//! - [`receive`]: wire formats (Jaeger thrift) → [`model::Span`] batches;
//! - [`pipeline`]: validation, admission and the group-commit writer;
//! - [`sampling`]: strategies (Jaeger's file format), head sampling, rate limiters;
//! - [`store`]: RocksDB column families, key encoding, reads and retention;
//! - [`platform`]: the invoke gateway's logic, instances, platform spans and records;
//! - [`monitor`]: per-minute function metrics, made as calls are recorded;
//! - [`query`]: search planning and Jaeger/OTLP JSON views, read-only;
//! - [`server`]: listeners and routes, nothing else;
//! - [`bench`]: the load generator and ceilings behind `fctrace bench` (a client);
//! - [`budget`] (the ingest memory budget) and [`cpu`] (the pool for big decodes);
//! - [`config`], [`telemetry`], [`duration`], [`clock`], [`error`], [`short_eq`]: the
//!   plumbing.

pub mod bench;
pub mod budget;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod cpu;
pub mod duration;
pub mod error;
pub mod model;
pub mod monitor;
pub mod pipeline;
pub mod platform;
pub mod query;
pub mod receive;
pub mod reload;
pub mod sampling;
pub mod server;
pub mod short_eq;
pub mod store;
pub mod telemetry;
pub mod tenancy;
pub mod varint;
