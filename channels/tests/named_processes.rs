//! Unrelated processes open a loan channel in one call each through the named rendezvous:
//! two separately started executables (not forks) pass 1 GiB, and the receiver checks every
//! byte and that it reads each message at the address the sender loaned. A server that is
//! absent, speaks garbage or names another base is refused with an error that says so.

use memlink_capability::fd_passing::send_with_fds;
use memlink_capability::rendezvous::RendezvousListener;
use memlink_channels::named::{self, MalformedOffer, NamedConnectError, Offer};
use memlink_channels::{LoanChannel, Region, RegionError, WaitMode};
use memlink_test_support::{DEADLINE, output_of, socket_path};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const PEER: &str = env!("CARGO_BIN_EXE_memlink-loan-peer");

#[test]
fn two_executables_pass_one_gib_through_a_loan_channel() {
    let path = socket_path("loan-peer");
    let sender = Command::new(PEER)
        .args(["serve", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the sender");
    let receiver = Command::new(PEER)
        .args(["connect", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the receiver");
    let (received, _) = output_of(receiver, "the receiver");
    let (sent, _) = output_of(sender, "the sender");
    assert_eq!(sent.trim(), "sent 1073741824 bytes in 64 messages");
    assert_eq!(
        received.trim(),
        "received 1073741824 bytes in 64 messages, each at the address it was loaned at, \
         every byte checked"
    );
}

#[test]
fn connecting_with_nobody_serving_says_so() {
    let path = socket_path("nobody");
    let err = named::connect(&path, Duration::from_millis(50)).unwrap_err();
    assert!(matches!(err, NamedConnectError::Connect(_)), "{err}");
}

/// A fake server that answers one connection with `bytes` and `fds`.
fn fake_server(
    tag: &str,
    bytes: Vec<u8>,
    region: Option<Arc<Region>>,
) -> (std::path::PathBuf, std::thread::JoinHandle<()>) {
    let path = socket_path(tag);
    let listener = RendezvousListener::bind(&path).unwrap();
    let handle = std::thread::spawn(move || {
        let stream = listener.accept().unwrap();
        let fds: Vec<_> = region.iter().map(|r| r.as_fd()).collect();
        let _ = send_with_fds(&stream, &bytes, &fds);
    });
    (path, handle)
}

#[test]
fn a_server_that_speaks_garbage_is_refused() {
    let (path, h) = fake_server("garbage-nofd", b"hello".to_vec(), None);
    let err = named::connect(&path, DEADLINE).unwrap_err();
    assert!(matches!(err, NamedConnectError::Descriptors(0)), "{err}");
    h.join().unwrap();

    let region = Arc::new(Region::create("garbage", 1 << 16).unwrap());
    let (path, h) = fake_server("garbage-fd", b"hello".to_vec(), Some(Arc::clone(&region)));
    let err = named::connect(&path, DEADLINE).unwrap_err();
    assert!(
        matches!(
            err,
            NamedConnectError::Malformed(MalformedOffer::NotAnOffer)
        ),
        "{err}"
    );
    h.join().unwrap();
}

#[test]
fn a_server_naming_another_base_is_refused_before_anything_is_mapped() {
    let region = Arc::new(Region::create("other-base", 1 << 16).unwrap());
    let ch = LoanChannel::create(&region, 2, 64, WaitMode::Spin).unwrap();
    let offer = Offer {
        base: region.base() as u64 + (64 << 20),
        len: region.len() as u64,
        channels: vec![("bulk".into(), ch.reference())],
    };
    let (path, h) = fake_server("other-base", offer.encode(), Some(Arc::clone(&region)));
    let err = named::connect(&path, DEADLINE).unwrap_err();
    assert!(
        matches!(
            err,
            NamedConnectError::Region(RegionError::BaseMismatch { expected, found })
                if expected == region.base() as usize + (64 << 20)
                    && found == region.base() as usize
        ),
        "{err}"
    );
    h.join().unwrap();
}

#[test]
fn serve_refuses_bad_names_and_a_path_in_use() {
    let region = Arc::new(Region::create("names", 1 << 16).unwrap());
    let ch = LoanChannel::create(&region, 2, 64, WaitMode::Spin).unwrap();
    let r = ch.reference();
    let path = socket_path("names");
    assert!(named::serve(&path, &region, &[("", r)]).is_err());
    assert!(named::serve(&path, &region, &[("a", r), ("a", r)]).is_err());
    let long = "x".repeat(named::MAX_NAME_LEN + 1);
    assert!(named::serve(&path, &region, &[(long.as_str(), r)]).is_err());
    let server = named::serve(&path, &region, &[("bulk", r)]).unwrap();
    assert!(matches!(
        server.accept_timeout(Duration::from_millis(10)),
        Err(named::HandOverError::TimedOut)
    ));
    // (Finding the path in use probes it with a connection of its own.)
    assert!(matches!(
        named::serve(&path, &region, &[("bulk", r)]),
        Err(named::ServeError::Bind(_))
    ));
}
