//! What can end a benchmark run early.

use std::fmt;

use super::pattern::PatternMismatch;

/// Why a transport's ping-pong run failed.
#[derive(Debug)]
pub enum RunError {
    /// Creating the transport's resources (pipes, sockets, segments, channels) failed.
    Setup {
        /// The transport being set up.
        transport: &'static str,
        /// What failed.
        detail: String,
    },
    /// Forking the peer process failed.
    Fork(std::io::Error),
    /// A send or receive failed in this process.
    Transport {
        /// The transport.
        transport: &'static str,
        /// What failed.
        detail: String,
    },
    /// A message arrived with the wrong contents.
    Corrupt {
        /// The transport that delivered it.
        transport: &'static str,
        /// Where it was wrong.
        mismatch: PatternMismatch,
    },
    /// The peer process reported an error and exited.
    PeerFailed {
        /// The transport.
        transport: &'static str,
        /// The peer's own error message.
        detail: String,
    },
    /// The peer process died without a word (killed, or crashed).
    PeerDied {
        /// The transport.
        transport: &'static str,
    },
    /// The transport is not part of this build.
    NotBuilt {
        /// The transport.
        transport: &'static str,
        /// How to get it.
        hint: &'static str,
    },
}

impl RunError {
    /// Setting up `transport` failed, for the reason `detail`.
    pub(crate) fn setup(transport: &'static str, detail: impl fmt::Display) -> Self {
        RunError::Setup {
            transport,
            detail: detail.to_string(),
        }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Setup { transport, detail } => {
                write!(f, "{transport}: setting up the transport failed: {detail}")
            }
            RunError::Fork(e) => write!(
                f,
                "starting the peer process failed: {e} (check the process limit, ulimit -u)"
            ),
            RunError::Transport { transport, detail } => write!(f, "{transport}: {detail}"),
            RunError::Corrupt {
                transport,
                mismatch,
            } => write!(f, "{transport}: {mismatch}"),
            RunError::PeerFailed { transport, detail } => {
                write!(f, "{transport}: the peer process failed: {detail}")
            }
            RunError::PeerDied { transport } => write!(
                f,
                "{transport}: the peer process died (killed or crashed) in the middle of the run"
            ),
            RunError::NotBuilt { transport, hint } => {
                write!(f, "{transport} is not part of this build: {hint}")
            }
        }
    }
}

impl std::error::Error for RunError {}
