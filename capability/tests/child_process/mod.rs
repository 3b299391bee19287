//! Starting helper processes from capability's integration tests: the shared helpers of
//! memlink-test-support, plus accepting a rendezvous peer with a deadline.

#![allow(dead_code)]

pub use memlink_test_support::*;

use std::os::fd::AsFd;

/// Accepts the next connection on `listener`, waiting at most [`DEADLINE`] (a peer that never
/// connects fails the test); the stream's reads time out after [`DEADLINE`] too.
pub fn accept_within(
    listener: &memlink_capability::rendezvous::RendezvousListener,
) -> std::os::unix::net::UnixStream {
    assert!(
        readable_within(listener.listener().as_fd(), DEADLINE),
        "no peer connected within {DEADLINE:?}"
    );
    let stream = listener.accept().expect("accept");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    stream
}
