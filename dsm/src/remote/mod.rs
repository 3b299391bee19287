//! Remote operations (IVY's first module): frames, transports and request/reply.
//!
//! - [`frame`]: the length-prefixed, validated frame format;
//! - [`notice`]: the lost-node notice a node sends its peers before it fails;
//! - [`transport`]: the [`Transport`] trait and its events;
//! - [`tcp`]: one TCP connection per pair of nodes, all-to-all at start;
//! - [`inproc`]: the same between endpoints of one process, for deterministic tests;
//! - [`rpc`]: request/reply with request ids, one-way messages, broadcast with three reply
//!   schemes.
//!
//! ```
//! use std::sync::Arc;
//! use memlink_dsm::remote::{Endpoint, InProcTransport, Incoming, ReplyScheme, BroadcastReply};
//!
//! let mut endpoints = Vec::new();
//! for (transport, events) in InProcTransport::network_sources(3) {
//!     let me = memlink_dsm::remote::Transport::id(&transport) as u8;
//!     endpoints.push(Endpoint::start(Arc::new(transport), events, move |incoming| {
//!         if let Incoming::Request { responder, .. } = incoming {
//!             let _ = responder.reply(vec![me]); // every node answers with its id
//!         }
//!     }));
//! }
//! assert_eq!(endpoints[0].call(2, b"ping".to_vec()).unwrap(), vec![2]);
//! let all = endpoints[0].broadcast(&[1, 2], b"inv".to_vec(), ReplyScheme::All, None).unwrap();
//! assert!(matches!(all, BroadcastReply::All(r) if r.len() == 2));
//! ```

pub mod frame;
pub mod inproc;
pub mod notice;
pub mod rpc;
#[cfg(not(memlink_loom))]
pub mod tcp;
pub mod transport;

pub use frame::{Frame, FrameError, FrameKind, Header};
pub use inproc::InProcTransport;
pub use notice::{LostNotice, NoticeError};
pub use rpc::{BroadcastReply, CallError, Endpoint, Incoming, ReplyScheme, Responder};
#[cfg(not(memlink_loom))]
pub use tcp::{ConnectError, TcpConfig, TcpTransport};
pub use transport::{EventSource, EventSwitch, SendError, Transport, TransportEvent};
