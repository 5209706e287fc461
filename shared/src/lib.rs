//! Mailroom's shared library: the domain, the import engine, the Microsoft Graph client, the ports
//! the engine needs and their adapters. The Lambda functions and the CLI are thin entry points over
//! this crate.
//!
//! Data flows one way: event → entry point → [`engine`] → [`ports`]. Nothing in the engine knows
//! which runtime called it.

pub mod adapters;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod discovery;
pub mod doctor;
pub mod domain;
pub mod engine;
pub mod expiry;
pub mod graph;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod ports;
pub mod push;
pub mod redact;
pub mod rotation;
pub mod tls;
