//! Integration harness: real Redis topologies (standalone, Cluster, Sentinel) and real
//! `arqonbus` gateway processes, each on free ports in its own temp dir.
//!
//! Every process belongs to a handle and is killed (and reaped) when the handle drops, also
//! when a test panics — then the last lines of its log are printed. Starters wait by polling
//! and fail loudly with the log tail. Integration tests include this with `mod support;`.
#![allow(dead_code)]

#[path = "../../tests/common/mod.rs"]
pub mod common;

mod cluster;
mod faults;
mod gateway;
mod process;
mod redis;
mod sentinel;

// Each test binary uses part of the harness.
#[allow(unused_imports)]
pub use self::{
    cluster::RedisCluster,
    faults::{Dir, Fault, FaultProxy},
    gateway::Gateway,
    process::free_port,
    redis::{redis_cli, Redis, RedisOpts, DEFAULT_ACL_RULES},
    sentinel::RedisSentinel,
};
