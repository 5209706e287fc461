//! Adapters: the ports implemented for AWS and for memory (unit tests).

pub mod aws;
pub mod memory;
