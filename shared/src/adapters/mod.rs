//! Adapters: the ports implemented for AWS, for local mode (SQLite, files) and for memory (unit
//! tests).

pub mod aws;
pub mod local;
pub mod memory;
