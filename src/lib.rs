//! ArqonBus: a small, sharp, reliable WebSocket message bus.
//!
//! # Layout
//!
//! Dependencies point down only:
//!
//! - [`app`] is the composition root: it reads nothing but the [`config::Config`] and is the
//!   only module that names concrete backends (the memory backplane, the JWT and webhook
//!   authenticators).
//! - [`transport`] owns sockets: the HTTP listener, the `/ws` handshake, per-connection reader
//!   and writer tasks, heartbeats, frame limits, the bounded outbound queue and close codes.
//!   It knows no rooms: it hands text frames to a [`commands::Session`].
//! - [`commands`] decides what a frame does: publish, private messages and one file per
//!   command. Commands return replies; they never touch a socket.
//! - [`routing`] is the node's local subscription table and fan-out: every frame arrives
//!   serialized once and is shared by all receivers; a full outbox closes that client (4008).
//! - [`backplane`] is what nodes share: offsets, history, presence, channel and node registries,
//!   behind the [`backplane::Backplane`] trait. Live traffic comes back through
//!   [`backplane::Inbound`], which routing implements: the backplane never holds the router.
//! - [`auth`] checks credentials and permissions; [`protocol`] is the wire contract as types,
//!   with no I/O; [`telemetry`] holds metrics and logging and can fail without harming delivery.
//! - [`cluster`] knows the node's peers (the Kubernetes EndpointSlices of its headless Service,
//!   else the backplane's node registry) and moves connections off a node that holds more than
//!   its share, through routing; it never touches a socket.
//!
//! The load generator behind `arqonbus bench` is a crate of its own (`bench/`, `arqonbus-bench`):
//! it speaks only the wire protocol and cannot reach into this library.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod auth;
pub mod backplane;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod protocol;
pub mod routing;
mod sync;
pub mod telemetry;
pub mod transport;
