//! The stateright models of memlink's DSM protocols live in this crate's `tests/`: each
//! drives the pure state machines of `memlink_dsm::protocol` and `memlink_dsm::process`
//! (the very code the nodes run) through every order of messages and checks the protocol's
//! invariants and that every fault and task ends. They are a crate of their own so the
//! README's test command can run them, CPU-bound, beside the other tests, which mostly wait
//! on processes and sockets; their tests are marked `#[ignore]` so that a plain `cargo test`
//! of the workspace leaves them to that script:
//!
//! ```text
//! cargo test -p memlink-models -- --ignored                     # all models
//! cargo test -p memlink-models --test model_rights -- --ignored # one
//! ```
