//! Mailroom's tests over real wire protocols: a moto harness ([`moto`]) and the contract suites
//! every adapter must pass ([`contract`]). The tests themselves live in `tests/`.

pub mod contract;
pub mod lambda;
pub mod moto;
pub mod push;
pub mod stack;
