//! Request/reply with request ids over any [`Transport`], one-way messages, and IVY's
//! broadcast with three reply schemes (first reply, all replies, no reply).
//!
//! An [`Endpoint`] runs one dispatcher thread that reads the transport's events: replies
//! complete the waiting calls; requests and one-way messages go to the handler given at
//! start. The handler runs on the dispatcher thread, so it must not wait for a reply itself;
//! a request can be answered later by keeping its [`Responder`] (that is how a lock manager
//! makes a requester wait).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::frame::{Frame, FrameKind};
use super::transport::{EventSource, SendError, Transport, TransportEvent};
use crate::types::NodeId;

/// Who answers a broadcast, and how many answers the caller waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyScheme {
    /// Wait for the first reply (e.g. to find a page's owner: only the owner answers).
    First,
    /// Wait for a reply from every target (e.g. invalidation acknowledgements).
    All,
    /// Expect no reply (e.g. hints).
    None,
}

/// What a broadcast returned.
#[derive(Debug, PartialEq, Eq)]
pub enum BroadcastReply {
    /// The first reply, and who sent it.
    First {
        /// The replying node.
        from: NodeId,
        /// Its reply.
        payload: Vec<u8>,
    },
    /// Every target's reply, in arrival order.
    All(Vec<(NodeId, Vec<u8>)>),
    /// Sent; no reply expected.
    Sent,
}

/// Why a call or broadcast did not get its replies.
#[derive(Debug)]
pub enum CallError {
    /// A node the call depends on was lost.
    NodeLost {
        /// The lost node.
        node: NodeId,
        /// What was seen.
        reason: String,
    },
    /// The request could not be sent (the frame is in the error).
    Send(SendError),
    /// No (or not enough) replies before the timeout.
    TimedOut,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::NodeLost { node, reason } => write!(f, "node {node} lost: {reason}"),
            CallError::Send(e) => write!(f, "{e}"),
            CallError::TimedOut => write!(f, "no reply before the timeout"),
        }
    }
}

impl std::error::Error for CallError {}

/// What the handler is given.
#[derive(Debug)]
pub enum Incoming {
    /// A request; answer it (now or later) through `responder`.
    Request {
        /// The requesting node.
        from: NodeId,
        /// The request.
        payload: Vec<u8>,
        /// Sends the reply.
        responder: Responder,
    },
    /// A one-way message.
    OneWay {
        /// The sending node.
        from: NodeId,
        /// The message.
        payload: Vec<u8>,
    },
    /// A peer's connection broke; calls waiting on it have failed.
    Lost {
        /// The peer.
        node: NodeId,
        /// What was seen.
        reason: String,
    },
    /// A peer left in order.
    Left {
        /// The peer.
        node: NodeId,
    },
}

/// The right to answer one request.
#[derive(Debug)]
pub struct Responder {
    transport: Arc<dyn Transport>,
    to: NodeId,
    request_id: u64,
}

impl fmt::Debug for dyn Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Transport(node {})", self.id())
    }
}

impl Responder {
    /// The node that made the request.
    pub fn requester(&self) -> NodeId {
        self.to
    }

    /// Send the reply.
    pub fn reply(self, payload: Vec<u8>) -> Result<(), SendError> {
        self.transport.send(
            self.to,
            Frame::new(FrameKind::Reply, self.request_id, payload),
        )
    }
}

#[derive(Default)]
struct Collected {
    expected: usize,
    replies: Vec<(NodeId, Vec<u8>)>,
    error: Option<(NodeId, String)>,
    ids: Vec<u64>,
}

#[derive(Default)]
struct Collector {
    state: Mutex<Collected>,
    cond: Condvar,
}

impl Collector {
    fn lock(&self) -> MutexGuard<'_, Collected> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Default)]
struct CallTable {
    pending: HashMap<u64, (NodeId, Arc<Collector>)>,
    /// Set once the cluster failed: every call fails with it.
    failed: Option<(NodeId, String)>,
    dead: HashMap<NodeId, String>,
}

/// Request/reply and broadcast over a transport.
pub struct Endpoint {
    transport: Arc<dyn Transport>,
    calls: Mutex<CallTable>,
    next_id: AtomicU64,
}

impl Endpoint {
    /// Serve `transport` and its `events`; `handler` receives requests, one-way messages and
    /// peer losses.
    pub fn start(
        transport: Arc<dyn Transport>,
        events: EventSource,
        handler: impl Fn(Incoming) + Send + Sync + 'static,
    ) -> Arc<Endpoint> {
        let ep = Endpoint::new(transport);
        ep.serve(events, handler);
        ep
    }

    /// An endpoint that can send and call, but does not handle its events yet: start that
    /// with [`Endpoint::serve`] (events are kept meanwhile).
    pub fn new(transport: Arc<dyn Transport>) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            transport,
            calls: Mutex::new(CallTable::default()),
            next_id: AtomicU64::new(1),
        })
    }

    /// Handle `events` from now on: replies complete the waiting calls; requests, one-way
    /// messages and losses go to `handler`, on the thread that delivers the event (see
    /// [`EventSource`]): it must not wait for a reply itself.
    pub fn serve(
        self: &Arc<Self>,
        events: EventSource,
        handler: impl Fn(Incoming) + Send + Sync + 'static,
    ) {
        let weak: Weak<Endpoint> = Arc::downgrade(self);
        events.attach(move |event| {
            let Some(ep) = weak.upgrade() else { return };
            if let Some(incoming) = ep.dispatch(event) {
                drop(ep);
                handler(incoming);
            }
        });
    }

    fn table(&self) -> MutexGuard<'_, CallTable> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dispatch(&self, event: TransportEvent) -> Option<Incoming> {
        match event {
            TransportEvent::Frame { from, frame } => match frame.kind {
                FrameKind::Reply => {
                    self.complete(frame.request_id, from, frame.payload);
                    None
                }
                FrameKind::Request => Some(Incoming::Request {
                    from,
                    payload: frame.payload,
                    responder: Responder {
                        transport: Arc::clone(&self.transport),
                        to: from,
                        request_id: frame.request_id,
                    },
                }),
                FrameKind::OneWay => Some(Incoming::OneWay {
                    from,
                    payload: frame.payload,
                }),
                // Hello, Leave and lost-node notices are handled by the transport.
                FrameKind::Hello | FrameKind::Leave | FrameKind::Lost => None,
            },
            TransportEvent::Left { node } => {
                // Replies it sent came before its Leave; whatever still waits never gets one.
                self.peer_gone(node, "it left the cluster".into());
                Some(Incoming::Left { node })
            }
            TransportEvent::Lost { node, reason } => {
                self.peer_gone(node, reason.clone());
                Some(Incoming::Lost { node, reason })
            }
        }
    }

    fn peer_gone(&self, node: NodeId, reason: String) {
        let mut t = self.table();
        t.dead.insert(node, reason.clone());
        let failing: Vec<_> = t
            .pending
            .iter()
            .filter(|(_, (to, _))| *to == node)
            .map(|(id, (_, c))| (*id, Arc::clone(c)))
            .collect();
        for (id, c) in failing {
            t.pending.remove(&id);
            c.lock().error.get_or_insert((node, reason.clone()));
            c.cond.notify_all();
        }
    }

    fn complete(&self, id: u64, from: NodeId, payload: Vec<u8>) {
        let mut t = self.table();
        let Some((_, c)) = t.pending.remove(&id) else {
            return; // a late reply to a first-reply broadcast, or to a failed call
        };
        let mut st = c.lock();
        st.replies.push((from, payload));
        if st.replies.len() >= st.expected {
            for other in &st.ids {
                t.pending.remove(other);
            }
        }
        drop(st);
        c.cond.notify_all();
    }

    /// Fail every waiting and later call with `NodeLost { node, reason }` (the cluster failed).
    pub fn fail_all(&self, node: NodeId, reason: &str) {
        let mut t = self.table();
        t.failed.get_or_insert((node, reason.to_string()));
        for (_, (_, c)) in t.pending.drain() {
            c.lock().error.get_or_insert((node, reason.to_string()));
            c.cond.notify_all();
        }
    }

    /// The transport under this endpoint.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// Send a one-way message.
    pub fn send(&self, to: NodeId, payload: Vec<u8>) -> Result<(), SendError> {
        self.transport
            .send(to, Frame::new(FrameKind::OneWay, 0, payload))
    }

    /// Send one-way messages to `to`, in order, as one batch (see [`Transport::send_all`]).
    pub fn send_all(&self, to: NodeId, payloads: Vec<Vec<u8>>) -> Result<(), SendError> {
        let frames = payloads
            .into_iter()
            .map(|p| Frame::new(FrameKind::OneWay, 0, p))
            .collect();
        self.transport.send_all(to, frames)
    }

    /// Send a request to `to` and wait for its reply.
    pub fn call(&self, to: NodeId, payload: Vec<u8>) -> Result<Vec<u8>, CallError> {
        match self.broadcast(&[to], payload, ReplyScheme::First, None)? {
            BroadcastReply::First { payload, .. } => Ok(payload),
            _ => Err(CallError::TimedOut),
        }
    }

    /// Send `payload` to every node in `targets` and wait as `scheme` says, at most `timeout`
    /// (`None`: until the replies come or a target is lost).
    pub fn broadcast(
        &self,
        targets: &[NodeId],
        payload: Vec<u8>,
        scheme: ReplyScheme,
        timeout: Option<Duration>,
    ) -> Result<BroadcastReply, CallError> {
        if scheme == ReplyScheme::None {
            for &to in targets {
                self.send(to, payload.clone()).map_err(CallError::Send)?;
            }
            return Ok(BroadcastReply::Sent);
        }
        let collector = Arc::new(Collector::default());
        let ids: Vec<u64> = targets
            .iter()
            .map(|_| self.next_id.fetch_add(1, Ordering::Relaxed))
            .collect();
        {
            let mut st = collector.lock();
            st.expected = match scheme {
                ReplyScheme::First => 1,
                _ => targets.len(),
            };
            st.ids = ids.clone();
        }
        {
            let mut t = self.table();
            if let Some((node, reason)) = t.failed.clone() {
                return Err(CallError::NodeLost { node, reason });
            }
            for &to in targets {
                if let Some(reason) = t.dead.get(&to) {
                    return Err(CallError::NodeLost {
                        node: to,
                        reason: reason.clone(),
                    });
                }
            }
            for (&id, &to) in ids.iter().zip(targets) {
                t.pending.insert(id, (to, Arc::clone(&collector)));
            }
        }
        for (&id, &to) in ids.iter().zip(targets) {
            let frame = Frame::new(FrameKind::Request, id, payload.clone());
            if let Err(e) = self.transport.send(to, frame) {
                let mut t = self.table();
                for id in &ids {
                    t.pending.remove(id);
                }
                return Err(CallError::Send(e));
            }
        }
        // A timeout too long to add to an Instant is a wait without deadline.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut st = collector.lock();
        loop {
            if st.replies.len() >= st.expected {
                let replies = std::mem::take(&mut st.replies);
                return Ok(match scheme {
                    ReplyScheme::First => {
                        let (from, payload) = replies.into_iter().next().unwrap_or_default();
                        BroadcastReply::First { from, payload }
                    }
                    _ => BroadcastReply::All(replies),
                });
            }
            if let Some((node, reason)) = st.error.clone() {
                return Err(CallError::NodeLost { node, reason });
            }
            st = match deadline {
                None => collector.cond.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        drop(st);
                        let mut t = self.table();
                        for id in &ids {
                            t.pending.remove(id);
                        }
                        return Err(CallError::TimedOut);
                    }
                    collector
                        .cond
                        .wait_timeout(st, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::inproc::InProcTransport;

    /// Three endpoints; node i answers a request with its id appended, and only node 2
    /// answers requests that start with b'?' (the "who owns it" pattern).
    fn cluster() -> Vec<Arc<Endpoint>> {
        InProcTransport::network_sources(3)
            .into_iter()
            .map(|(t, rx)| {
                let me = t.id();
                Endpoint::start(Arc::new(t), rx, move |inc| {
                    if let Incoming::Request {
                        mut payload,
                        responder,
                        ..
                    } = inc
                    {
                        if payload.first() == Some(&b'?') && me != 2 {
                            return; // dropped: no reply from this node
                        }
                        payload.push(me as u8);
                        let _ = responder.reply(payload);
                    }
                })
            })
            .collect()
    }

    #[test]
    fn call_gets_its_own_reply() {
        let eps = cluster();
        assert_eq!(eps[0].call(1, vec![9]).unwrap(), vec![9, 1]);
        assert_eq!(eps[1].call(2, vec![8]).unwrap(), vec![8, 2]);
    }

    #[test]
    fn broadcast_all_first_and_none() {
        let eps = cluster();
        match eps[0]
            .broadcast(&[1, 2], vec![5], ReplyScheme::All, None)
            .unwrap()
        {
            BroadcastReply::All(mut r) => {
                r.sort();
                assert_eq!(r, vec![(1, vec![5, 1]), (2, vec![5, 2])]);
            }
            other => panic!("{other:?}"),
        }
        let first = eps[0]
            .broadcast(&[1, 2], vec![b'?'], ReplyScheme::First, None)
            .unwrap();
        assert_eq!(
            first,
            BroadcastReply::First {
                from: 2,
                payload: vec![b'?', 2]
            }
        );
        assert_eq!(
            eps[0]
                .broadcast(&[1, 2], vec![1], ReplyScheme::None, None)
                .unwrap(),
            BroadcastReply::Sent
        );
    }

    #[test]
    fn a_killed_peer_fails_the_call() {
        let mut net = InProcTransport::network_sources(2);
        let (t1, rx1) = net.pop().unwrap();
        let (t0, rx0) = net.pop().unwrap();
        let ep0 = Endpoint::start(Arc::new(t0), rx0, |_| {});
        // Node 1 never answers; it dies once the request has reached it.
        let (arrived_tx, arrived_rx) = std::sync::mpsc::channel();
        let t1 = Arc::new(t1);
        let _ep1 = Endpoint::start(Arc::clone(&t1) as Arc<dyn Transport>, rx1, move |inc| {
            if let Incoming::Request { .. } = inc {
                let _ = arrived_tx.send(());
            }
        });
        let killer = std::thread::spawn(move || {
            arrived_rx.recv().unwrap();
            t1.kill();
        });
        let r = ep0.call(1, vec![1]);
        killer.join().unwrap();
        assert!(
            matches!(r, Err(CallError::NodeLost { node: 1, .. })),
            "{r:?}"
        );
    }
}
