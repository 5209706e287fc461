//! Mailroom's tests over real wire protocols: a moto harness ([`moto`]) and a proxy in front of
//! it that counts the SDK's calls ([`awsproxy`]), the contract suites
//! every adapter must pass ([`contract`]), and two ways to run a function binary as Lambda runs
//! it: an emulated Runtime API ([`lambda`]) and `cargo lambda watch` ([`watch`]); a TLS front for
//! loopback servers ([`tls`]); looking for secrets in text ([`secrets`]). The tests
//! themselves live in `tests/`.

pub mod awsproxy;
pub mod contract;
pub mod delegated;
pub mod lambda;
pub mod moto;
pub mod push;
pub mod secrets;
pub mod stack;
pub mod tls;
pub mod watch;
