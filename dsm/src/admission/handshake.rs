//! The admission handshake as a pure state machine: bytes in, bytes out, no I/O.
//!
//! The node that dials (node `d`, the higher id) and the node that accepts (node `a`) prove
//! to each other that they hold the cluster key, with fresh random nonces from both sides:
//!
//! ```text
//! dialer                                             acceptor
//!   Hello { d, a, nodes, keyed, cluster, Nd, code_d }  ->  checks cluster, ids, key mode
//!                                              <-  Challenge { Na }
//!   Proof { MAC(key, "dialer",   d, a, nodes, Nd, Na, cluster, code_d) }  ->   verifies
//!                                              <-  Welcome { MAC(key, "acceptor", ..., code_a), code_a }
//!   verifies (constant time)
//! ```
//! Each side also tells the other its [`CodeIdentity`] (which binary it runs, and where its
//! code is loaded), under its MAC when keyed. A difference does not refuse the connection
//! (nodes that differ still share pages); it is recorded ([`super::peer_codes`]) and refuses
//! tasks that would migrate between the two nodes.
//! Each MAC is an HMAC-SHA256 over [`VERSION_TAG`], the role of the node that proves, both
//! node ids, the node count, both nonces and the cluster id. The acceptor proves only after
//! the dialer has, so an unauthenticated dialer learns nothing it could replay; the role in
//! the MAC keeps a node's own proof from being reflected back to it, and the other side's
//! fresh nonce keeps a recorded transcript from being replayed. This is one round trip more
//! than a plain Hello exchange. Without a key on both sides ([`Handshake::key`] is None), the
//! acceptor answers the Hello with a Welcome at once (no Challenge, no Proof).
//!
//! Any check that fails ends the handshake with a [`Refusal`], which the refusing side sends
//! to the other in a Refused message so its error says why.
//!
//! All messages travel as payloads of [`crate::remote::FrameKind::Hello`] frames; the first
//! byte says which message it is. Every message has a fixed size (at most
//! [`MAX_MESSAGE`] bytes).

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::key::ClusterKey;
use crate::process::identity::{CodeIdentity, ENCODED_LEN as CODE_LEN};
use crate::types::NodeId;

/// The version tag every MAC starts with; a new handshake gets a new tag.
pub const VERSION_TAG: &[u8] = b"memlink-dsm admission v2";
/// Bytes in a nonce.
pub const NONCE_LEN: usize = 32;
/// Bytes in a MAC (HMAC-SHA256).
pub const MAC_LEN: usize = 32;
/// The largest handshake message, in bytes.
pub const MAX_MESSAGE: usize = HELLO_LEN;

const HELLO: u8 = 1;
const CHALLENGE: u8 = 2;
const PROOF: u8 = 3;
const WELCOME: u8 = 4;
const REFUSED: u8 = 5;

const HELLO_LEN: usize = 1 + 2 + 2 + 2 + 1 + 32 + NONCE_LEN + CODE_LEN;
const CHALLENGE_LEN: usize = 1 + NONCE_LEN;
const PROOF_LEN: usize = 1 + MAC_LEN;
const WELCOME_LEN: usize = 1 + MAC_LEN + CODE_LEN;
const REFUSED_LEN: usize = 1 + 1 + 2;

type HmacSha256 = Hmac<Sha256>;

/// What names one cluster: a SHA-256 over everything its nodes must agree on (the peers
/// list, the page count, the manager, ...). Two nodes with different ids refuse each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClusterId(pub [u8; 32]);

impl ClusterId {
    /// The id of a cluster whose settings are `parts` (in order; each part is length-prefixed
    /// so that no two different lists give the same id).
    pub fn derive(parts: &[&[u8]]) -> ClusterId {
        let mut h = Sha256::new();
        h.update(b"memlink-dsm cluster id v1");
        for part in parts {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        ClusterId(h.finalize().into())
    }
}

/// What one node brings to every handshake.
#[derive(Clone, Debug)]
pub struct Handshake {
    /// This node's id.
    pub me: NodeId,
    /// The number of nodes in the cluster.
    pub nodes: usize,
    /// The cluster's id.
    pub cluster: ClusterId,
    /// The cluster key; None runs the handshake without proofs (a loopback test cluster, or
    /// `--insecure`).
    pub key: Option<ClusterKey>,
    /// This node's code identity, told to the peer ([`CodeIdentity::of_this_process`]).
    pub code: CodeIdentity,
}

/// Why a handshake was refused. Sent to the refused side as a code and one number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The peer's proof does not match this node's cluster key.
    WrongKey,
    /// This node requires a cluster key and the peer has none.
    KeyRequired,
    /// This node has no cluster key and the peer has one.
    KeyUnexpected,
    /// The peer runs another cluster (peers list, node count, pages or manager differ).
    OtherCluster,
    /// The peer dialled node `.0`, but this is another node: the peers lists disagree.
    WrongNode(NodeId),
    /// Node `.0` may not connect here (out of range, or it is this node's turn to dial it).
    NotExpected(NodeId),
    /// Node `.0` is connected already.
    AlreadyConnected(NodeId),
    /// Too many connections are waiting for their handshake; try again.
    Busy,
    /// The handshake did not finish within the deadline.
    TooSlow,
    /// A message that is not the one expected, or malformed.
    Malformed,
}

impl Refusal {
    fn code(self) -> (u8, u16) {
        match self {
            Refusal::WrongKey => (1, 0),
            Refusal::KeyRequired => (2, 0),
            Refusal::KeyUnexpected => (3, 0),
            Refusal::OtherCluster => (4, 0),
            Refusal::WrongNode(n) => (5, n),
            Refusal::NotExpected(n) => (6, n),
            Refusal::AlreadyConnected(n) => (7, n),
            Refusal::Busy => (8, 0),
            Refusal::TooSlow => (9, 0),
            Refusal::Malformed => (10, 0),
        }
    }

    fn from_code(code: u8, n: u16) -> Option<Refusal> {
        Some(match code {
            1 => Refusal::WrongKey,
            2 => Refusal::KeyRequired,
            3 => Refusal::KeyUnexpected,
            4 => Refusal::OtherCluster,
            5 => Refusal::WrongNode(n),
            6 => Refusal::NotExpected(n),
            7 => Refusal::AlreadyConnected(n),
            8 => Refusal::Busy,
            9 => Refusal::TooSlow,
            10 => Refusal::Malformed,
            _ => return None,
        })
    }

    /// Whether trying again later can succeed (the refusing node was busy or the handshake
    /// slow); every other refusal stays a refusal.
    pub fn is_transient(self) -> bool {
        matches!(self, Refusal::Busy | Refusal::TooSlow)
    }

    /// A short name, for counting refusals by kind.
    pub fn kind(self) -> &'static str {
        match self {
            Refusal::WrongKey => "wrong key",
            Refusal::KeyRequired => "no key",
            Refusal::KeyUnexpected => "unexpected key",
            Refusal::OtherCluster => "other cluster",
            Refusal::WrongNode(_) => "wrong node",
            Refusal::NotExpected(_) => "unexpected id",
            Refusal::AlreadyConnected(_) => "already connected",
            Refusal::Busy => "busy",
            Refusal::TooSlow => "too slow",
            Refusal::Malformed => "bad frame",
        }
    }

    /// The Refused message that carries this refusal.
    pub fn encode(self) -> Vec<u8> {
        let (code, n) = self.code();
        let mut m = Vec::with_capacity(REFUSED_LEN);
        m.push(REFUSED);
        m.push(code);
        m.extend_from_slice(&n.to_le_bytes());
        m
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::WrongKey => write!(f, "wrong cluster key"),
            Refusal::KeyRequired => write!(
                f,
                "a cluster key is required and none was given (--key-file, or make one with \
                 `memlink dsm keygen`)"
            ),
            Refusal::KeyUnexpected => write!(
                f,
                "one node has a cluster key and the other none: give every node the same --key-file"
            ),
            Refusal::OtherCluster => write!(
                f,
                "another cluster configuration (the --peers list, node count, pages or manager differ)"
            ),
            Refusal::WrongNode(n) => write!(
                f,
                "the dialled address is node {n}'s: the --peers lists of the two nodes differ"
            ),
            Refusal::NotExpected(n) => write!(f, "node id {n} may not connect here"),
            Refusal::AlreadyConnected(n) => {
                write!(
                    f,
                    "node {n} is connected already (is a node running twice?)"
                )
            }
            Refusal::Busy => write!(f, "too many connections waiting for admission"),
            Refusal::TooSlow => write!(f, "the handshake did not finish in time"),
            Refusal::Malformed => write!(f, "malformed or unexpected handshake message"),
        }
    }
}

/// A Refused message from the peer, if `msg` is one.
fn refused(msg: &[u8]) -> Option<Refusal> {
    match msg {
        [REFUSED, code, a, b] => Refusal::from_code(*code, u16::from_le_bytes([*a, *b])),
        _ => None,
    }
}

/// The MAC of a proof, over everything it binds: the prover's role, (dialer, acceptor) `ids`,
/// the node count, both nonces, the cluster and the prover's code identity. A proof is
/// [`mac_bytes`]; a received one is checked with `verify_slice` (constant time).
// Everything a MAC binds, spelled out at each call: a struct would only rename them.
fn mac(
    key: &ClusterKey,
    prover_is_dialer: bool,
    (dialer, acceptor): (NodeId, NodeId),
    nodes: usize,
    nonces: (&[u8; NONCE_LEN], &[u8; NONCE_LEN]),
    cluster: &ClusterId,
    code: &CodeIdentity,
) -> HmacSha256 {
    // The key is 32 bytes; HMAC takes keys of any length, so this cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    m.update(VERSION_TAG);
    let role: &[u8] = if prover_is_dialer {
        b"role:dialer"
    } else {
        b"role:acceptor"
    };
    m.update(role);
    m.update(&dialer.to_le_bytes());
    m.update(&acceptor.to_le_bytes());
    m.update(&(nodes as u64).to_le_bytes());
    m.update(nonces.0);
    m.update(nonces.1);
    m.update(&cluster.0);
    m.update(&code.encode());
    m
}

/// The bytes of a finished MAC.
fn mac_bytes(mac: HmacSha256) -> [u8; MAC_LEN] {
    mac.finalize().into_bytes().into()
}

fn array<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

/// A fresh nonce from the operating system's random number generator.
pub fn fresh_nonce() -> Result<[u8; NONCE_LEN], String> {
    let mut n = [0u8; NONCE_LEN];
    getrandom::fill(&mut n).map_err(|e| format!("cannot draw a random nonce: {e}"))?;
    Ok(n)
}

/// A parsed Hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The dialling node.
    pub from: NodeId,
    /// The node it means to reach.
    pub to: NodeId,
    /// Its node count.
    pub nodes: u16,
    /// Whether it has a cluster key.
    pub keyed: bool,
    /// Its cluster id.
    pub cluster: ClusterId,
    /// Its nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Its code identity.
    pub code: CodeIdentity,
}

impl Hello {
    /// The message bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(HELLO_LEN);
        m.push(HELLO);
        m.extend_from_slice(&self.from.to_le_bytes());
        m.extend_from_slice(&self.to.to_le_bytes());
        m.extend_from_slice(&self.nodes.to_le_bytes());
        m.push(self.keyed as u8);
        m.extend_from_slice(&self.cluster.0);
        m.extend_from_slice(&self.nonce);
        m.extend_from_slice(&self.code.encode());
        m
    }

    /// Parses a Hello; None if `msg` is not a well-formed one.
    pub fn decode(msg: &[u8]) -> Option<Hello> {
        if msg.len() != HELLO_LEN || msg[0] != HELLO || msg[7] > 1 {
            return None;
        }
        let u16_at = |i: usize| u16::from_le_bytes([msg[i], msg[i + 1]]);
        Some(Hello {
            from: u16_at(1),
            to: u16_at(3),
            nodes: u16_at(5),
            keyed: msg[7] == 1,
            cluster: ClusterId(array(&msg[8..40])),
            nonce: array(&msg[40..72]),
            code: CodeIdentity::decode(&msg[72..HELLO_LEN]).ok()?,
        })
    }
}

/// What the dialling side does next.
#[derive(Debug, PartialEq, Eq)]
pub enum DialStep {
    /// Send this message and wait for the next.
    Send(Vec<u8>),
    /// The peer is admitted: the connection carries frames from now on.
    Admitted,
    /// This side refuses the peer: send the message (a Refused) and close.
    Refuse(Refusal, Vec<u8>),
    /// The peer refused this node: close.
    RefusedBy(Refusal),
}

enum DialState {
    AwaitChallengeOrWelcome,
    AwaitWelcome { nonce_a: [u8; NONCE_LEN] },
    Done,
}

/// The dialling side of one handshake.
pub struct Dialer {
    hs: Handshake,
    target: NodeId,
    nonce_d: [u8; NONCE_LEN],
    state: DialState,
    peer_code: Option<CodeIdentity>,
}

impl Dialer {
    /// Starts a handshake with node `target`, with `nonce` (fresh: [`fresh_nonce`]); returns
    /// the dialer and the Hello to send.
    pub fn start(hs: Handshake, target: NodeId, nonce: [u8; NONCE_LEN]) -> (Dialer, Vec<u8>) {
        let hello = Hello {
            from: hs.me,
            to: target,
            nodes: hs.nodes as u16,
            keyed: hs.key.is_some(),
            cluster: hs.cluster,
            nonce,
            code: hs.code,
        };
        let d = Dialer {
            hs,
            target,
            nonce_d: nonce,
            state: DialState::AwaitChallengeOrWelcome,
            peer_code: None,
        };
        (d, hello.encode())
    }

    fn refuse(&mut self, r: Refusal) -> DialStep {
        self.state = DialState::Done;
        DialStep::Refuse(r, r.encode())
    }

    /// The acceptor's code identity, once it is admitted.
    pub fn peer_code(&self) -> Option<CodeIdentity> {
        self.peer_code
    }

    /// The code identity at the end of a Welcome.
    fn welcome_code(msg: &[u8]) -> Option<CodeIdentity> {
        CodeIdentity::decode(msg.get(1 + MAC_LEN..WELCOME_LEN)?).ok()
    }

    /// Takes the peer's next message.
    pub fn on_message(&mut self, msg: &[u8]) -> DialStep {
        if let Some(r) = refused(msg) {
            self.state = DialState::Done;
            return DialStep::RefusedBy(r);
        }
        let ids = (self.hs.me, self.target);
        match (&self.state, msg.first().copied()) {
            (DialState::AwaitChallengeOrWelcome, Some(CHALLENGE)) if msg.len() == CHALLENGE_LEN => {
                let Some(key) = &self.hs.key else {
                    return self.refuse(Refusal::KeyUnexpected);
                };
                let nonce_a: [u8; NONCE_LEN] = array(&msg[1..]);
                if nonce_a == self.nonce_d {
                    // A node answering with our own nonce is reflecting us.
                    return self.refuse(Refusal::Malformed);
                }
                let proof = mac_bytes(mac(
                    key,
                    true,
                    ids,
                    self.hs.nodes,
                    (&self.nonce_d, &nonce_a),
                    &self.hs.cluster,
                    &self.hs.code,
                ));
                self.state = DialState::AwaitWelcome { nonce_a };
                let mut m = Vec::with_capacity(PROOF_LEN);
                m.push(PROOF);
                m.extend_from_slice(&proof);
                DialStep::Send(m)
            }
            (DialState::AwaitChallengeOrWelcome, Some(WELCOME)) if msg.len() == WELCOME_LEN => {
                if self.hs.key.is_some() {
                    // The peer skipped the proofs: it has no key.
                    return self.refuse(Refusal::KeyRequired);
                }
                let Some(code) = Self::welcome_code(msg) else {
                    return self.refuse(Refusal::Malformed);
                };
                self.peer_code = Some(code);
                self.state = DialState::Done;
                DialStep::Admitted
            }
            (DialState::AwaitWelcome { nonce_a }, Some(WELCOME)) if msg.len() == WELCOME_LEN => {
                let nonce_a = *nonce_a;
                let (Some(key), Some(code)) = (&self.hs.key, Self::welcome_code(msg)) else {
                    return self.refuse(Refusal::Malformed);
                };
                if mac(
                    key,
                    false,
                    ids,
                    self.hs.nodes,
                    (&self.nonce_d, &nonce_a),
                    &self.hs.cluster,
                    &code,
                )
                .verify_slice(&msg[1..1 + MAC_LEN])
                .is_err()
                {
                    return self.refuse(Refusal::WrongKey);
                }
                self.peer_code = Some(code);
                self.state = DialState::Done;
                DialStep::Admitted
            }
            _ => self.refuse(Refusal::Malformed),
        }
    }
}

/// What the accepting side does next.
#[derive(Debug, PartialEq, Eq)]
pub enum AcceptStep {
    /// Send this message and wait for the next.
    Send(Vec<u8>),
    /// The dialer proved itself as node `.0`: check that this id is free, then send
    /// [`Acceptor::welcome`] (or refuse with [`Refusal::AlreadyConnected`]).
    Verified(NodeId),
    /// Refuse the dialer: send the message (a Refused) and close.
    Refuse(Refusal, Vec<u8>),
    /// The dialer refused this node: close.
    RefusedBy(Refusal),
}

enum AcceptState {
    AwaitHello,
    AwaitProof { hello: Hello },
    Verified { hello: Hello },
    Welcomed { hello: Hello },
    Done,
}

/// The accepting side of one handshake.
pub struct Acceptor {
    hs: Handshake,
    nonce_a: [u8; NONCE_LEN],
    state: AcceptState,
}

impl Acceptor {
    /// Waits for a Hello, with `nonce` (fresh: [`fresh_nonce`]) for the challenge.
    pub fn new(hs: Handshake, nonce: [u8; NONCE_LEN]) -> Acceptor {
        Acceptor {
            hs,
            nonce_a: nonce,
            state: AcceptState::AwaitHello,
        }
    }

    fn refuse(&mut self, r: Refusal) -> AcceptStep {
        self.state = AcceptState::Done;
        AcceptStep::Refuse(r, r.encode())
    }

    /// Takes the dialer's next message.
    pub fn on_message(&mut self, msg: &[u8]) -> AcceptStep {
        if let Some(r) = refused(msg) {
            self.state = AcceptState::Done;
            return AcceptStep::RefusedBy(r);
        }
        match &self.state {
            AcceptState::AwaitHello => {
                let Some(hello) = Hello::decode(msg) else {
                    return self.refuse(Refusal::Malformed);
                };
                if hello.nodes as usize != self.hs.nodes || hello.cluster != self.hs.cluster {
                    return self.refuse(Refusal::OtherCluster);
                }
                match (hello.keyed, self.hs.key.is_some()) {
                    (false, true) => return self.refuse(Refusal::KeyRequired),
                    (true, false) => return self.refuse(Refusal::KeyUnexpected),
                    _ => {}
                }
                if hello.to != self.hs.me {
                    return self.refuse(Refusal::WrongNode(self.hs.me));
                }
                if hello.from as usize >= self.hs.nodes || hello.from <= self.hs.me {
                    return self.refuse(Refusal::NotExpected(hello.from));
                }
                if hello.nonce == self.nonce_a {
                    return self.refuse(Refusal::Malformed);
                }
                if self.hs.key.is_none() {
                    self.state = AcceptState::Verified { hello };
                    return AcceptStep::Verified(hello.from);
                }
                self.state = AcceptState::AwaitProof { hello };
                let mut m = Vec::with_capacity(CHALLENGE_LEN);
                m.push(CHALLENGE);
                m.extend_from_slice(&self.nonce_a);
                AcceptStep::Send(m)
            }
            AcceptState::AwaitProof { hello } => {
                let hello = *hello;
                let (Some(key), [PROOF, proof @ ..]) = (&self.hs.key, msg) else {
                    return self.refuse(Refusal::Malformed);
                };
                if proof.len() != MAC_LEN {
                    return self.refuse(Refusal::Malformed);
                }
                if mac(
                    key,
                    true,
                    (hello.from, self.hs.me),
                    self.hs.nodes,
                    (&hello.nonce, &self.nonce_a),
                    &self.hs.cluster,
                    &hello.code,
                )
                .verify_slice(proof)
                .is_err()
                {
                    return self.refuse(Refusal::WrongKey);
                }
                self.state = AcceptState::Verified { hello };
                AcceptStep::Verified(hello.from)
            }
            AcceptState::Verified { .. } | AcceptState::Welcomed { .. } | AcceptState::Done => {
                self.refuse(Refusal::Malformed)
            }
        }
    }

    /// The Welcome for a verified dialer (with this node's proof when keyed); None before the
    /// dialer is verified.
    pub fn welcome(&mut self) -> Option<Vec<u8>> {
        let AcceptState::Verified { hello } = &self.state else {
            return None;
        };
        let mac = match &self.hs.key {
            Some(key) => mac_bytes(mac(
                key,
                false,
                (hello.from, self.hs.me),
                self.hs.nodes,
                (&hello.nonce, &self.nonce_a),
                &self.hs.cluster,
                &self.hs.code,
            )),
            None => [0u8; MAC_LEN],
        };
        self.state = AcceptState::Welcomed { hello: *hello };
        let mut m = Vec::with_capacity(WELCOME_LEN);
        m.push(WELCOME);
        m.extend_from_slice(&mac);
        m.extend_from_slice(&self.hs.code.encode());
        Some(m)
    }

    /// The dialer's code identity, once it is verified.
    pub fn peer_code(&self) -> Option<CodeIdentity> {
        match &self.state {
            AcceptState::Verified { hello } | AcceptState::Welcomed { hello } => Some(hello.code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(me: NodeId, key: Option<u8>) -> Handshake {
        Handshake {
            me,
            nodes: 3,
            cluster: ClusterId::derive(&[b"test"]),
            key: key.map(|k| ClusterKey::from_bytes([k; 32])),
            code: CodeIdentity {
                build: [me as u8; 32],
                anchor: 0x5555_0000 + u64::from(me),
            },
        }
    }

    /// Runs a whole handshake in memory; returns both sides' last steps.
    fn run(d: Handshake, a: Handshake, target: NodeId) -> (DialStep, AcceptStep) {
        let (mut dialer, hello) = Dialer::start(d, target, [1; 32]);
        let mut acceptor = Acceptor::new(a, [2; 32]);
        let mut to_acceptor = hello;
        loop {
            let step = acceptor.on_message(&to_acceptor);
            let to_dialer = match &step {
                AcceptStep::Send(m) => m.clone(),
                AcceptStep::Verified(_) => acceptor.welcome().unwrap(),
                AcceptStep::Refuse(_, m) => m.clone(),
                AcceptStep::RefusedBy(_) => return (DialStep::Admitted, step),
            };
            match dialer.on_message(&to_dialer) {
                DialStep::Send(m) => to_acceptor = m,
                other => return (other, step),
            }
        }
    }

    #[test]
    fn same_key_admits_both_ways() {
        let (d, a) = run(hs(2, Some(7)), hs(0, Some(7)), 0);
        assert_eq!(d, DialStep::Admitted);
        assert_eq!(a, AcceptStep::Verified(2));
        let (d, a) = run(hs(1, None), hs(0, None), 0);
        assert_eq!(d, DialStep::Admitted);
        assert_eq!(a, AcceptStep::Verified(1));
    }

    #[test]
    fn wrong_key_is_refused_by_the_acceptor() {
        let (d, _) = run(hs(1, Some(8)), hs(0, Some(7)), 0);
        assert_eq!(d, DialStep::RefusedBy(Refusal::WrongKey));
        let (d, _) = run(hs(1, None), hs(0, Some(7)), 0);
        assert_eq!(d, DialStep::RefusedBy(Refusal::KeyRequired));
        let (d, _) = run(hs(1, Some(7)), hs(0, None), 0);
        assert_eq!(d, DialStep::RefusedBy(Refusal::KeyUnexpected));
    }

    #[test]
    fn ids_and_cluster_are_checked() {
        let (d, _) = run(hs(1, Some(7)), hs(0, Some(7)), 2);
        assert_eq!(d, DialStep::RefusedBy(Refusal::WrongNode(0)));
        let (d, _) = run(hs(0, Some(7)), hs(1, Some(7)), 1);
        assert_eq!(d, DialStep::RefusedBy(Refusal::NotExpected(0)));
        let mut other = hs(1, Some(7));
        other.cluster = ClusterId::derive(&[b"other"]);
        let (d, _) = run(other, hs(0, Some(7)), 0);
        assert_eq!(d, DialStep::RefusedBy(Refusal::OtherCluster));
    }

    /// A recorded dialer proof does not open a second connection: the acceptor's nonce is
    /// fresh.
    #[test]
    fn a_replayed_proof_fails() {
        let (mut dialer, hello) = Dialer::start(hs(1, Some(7)), 0, [1; 32]);
        let mut first = Acceptor::new(hs(0, Some(7)), [2; 32]);
        let AcceptStep::Send(challenge) = first.on_message(&hello) else {
            panic!()
        };
        let DialStep::Send(proof) = dialer.on_message(&challenge) else {
            panic!()
        };
        assert_eq!(first.on_message(&proof), AcceptStep::Verified(1));
        // The attacker replays Hello and Proof to a later acceptor (fresh nonce).
        let mut later = Acceptor::new(hs(0, Some(7)), [3; 32]);
        assert!(matches!(later.on_message(&hello), AcceptStep::Send(_)));
        assert_eq!(
            later.on_message(&proof),
            AcceptStep::Refuse(Refusal::WrongKey, Refusal::WrongKey.encode())
        );
        // And a recorded Welcome does not convince a later dialer.
        let welcome = first.welcome().unwrap();
        let (mut later_dialer, _) = Dialer::start(hs(1, Some(7)), 0, [4; 32]);
        assert!(matches!(
            later_dialer.on_message(&challenge),
            DialStep::Send(_)
        ));
        assert_eq!(
            later_dialer.on_message(&welcome),
            DialStep::Refuse(Refusal::WrongKey, Refusal::WrongKey.encode())
        );
    }

    /// An attacker without the key who dials node 0 and gets node 0 to compute proofs for
    /// the attacker's nonces cannot use them: node 0 proves only after the dialer did, and
    /// the role in the MAC keeps an acceptor's proof from passing as a dialer's.
    #[test]
    fn a_reflected_transcript_fails() {
        // A real dialer (node 1, keyed) talks to the attacker posing as node 0; the attacker
        // relays node 1's own Hello back to a real acceptor... and then reflects the real
        // node's messages back at it.
        let (mut real_dialer, hello) = Dialer::start(hs(1, Some(7)), 0, [1; 32]);
        // Reflection 1: the attacker sends node 1's own nonce back as the challenge.
        assert_eq!(
            real_dialer.on_message(&[&[CHALLENGE][..], &[1; 32]].concat()),
            DialStep::Refuse(Refusal::Malformed, Refusal::Malformed.encode())
        );
        // Reflection 2: the attacker gets a dialer proof from node 1 for its challenge Na,
        // then presents that proof as a Welcome (the acceptor's proof) to node 1.
        let (mut real_dialer, _) = Dialer::start(hs(1, Some(7)), 0, [1; 32]);
        let challenge = [&[CHALLENGE][..], &[9; 32]].concat();
        let DialStep::Send(proof) = real_dialer.on_message(&challenge) else {
            panic!()
        };
        let mut as_welcome = proof.clone();
        as_welcome[0] = WELCOME;
        as_welcome.extend_from_slice(&hs(0, Some(7)).code.encode());
        assert_eq!(
            real_dialer.on_message(&as_welcome),
            DialStep::Refuse(Refusal::WrongKey, Refusal::WrongKey.encode())
        );
        // Reflection 3: the attacker dials real node 0 and relays its challenge to... node 0
        // itself: node 0's own Welcome-role proof is no dialer proof.
        let mut acceptor = Acceptor::new(hs(0, Some(7)), [2; 32]);
        assert!(matches!(acceptor.on_message(&hello), AcceptStep::Send(_)));
        let acceptor_proof = mac_bytes(mac(
            &ClusterKey::from_bytes([7; 32]),
            false,
            (1, 0),
            3,
            (&[1; 32], &[2; 32]),
            &ClusterId::derive(&[b"test"]),
            &hs(0, Some(7)).code,
        ));
        let reflected = [&[PROOF][..], &acceptor_proof].concat();
        assert_eq!(
            acceptor.on_message(&reflected),
            AcceptStep::Refuse(Refusal::WrongKey, Refusal::WrongKey.encode())
        );
    }

    /// Each side learns the other's code identity; with a key, a code changed in flight
    /// fails the proof; a code that differs does not refuse the connection.
    #[test]
    fn code_identities_are_exchanged_under_the_proofs() {
        for key in [Some(7), None] {
            let (mut dialer, hello) = Dialer::start(hs(2, key), 0, [1; 32]);
            let mut acceptor = Acceptor::new(hs(0, key), [2; 32]);
            let mut to_acceptor = hello;
            let welcome = loop {
                match acceptor.on_message(&to_acceptor) {
                    AcceptStep::Send(m) => match dialer.on_message(&m) {
                        DialStep::Send(p) => to_acceptor = p,
                        other => panic!("{other:?}"),
                    },
                    AcceptStep::Verified(2) => break acceptor.welcome().unwrap(),
                    other => panic!("{other:?}"),
                }
            };
            assert_eq!(acceptor.peer_code(), Some(hs(2, key).code));
            if key.is_some() {
                let mut changed = welcome.clone();
                *changed.last_mut().unwrap() ^= 1;
                let (mut d2, _) = Dialer::start(hs(2, key), 0, [1; 32]);
                let challenge = [&[CHALLENGE][..], &[2; 32]].concat();
                assert!(matches!(d2.on_message(&challenge), DialStep::Send(_)));
                assert_eq!(
                    d2.on_message(&changed),
                    DialStep::Refuse(Refusal::WrongKey, Refusal::WrongKey.encode())
                );
                assert_eq!(d2.peer_code(), None);
            }
            assert_eq!(dialer.on_message(&welcome), DialStep::Admitted);
            assert_eq!(dialer.peer_code(), Some(hs(0, key).code));
            assert_ne!(
                hs(0, key).code,
                hs(2, key).code,
                "they differ, yet admitted"
            );
        }
    }

    #[test]
    fn refusals_round_trip() {
        for r in [
            Refusal::WrongKey,
            Refusal::KeyRequired,
            Refusal::KeyUnexpected,
            Refusal::OtherCluster,
            Refusal::WrongNode(3),
            Refusal::NotExpected(4),
            Refusal::AlreadyConnected(5),
            Refusal::Busy,
            Refusal::TooSlow,
            Refusal::Malformed,
        ] {
            assert_eq!(refused(&r.encode()), Some(r));
        }
    }
}
