//! An in-process transport: nodes are endpoints in one process, frames go through channels.
//!
//! Frames are encoded and the header decoded again on the way, so the same validation runs
//! as over TCP. Delivery is in order per pair of nodes and deterministic for a single-threaded
//! test. [`InProcTransport::kill`] simulates the death of a node.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use super::frame::{Frame, FrameKind, HEADER_LEN, Header};
use super::transport::{EventSource, SendError, Transport, TransportEvent};
use crate::types::NodeId;

struct Shared {
    inboxes: Vec<Mutex<Sender<TransportEvent>>>,
    dead: Vec<AtomicBool>,
}

/// One node's end of an in-process network.
pub struct InProcTransport {
    id: NodeId,
    shared: Arc<Shared>,
    frames: AtomicU64,
    bytes: AtomicU64,
}

impl InProcTransport {
    /// A network of `nodes` endpoints; entry `i` is node `i` with its event receiver.
    pub fn network(nodes: usize) -> Vec<(InProcTransport, Receiver<TransportEvent>)> {
        Self::network_raw(nodes)
    }

    /// As [`InProcTransport::network`], with each receiver wrapped as an [`EventSource`]
    /// (what [`Endpoint`](super::Endpoint) and the node runtime take).
    pub fn network_sources(nodes: usize) -> Vec<(InProcTransport, EventSource)> {
        Self::network_raw(nodes)
            .into_iter()
            .map(|(t, rx)| (t, EventSource::channel(rx)))
            .collect()
    }

    fn network_raw(nodes: usize) -> Vec<(InProcTransport, Receiver<TransportEvent>)> {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..nodes).map(|_| channel()).unzip();
        let shared = Arc::new(Shared {
            inboxes: senders.into_iter().map(Mutex::new).collect(),
            dead: (0..nodes).map(|_| AtomicBool::new(false)).collect(),
        });
        receivers
            .into_iter()
            .enumerate()
            .map(|(i, rx)| {
                let t = InProcTransport {
                    id: i as NodeId,
                    shared: Arc::clone(&shared),
                    frames: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                };
                (t, rx)
            })
            .collect()
    }

    /// Simulate the death of this node: every other node sees its connection break.
    pub fn kill(&self) {
        self.shared.dead[self.id as usize].store(true, Ordering::SeqCst);
        self.tell_others(|me| TransportEvent::Lost {
            node: me,
            reason: "connection reset (node killed)".into(),
        });
    }

    fn tell_others(&self, event: impl Fn(NodeId) -> TransportEvent) {
        for (i, inbox) in self.shared.inboxes.iter().enumerate() {
            if i != self.id as usize {
                if let Ok(tx) = inbox.lock() {
                    let _ = tx.send(event(self.id));
                }
            }
        }
    }
}

impl Transport for InProcTransport {
    fn id(&self) -> NodeId {
        self.id
    }

    fn nodes(&self) -> usize {
        self.shared.inboxes.len()
    }

    fn send(&self, to: NodeId, frame: Frame) -> Result<(), SendError> {
        let fail = |frame, reason: &str| {
            Err(SendError {
                to,
                reason: reason.into(),
                frame,
            })
        };
        if to == self.id || to as usize >= self.nodes() {
            return fail(frame, "no such peer");
        }
        if self.shared.dead[to as usize].load(Ordering::SeqCst)
            || self.shared.dead[self.id as usize].load(Ordering::SeqCst)
        {
            return fail(frame, "connection reset");
        }
        // Go through the wire format so the same header checks apply as over TCP.
        let bytes = match frame.encode() {
            Ok(b) => b,
            Err(e) => return fail(frame, &e.to_string()),
        };
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&bytes[..HEADER_LEN]);
        let header = match Header::decode(&h) {
            Ok(h) => h,
            Err(e) => return fail(frame, &e.to_string()),
        };
        let event = if header.kind == FrameKind::Leave {
            TransportEvent::Left { node: self.id }
        } else {
            TransportEvent::Frame {
                from: self.id,
                frame: Frame::new(header.kind, header.request_id, bytes[HEADER_LEN..].to_vec()),
            }
        };
        let inbox = match self.shared.inboxes[to as usize].lock() {
            Ok(g) => g,
            Err(_) => return fail(frame, "inbox poisoned"),
        };
        // Counted before delivery, so that an answer is never seen before its cause counts.
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if inbox.send(event).is_err() {
            drop(inbox);
            self.frames.fetch_sub(1, Ordering::Relaxed);
            self.bytes.fetch_sub(bytes.len() as u64, Ordering::Relaxed);
            return fail(frame, "peer closed");
        }
        Ok(())
    }

    fn sent(&self) -> (u64, u64) {
        (
            self.frames.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    fn close(&self) {
        self.tell_others(|me| TransportEvent::Left { node: me });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_arrive_in_order_and_kill_is_seen() {
        let mut net = InProcTransport::network(3);
        let (t2, rx2) = net.pop().unwrap();
        let (_t1, rx1) = net.pop().unwrap();
        let (t0, _rx0) = net.pop().unwrap();
        for i in 0..3u8 {
            t0.send(1, Frame::new(FrameKind::OneWay, 0, vec![i]))
                .unwrap();
        }
        for i in 0..3u8 {
            match rx1.recv().unwrap() {
                TransportEvent::Frame { from: 0, frame } => assert_eq!(frame.payload, vec![i]),
                other => panic!("unexpected {other:?}"),
            }
        }
        t0.kill();
        assert!(matches!(
            rx1.recv().unwrap(),
            TransportEvent::Lost { node: 0, .. }
        ));
        assert!(matches!(
            rx2.recv().unwrap(),
            TransportEvent::Lost { node: 0, .. }
        ));
        let err = t2
            .send(0, Frame::new(FrameKind::OneWay, 0, vec![7]))
            .unwrap_err();
        assert_eq!(err.frame.payload, vec![7], "the frame is handed back");
        assert_eq!(t0.sent().0, 3);
    }
}
