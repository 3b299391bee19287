//! What every transport offers: numbered peers, sending a frame to one of them, and a
//! stream of events (frames in, peers lost or left).

use std::fmt;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;

use super::frame::Frame;
use crate::types::NodeId;

/// Something that happened on a transport, delivered in order on its event channel.
#[derive(Debug)]
pub enum TransportEvent {
    /// A validated frame arrived from `from`.
    Frame {
        /// The sending node.
        from: NodeId,
        /// The frame.
        frame: Frame,
    },
    /// The connection to `node` broke (EOF without a Leave, reset, or a bad frame from it).
    Lost {
        /// The peer whose connection broke.
        node: NodeId,
        /// What was seen.
        reason: String,
    },
    /// `node` left the cluster in order (it sent Leave).
    Left {
        /// The peer that left.
        node: NodeId,
    },
}

/// A frame that could not be sent; the frame is handed back.
#[derive(Debug)]
pub struct SendError {
    /// The node the frame was for.
    pub to: NodeId,
    /// Why it could not be sent.
    pub reason: String,
    /// The frame, handed back.
    pub frame: Frame,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not send to node {}: {}", self.to, self.reason)
    }
}

impl std::error::Error for SendError {}

/// Frames between numbered nodes; each implementation also hands out an [`EventSource`] of
/// [`TransportEvent`]s when it is built.
pub trait Transport: Send + Sync {
    /// This node's id.
    fn id(&self) -> NodeId;
    /// The number of nodes, this one included.
    fn nodes(&self) -> usize;
    /// Send `frame` to `to` (not to this node itself). Frames to one peer arrive in order.
    fn send(&self, to: NodeId, frame: Frame) -> Result<(), SendError>;
    /// Send `frames` to `to`, in order, as one batch where the transport can (TCP: one
    /// write, so the peer's reader takes them in one wake-up). On failure the first frame is
    /// handed back; frames before the failure may have been sent.
    fn send_all(&self, to: NodeId, frames: Vec<Frame>) -> Result<(), SendError> {
        frames.into_iter().try_for_each(|f| self.send(to, f))
    }
    /// Frames and bytes sent so far (headers included).
    fn sent(&self) -> (u64, u64);
    /// Tell every peer this node leaves (a Leave frame), then close the connections; over TCP,
    /// wait (bounded) until the peers have closed theirs too, reading what they still send.
    fn close(&self);
    /// As [`Transport::close`], without waiting for the peers (a node dropped mid-run).
    fn close_now(&self) {
        self.close()
    }
    /// Tell every peer but `node` that `node` was lost (once: the first loss told is the one
    /// every later notice would repeat), so that the survivors name it rather than this node
    /// when it fails too. Transports whose losses reach every endpoint at once need not.
    fn announce_lost(&self, node: NodeId, reason: &str) {
        let _ = (node, reason);
    }
}

/// A transport's stream of events, delivered to one handler once attached.
///
/// Over TCP ([`EventSource::direct`]) the reader thread of each connection runs the handler
/// itself, so a message is handled without a hand-off to another thread; events of one peer
/// keep their order, events of different peers may be handled at the same time. Events that
/// arrive before [`EventSource::attach`] wait in a buffer. A channel-backed source
/// ([`EventSource::channel`], used in process) runs the handler on one pump thread, so a
/// handler that sends never re-enters another node's handler on its own thread.
pub struct EventSource {
    kind: SourceKind,
}

enum SourceKind {
    Channel(Receiver<TransportEvent>),
    Direct(Arc<EventSwitch>),
}

type Handler = Box<dyn Fn(TransportEvent) + Send + Sync>;

/// Where the reader threads of a transport put their events (see [`EventSource`]).
#[derive(Default)]
pub struct EventSwitch {
    handler: OnceLock<Handler>,
    buffer: Mutex<Vec<TransportEvent>>,
}

impl EventSwitch {
    /// Hand `event` to the handler, or keep it until one is attached.
    pub fn deliver(&self, event: TransportEvent) {
        if let Some(h) = self.handler.get() {
            return h(event);
        }
        let mut buf = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        match self.handler.get() {
            Some(h) => {
                drop(buf);
                h(event)
            }
            None => buf.push(event),
        }
    }
}

impl EventSource {
    /// Events read from a channel (in-process transports).
    pub fn channel(rx: Receiver<TransportEvent>) -> EventSource {
        EventSource {
            kind: SourceKind::Channel(rx),
        }
    }

    /// Events delivered by the producing threads through `switch` (TCP readers).
    pub fn direct(switch: Arc<EventSwitch>) -> EventSource {
        EventSource {
            kind: SourceKind::Direct(switch),
        }
    }

    /// Deliver every event, buffered ones first, to `handler`.
    pub fn attach(self, handler: impl Fn(TransportEvent) + Send + Sync + 'static) {
        match self.kind {
            SourceKind::Channel(rx) => {
                thread::spawn(move || {
                    for event in rx {
                        handler(event);
                    }
                });
            }
            SourceKind::Direct(switch) => {
                // Drain under the buffer lock and only then publish the handler, so that a
                // reader that finds the handler cannot overtake its own buffered events.
                let mut buf = switch.buffer.lock().unwrap_or_else(|p| p.into_inner());
                for event in buf.drain(..) {
                    handler(event);
                }
                let _ = switch.handler.set(Box::new(handler));
            }
        }
    }

    /// The events as a channel (for tests that read them one by one).
    pub fn into_channel(self) -> Receiver<TransportEvent> {
        match self.kind {
            SourceKind::Channel(rx) => rx,
            kind => {
                let (tx, rx) = std::sync::mpsc::channel();
                let tx = Mutex::new(tx);
                EventSource { kind }.attach(move |e| {
                    if let Ok(tx) = tx.lock() {
                        let _ = tx.send(e);
                    }
                });
                rx
            }
        }
    }
}
