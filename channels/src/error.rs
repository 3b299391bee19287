//! One error type per channel operation. Errors of operations that take a message hand it back.

use crate::wait::WaitFailure;
use std::fmt;

/// `send` failed; the message is handed back.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError<T> {
    /// The receiver closed its endpoint or its process died.
    Disconnected(T),
    /// The message variable is not in the channel's shared region, so a receiver in another
    /// process could not reach it: allocate it with `Region::alloc`.
    NotShared(T),
}

/// `try_send` failed; the message is handed back.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// No room (buffered, port), or no receiver waiting (synchronous channel).
    Full(T),
    /// The receiver closed its endpoint or its process died.
    Disconnected(T),
    /// The message variable is not in the channel's shared region.
    NotShared(T),
}

/// `send_timeout` failed; the message is handed back.
#[derive(Debug, PartialEq, Eq)]
pub enum SendTimeoutError<T> {
    /// The deadline passed first.
    Timeout(T),
    /// The receiver closed its endpoint or its process died.
    Disconnected(T),
    /// The message variable is not in the channel's shared region.
    NotShared(T),
}

macro_rules! into_inner {
    ($name:ident { $($variant:ident),* }) => {
        impl<T> $name<T> {
            /// The message that could not be sent.
            pub fn into_inner(self) -> T {
                match self { $($name::$variant(m) => m,)* }
            }
        }
    };
}
into_inner!(SendError {
    Disconnected,
    NotShared
});
into_inner!(TrySendError {
    Full,
    Disconnected,
    NotShared
});
into_inner!(SendTimeoutError {
    Timeout,
    Disconnected,
    NotShared
});

const NOT_SHARED: &str = "the variable is outside the channel's shared region, so the peer process \
                          cannot reach it; allocate it with Region::alloc";
const PEER_GONE: &str = "the peer closed its end of the channel or its process died";

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Disconnected(_) => write!(f, "send failed: {PEER_GONE}"),
            SendError::NotShared(_) => write!(f, "send failed: {NOT_SHARED}"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => {
                write!(
                    f,
                    "try_send would block: no room, or no receiver waiting; retry or use send"
                )
            }
            TrySendError::Disconnected(_) => write!(f, "try_send failed: {PEER_GONE}"),
            TrySendError::NotShared(_) => write!(f, "try_send failed: {NOT_SHARED}"),
        }
    }
}

impl<T> fmt::Display for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => write!(
                f,
                "send timed out: the receiver did not take the message in time"
            ),
            SendTimeoutError::Disconnected(_) => write!(f, "send failed: {PEER_GONE}"),
            SendTimeoutError::NotShared(_) => write!(f, "send failed: {NOT_SHARED}"),
        }
    }
}

impl<T: fmt::Debug> std::error::Error for SendError<T> {}
impl<T: fmt::Debug> std::error::Error for TrySendError<T> {}
impl<T: fmt::Debug> std::error::Error for SendTimeoutError<T> {}

/// `recv` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// Every sender closed or died, and nothing is left to receive.
    Disconnected,
    /// The target variable is not in the channel's shared region.
    NotShared,
}

/// `try_recv` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing to receive right now.
    Empty,
    /// Every sender closed or died, and nothing is left to receive.
    Disconnected,
    /// The target variable is not in the channel's shared region.
    NotShared,
}

/// `recv_timeout` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// Nothing arrived before the deadline.
    Timeout,
    /// Every sender closed or died, and nothing is left to receive.
    Disconnected,
    /// The target variable is not in the channel's shared region.
    NotShared,
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Disconnected => {
                write!(f, "recv failed: {PEER_GONE}, and no message is left")
            }
            RecvError::NotShared => write!(f, "recv failed: {NOT_SHARED}"),
        }
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => write!(f, "try_recv found no message; retry or use recv"),
            TryRecvError::Disconnected => {
                write!(f, "try_recv failed: {PEER_GONE}, and no message is left")
            }
            TryRecvError::NotShared => write!(f, "try_recv failed: {NOT_SHARED}"),
        }
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => write!(f, "recv timed out: no message arrived in time"),
            RecvTimeoutError::Disconnected => {
                write!(f, "recv failed: {PEER_GONE}, and no message is left")
            }
            RecvTimeoutError::NotShared => write!(f, "recv failed: {NOT_SHARED}"),
        }
    }
}

impl std::error::Error for RecvError {}
impl std::error::Error for TryRecvError {}
impl std::error::Error for RecvTimeoutError {}

/// `loan` failed: no slot could be borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoanError {
    /// Every slot is loaned, queued or held (back-pressure); retry, wait, or drop samples.
    Exhausted,
    /// The receiver closed its endpoint or its process died.
    Disconnected,
}

impl fmt::Display for LoanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoanError::Exhausted => write!(
                f,
                "no free slot: every slot is loaned, in flight or held by the receiver; \
                 retry later, use a blocking loan, or create the channel with more slots"
            ),
            LoanError::Disconnected => write!(f, "loan failed: {PEER_GONE}"),
        }
    }
}

impl std::error::Error for LoanError {}

/// Creating a channel (or opening an endpoint) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// The region has no room for the channel.
    OutOfSpace(crate::region::AllocError),
    /// A bad parameter (zero slots, zero capacity, slot too large...).
    BadParameter(&'static str),
    /// This end of the channel is already held by a live process.
    EndpointTaken {
        /// The pid holding it.
        holder: u32,
    },
    /// The port's receive right is not in transit at that generation (already claimed, or
    /// a stale token).
    RightNotAvailable,
    /// The port has no room for another sender process.
    TooManySenders,
    /// The reference does not name a channel of this kind in this region.
    BadReference,
    /// The channel's layout in the region failed a check in `open` (a field named in the
    /// error was changed by a process with write access to the region).
    CorruptLayout(crate::layout::LayoutError),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::OutOfSpace(e) => write!(f, "cannot place the channel: {e}"),
            ConnectError::BadParameter(what) => write!(f, "bad channel parameter: {what}"),
            ConnectError::EndpointTaken { holder } => write!(
                f,
                "this end of the channel is held by live process {holder}; drop it there first"
            ),
            ConnectError::RightNotAvailable => write!(
                f,
                "the receive right is not in transit at that generation (already claimed or stale)"
            ),
            ConnectError::TooManySenders => write!(
                f,
                "the port already has {} live sender processes",
                crate::protocol::mpsc::MAX_SENDERS
            ),
            ConnectError::BadReference => {
                write!(
                    f,
                    "the reference does not name a channel of this kind in this region"
                )
            }
            ConnectError::CorruptLayout(e) => write!(f, "cannot open the channel: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

impl From<crate::layout::LayoutError> for ConnectError {
    fn from(e: crate::layout::LayoutError) -> Self {
        ConnectError::CorruptLayout(e)
    }
}

impl From<crate::region::AllocError> for ConnectError {
    fn from(e: crate::region::AllocError) -> Self {
        ConnectError::OutOfSpace(e)
    }
}

/// How a failed wait maps to each operation's error: one place, used by every channel kind.
impl<T> TrySendError<T> {
    pub(crate) fn from_wait(failure: WaitFailure, value: T) -> Self {
        match failure {
            WaitFailure::Disconnected => TrySendError::Disconnected(value),
            WaitFailure::TimedOut => TrySendError::Full(value),
        }
    }
}

impl<T> SendTimeoutError<T> {
    pub(crate) fn from_wait(failure: WaitFailure, value: T) -> Self {
        match failure {
            WaitFailure::Disconnected => SendTimeoutError::Disconnected(value),
            WaitFailure::TimedOut => SendTimeoutError::Timeout(value),
        }
    }
}

impl From<WaitFailure> for TryRecvError {
    fn from(failure: WaitFailure) -> Self {
        match failure {
            WaitFailure::Disconnected => TryRecvError::Disconnected,
            WaitFailure::TimedOut => TryRecvError::Empty,
        }
    }
}

impl From<WaitFailure> for RecvTimeoutError {
    fn from(failure: WaitFailure) -> Self {
        match failure {
            WaitFailure::Disconnected => RecvTimeoutError::Disconnected,
            WaitFailure::TimedOut => RecvTimeoutError::Timeout,
        }
    }
}
