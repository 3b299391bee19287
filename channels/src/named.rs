//! A named rendezvous for channels: unrelated processes open a region's channels in one call.
//!
//! The creating process [`serve`]s a region and a list of named channel references at a unix
//! socket path; each process that [`connect`]s to that path receives, in one message, the
//! region's descriptor (SCM_RIGHTS, through memlink-capability's fd passing), the base address
//! the creator mapped it at, and the references. `connect` attaches the region with
//! [`Region::attach_at`], so the region is mapped at the creator's address or not at all
//! (a header that a peer rewrote is refused with [`RegionError::BaseMismatch`]), and returns a
//! [`Connection`] from which the channels open by name ([`Connection::loan_channel`], ...).
//!
//! The offer is parsed as untrusted input ([`Offer::parse`]): magic, version, counts, lengths
//! and names are checked before anything is used.

use crate::backing::ChannelRef;
use crate::error::ConnectError;
use crate::region::{Region, RegionError};
use crate::shareable::Shareable;
use crate::{BufferedChannel, LoanChannel, Port};
use memlink_capability::fd_passing::{RecvFdsError, SendFdsError, recv_message, send_with_fds};
use memlink_capability::rendezvous::{self, BindError, RendezvousListener};
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const OFFER_MAGIC: [u8; 8] = *b"MLCHANS1";
/// Most channels one offer may name.
pub const MAX_CHANNELS: usize = 64;
/// Longest channel name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// What a server hands to each connecting process: the region's base and length as the
/// creator mapped it, and the named channel references (the descriptor travels beside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The address the creator mapped the region at.
    pub base: u64,
    /// The region's mapped length.
    pub len: u64,
    /// The channels, by name.
    pub channels: Vec<(String, ChannelRef)>,
}

/// Why an offer received from a server was refused (it is parsed as untrusted bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MalformedOffer {
    /// It does not start with the offer magic: not a memlink channel server.
    NotAnOffer,
    /// It ends before the part named.
    Truncated(&'static str),
    /// More channels than [`MAX_CHANNELS`].
    TooManyChannels(u32),
    /// A name longer than [`MAX_NAME_LEN`], empty, or not UTF-8.
    BadName,
    /// Two channels share a name.
    DuplicateName(String),
    /// Bytes follow the last channel.
    TrailingBytes(usize),
}

impl fmt::Display for MalformedOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MalformedOffer::NotAnOffer => {
                write!(f, "the peer is not a memlink channel server (wrong magic)")
            }
            MalformedOffer::Truncated(what) => write!(f, "the offer ends inside its {what}"),
            MalformedOffer::TooManyChannels(n) => {
                write!(
                    f,
                    "the offer names {n} channels; at most {MAX_CHANNELS} are allowed"
                )
            }
            MalformedOffer::BadName => write!(
                f,
                "a channel name is empty, longer than {MAX_NAME_LEN} bytes or not UTF-8"
            ),
            MalformedOffer::DuplicateName(n) => write!(f, "the offer names {n:?} twice"),
            MalformedOffer::TrailingBytes(n) => {
                write!(f, "{n} stray bytes follow the offer's last channel")
            }
        }
    }
}

impl std::error::Error for MalformedOffer {}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], MalformedOffer> {
        if self.0.len() < n {
            return Err(MalformedOffer::Truncated(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, MalformedOffer> {
        let b = self.take(8, what)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, MalformedOffer> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
}

fn name_ok(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN
}

impl Offer {
    /// The offer as bytes: magic, base, length, count, then per channel its offset, kind,
    /// name length and name (little-endian).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.channels.len() * 24);
        out.extend_from_slice(&OFFER_MAGIC);
        out.extend_from_slice(&self.base.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&(self.channels.len() as u32).to_le_bytes());
        for (name, r) in &self.channels {
            out.extend_from_slice(&r.offset.to_le_bytes());
            out.extend_from_slice(&r.kind.to_le_bytes());
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
        }
        out
    }

    /// Parses an offer from untrusted bytes.
    pub fn parse(bytes: &[u8]) -> Result<Offer, MalformedOffer> {
        let mut r = Reader(bytes);
        if r.take(8, "magic").map_err(|_| MalformedOffer::NotAnOffer)? != OFFER_MAGIC {
            return Err(MalformedOffer::NotAnOffer);
        }
        let base = r.u64("base")?;
        let len = r.u64("length")?;
        let count = r.u32("channel count")?;
        if count as usize > MAX_CHANNELS {
            return Err(MalformedOffer::TooManyChannels(count));
        }
        let mut channels: Vec<(String, ChannelRef)> = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let offset = r.u64("channel offset")?;
            let kind = r.u64("channel kind")?;
            let name_len = r.u32("name length")? as usize;
            if name_len == 0 || name_len > MAX_NAME_LEN {
                return Err(MalformedOffer::BadName);
            }
            let name = std::str::from_utf8(r.take(name_len, "name")?)
                .map_err(|_| MalformedOffer::BadName)?
                .to_string();
            if channels.iter().any(|(n, _)| *n == name) {
                return Err(MalformedOffer::DuplicateName(name));
            }
            channels.push((name, ChannelRef { offset, kind }));
        }
        if !r.0.is_empty() {
            return Err(MalformedOffer::TrailingBytes(r.0.len()));
        }
        Ok(Offer {
            base,
            len,
            channels,
        })
    }
}

/// Why [`serve`] could not start.
#[derive(Debug)]
pub enum ServeError {
    /// The socket path could not be bound (in use by a live server, too long, not a socket).
    Bind(BindError),
    /// More channels than [`MAX_CHANNELS`].
    TooManyChannels(usize),
    /// A channel name is empty or longer than [`MAX_NAME_LEN`] bytes.
    BadName(String),
    /// Two channels were given the same name.
    DuplicateName(String),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Bind(e) => write!(f, "cannot serve the channels: {e}"),
            ServeError::TooManyChannels(n) => {
                write!(
                    f,
                    "{n} channels given; one server offers at most {MAX_CHANNELS}"
                )
            }
            ServeError::BadName(n) => write!(
                f,
                "channel name {n:?} is empty or longer than {MAX_NAME_LEN} bytes; pick a shorter one"
            ),
            ServeError::DuplicateName(n) => {
                write!(f, "two channels are named {n:?}; give each its own name")
            }
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServeError::Bind(e) => Some(e),
            _ => None,
        }
    }
}

/// Why handing the channels to one connecting process failed (the server goes on serving).
#[derive(Debug)]
pub enum HandOverError {
    /// Accepting the connection failed.
    Accept(std::io::Error),
    /// Nobody connected within the timeout.
    TimedOut,
    /// Sending the offer and the descriptor failed (the peer went away).
    Send(SendFdsError),
}

impl fmt::Display for HandOverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandOverError::Accept(e) => write!(f, "accepting a connecting process failed: {e}"),
            HandOverError::TimedOut => write!(f, "no process connected in time"),
            HandOverError::Send(e) => write!(f, "handing the channels over failed: {e}"),
        }
    }
}

impl std::error::Error for HandOverError {}

/// Why [`connect`] (or opening a channel from its [`Connection`]) failed.
#[derive(Debug)]
pub enum NamedConnectError {
    /// Nobody serves at the path (within the timeout), or connecting failed.
    Connect(rendezvous::ConnectError),
    /// Receiving the offer failed or timed out.
    Receive(RecvFdsError),
    /// The offer came with no region descriptor, or with more than one.
    Descriptors(usize),
    /// The offer's bytes are malformed.
    Malformed(MalformedOffer),
    /// The region could not be attached at the creator's address.
    Region(RegionError),
    /// The region attached is not the one the offer describes (length differs).
    LengthMismatch {
        /// The length in the offer.
        offered: u64,
        /// The length of the region attached.
        attached: u64,
    },
    /// The server offers no channel of that name.
    NoSuchChannel(String),
    /// The named channel could not be opened (wrong kind, corrupt layout, endpoint taken...).
    Open(ConnectError),
}

impl fmt::Display for NamedConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamedConnectError::Connect(e) => write!(f, "cannot reach the channel server: {e}"),
            NamedConnectError::Receive(e) => {
                write!(f, "receiving the channels from the server failed: {e}")
            }
            NamedConnectError::Descriptors(n) => write!(
                f,
                "the server sent {n} descriptors instead of the region's one: not a memlink channel server"
            ),
            NamedConnectError::Malformed(e) => write!(f, "the server's offer is malformed: {e}"),
            NamedConnectError::Region(e) => write!(f, "cannot map the served region: {e}"),
            NamedConnectError::LengthMismatch { offered, attached } => write!(
                f,
                "the server offered a region of {offered} bytes but sent one of {attached}"
            ),
            NamedConnectError::NoSuchChannel(n) => {
                write!(f, "the server offers no channel named {n:?}")
            }
            NamedConnectError::Open(e) => write!(f, "cannot open the served channel: {e}"),
        }
    }
}

impl std::error::Error for NamedConnectError {}

/// A region and its named channels, served at a socket path to processes that [`connect`].
/// Dropping it removes the path; processes already connected keep their channels.
#[derive(Debug)]
pub struct Server {
    listener: RendezvousListener,
    region: Arc<Region>,
    offer: Vec<u8>,
}

/// Serves `region` and the named `channels` in it at the unix socket `path`. Each
/// [`Server::accept`] then hands them to one connecting process.
pub fn serve(
    path: impl AsRef<Path>,
    region: &Arc<Region>,
    channels: &[(&str, ChannelRef)],
) -> Result<Server, ServeError> {
    if channels.len() > MAX_CHANNELS {
        return Err(ServeError::TooManyChannels(channels.len()));
    }
    for (i, (name, _)) in channels.iter().enumerate() {
        if !name_ok(name) {
            return Err(ServeError::BadName(name.to_string()));
        }
        if channels[..i].iter().any(|(n, _)| n == name) {
            return Err(ServeError::DuplicateName(name.to_string()));
        }
    }
    let offer = Offer {
        base: region.base() as u64,
        len: region.len() as u64,
        channels: channels.iter().map(|(n, r)| (n.to_string(), *r)).collect(),
    };
    let listener = RendezvousListener::bind(path).map_err(ServeError::Bind)?;
    Ok(Server {
        listener,
        region: Arc::clone(region),
        offer: offer.encode(),
    })
}

impl Server {
    /// Waits for one process to connect and hands it the region and the channel references.
    pub fn accept(&self) -> Result<(), HandOverError> {
        let stream = self.listener.accept().map_err(HandOverError::Accept)?;
        send_with_fds(&stream, &self.offer, &[self.region.as_fd()]).map_err(HandOverError::Send)
    }

    /// Like [`Server::accept`], waiting at most `timeout` for a process to connect.
    pub fn accept_timeout(&self, timeout: Duration) -> Result<(), HandOverError> {
        let fd = self.listener.listener().as_fd();
        let mut pfd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        match n {
            0 => Err(HandOverError::TimedOut),
            n if n < 0 => Err(HandOverError::Accept(std::io::Error::last_os_error())),
            _ => self.accept(),
        }
    }

    /// The socket path served.
    pub fn path(&self) -> &Path {
        self.listener.path()
    }
}

/// The region and the named channels received from a [`Server`].
#[derive(Debug)]
pub struct Connection {
    region: Arc<Region>,
    channels: Vec<(String, ChannelRef)>,
}

/// Connects to the channel server at `path` (waiting up to `timeout` for it to appear and
/// answer), receives the region and the channel references, and maps the region at the
/// creator's address.
pub fn connect(path: impl AsRef<Path>, timeout: Duration) -> Result<Connection, NamedConnectError> {
    let stream = rendezvous::connect_within(path, timeout).map_err(NamedConnectError::Connect)?;
    stream
        .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
        .map_err(|e| NamedConnectError::Receive(RecvFdsError::Io(e)))?;
    let (bytes, mut fds) = recv_message(&stream).map_err(NamedConnectError::Receive)?;
    if fds.len() != 1 {
        return Err(NamedConnectError::Descriptors(fds.len()));
    }
    let offer = Offer::parse(&bytes).map_err(NamedConnectError::Malformed)?;
    let fd: OwnedFd = fds.pop().expect("one descriptor");
    let base = usize::try_from(offer.base).map_err(|_| {
        NamedConnectError::Region(RegionError::CorruptHeader {
            field: crate::region::HeaderField::Base,
            found: offer.base,
        })
    })?;
    let region = Region::attach_at(fd, base).map_err(NamedConnectError::Region)?;
    if region.len() as u64 != offer.len {
        return Err(NamedConnectError::LengthMismatch {
            offered: offer.len,
            attached: region.len() as u64,
        });
    }
    Ok(Connection {
        region: Arc::new(region),
        channels: offer.channels,
    })
}

impl Connection {
    /// The region, mapped at the creator's address.
    pub fn region(&self) -> &Arc<Region> {
        &self.region
    }

    /// The channels offered, by name.
    pub fn channels(&self) -> &[(String, ChannelRef)] {
        &self.channels
    }

    /// The reference of the channel called `name`.
    pub fn channel(&self, name: &str) -> Result<ChannelRef, NamedConnectError> {
        self.channels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| *r)
            .ok_or_else(|| NamedConnectError::NoSuchChannel(name.to_string()))
    }

    /// Opens the loan channel called `name`.
    pub fn loan_channel(&self, name: &str) -> Result<LoanChannel, NamedConnectError> {
        LoanChannel::open(&self.region, self.channel(name)?).map_err(NamedConnectError::Open)
    }

    /// Opens the buffered channel called `name`.
    pub fn buffered_channel<T: Shareable + Copy>(
        &self,
        name: &str,
    ) -> Result<BufferedChannel<T>, NamedConnectError> {
        BufferedChannel::open(&self.region, self.channel(name)?).map_err(NamedConnectError::Open)
    }

    /// Opens the port called `name`.
    pub fn port<T: Shareable + Copy>(&self, name: &str) -> Result<Port<T>, NamedConnectError> {
        Port::open(&self.region, self.channel(name)?).map_err(NamedConnectError::Open)
    }
}

impl LoanChannel {
    /// Connects to the channel server at `path` and opens its loan channel called `name`, in
    /// one call (see [`connect`]); the region stays mapped while the channel lives.
    pub fn connect(
        path: impl AsRef<Path>,
        name: &str,
        timeout: Duration,
    ) -> Result<LoanChannel, NamedConnectError> {
        connect(path, timeout)?.loan_channel(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_round_trip_and_malformed_ones_are_named() {
        let offer = Offer {
            base: 0x7f00_0000_0000,
            len: 1 << 20,
            channels: vec![
                (
                    "frames".into(),
                    ChannelRef {
                        offset: 256,
                        kind: 7,
                    },
                ),
                (
                    "acks".into(),
                    ChannelRef {
                        offset: 1024,
                        kind: 9,
                    },
                ),
            ],
        };
        let bytes = offer.encode();
        assert_eq!(Offer::parse(&bytes).unwrap(), offer);
        for cut in 0..bytes.len() {
            assert!(Offer::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(Offer::parse(&extra), Err(MalformedOffer::TrailingBytes(1)));
        let mut dup = offer.clone();
        dup.channels[1].0 = "frames".into();
        assert_eq!(
            Offer::parse(&dup.encode()),
            Err(MalformedOffer::DuplicateName("frames".into()))
        );
        let mut many = bytes[..24].to_vec();
        many.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            Offer::parse(&many),
            Err(MalformedOffer::TooManyChannels(u32::MAX))
        );
    }
}
