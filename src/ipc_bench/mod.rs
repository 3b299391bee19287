//! The inter-process round-trip benchmark behind `memlink bench ipc`, `memlink demo` and
//! the `ipc` criterion bench.
//!
//! Every transport runs the same ping-pong between two real processes (the measuring
//! process forks its peer): the client sends a message of the current size, the peer
//! checks it and answers with a message of the same size, the client checks the answer.
//! Per size: warm-up round trips with every byte checked, then timed round trips with
//! stamps checked (see [`pattern`]); the figures are round-trip p50/p99, one-way
//! messages per second and payload GB/s.
//!
//! ```no_run
//! use memlink::ipc_bench::{Plan, Transport, Wait, measure};
//! let plan = Plan::new(vec![8, 4096], 1000);
//! let rows = measure(Transport::Pipe, &plan, Wait::Block, &mut |_size| {}).unwrap();
//! println!("pipe 8 B p50: {} ns", rows[0].rtt_ns_p50);
//! ```
//!
//! The measuring process must be single-threaded when it calls [`measure`] (the CLI and
//! the criterion bench are): the peer is forked from it.

mod affinity;
mod cache_line;
mod channel_buffered;
mod channel_loan;
mod channel_sync;
mod error;
mod fixed_size;
mod floor_ping_pong;
mod futex_floor;
#[cfg(feature = "iceoryx2")]
mod iceoryx2_pubsub;
mod measurement;
pub mod pattern;
mod peer;
mod per_size_runner;
mod pipe;
mod plan;
mod report;
mod shared_words;
pub mod size;
mod spin_wait;
mod stream;
mod unix_socket;

pub use affinity::{PinError, pin};
pub use error::RunError;
pub use measurement::Measurement;
pub use plan::{Msg, Plan, SizeTiming};
pub use report::{PlotError, format_ns, format_table, plot_svg};

use std::fmt;

use memlink_channels::WaitMode;

/// The loan pool's slot size in this benchmark, and so the largest message size.
pub const MAX_MESSAGE: usize = 16 << 20;

/// How the waiting side of a memlink channel waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wait {
    /// Busy-wait on shared memory.
    Spin,
    /// Sleep on a futex (a context switch per wait).
    Block,
}

impl Wait {
    /// `spin` or `block`.
    pub fn name(self) -> &'static str {
        match self {
            Wait::Spin => "spin",
            Wait::Block => "block",
        }
    }
}

/// The channels' wait mode for `wait`.
pub(crate) fn wait_mode(wait: Wait) -> WaitMode {
    match wait {
        Wait::Spin => WaitMode::Spin,
        Wait::Block => WaitMode::Block,
    }
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A way to move a message between two processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// memlink's loan channel: the message is built in a shared slot, only its index
    /// travels (zero copies).
    Loan,
    /// memlink's synchronous channel: one copy, from the sender's variable straight into
    /// the receiver's.
    Sync,
    /// memlink's buffered k-slot channel: two copies (into the ring, out of it).
    Buffered,
    /// A pipe each way (two kernel copies per message).
    Pipe,
    /// A unix stream socket pair (two kernel copies per message).
    UnixSocket,
    /// Raw floor: an 8-byte sequence number bounced through two shared cache lines.
    CacheLine,
    /// Raw floor: two futex words in shared memory, wake and wait each way.
    Futex,
    /// iceoryx2 publish-subscribe with loaned slices (needs the `iceoryx2` feature).
    Iceoryx2,
}

impl Transport {
    /// Every transport, in run and table order: the floors first, so that a check at the
    /// end of a run can compare the machine's speed at its start and end.
    pub const ALL: [Transport; 8] = [
        Transport::CacheLine,
        Transport::Futex,
        Transport::Loan,
        Transport::Sync,
        Transport::Buffered,
        Transport::Pipe,
        Transport::UnixSocket,
        Transport::Iceoryx2,
    ];

    /// The name used on the command line, in tables and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Loan => "loan",
            Transport::Sync => "sync",
            Transport::Buffered => "buffered",
            Transport::Pipe => "pipe",
            Transport::UnixSocket => "unix-socket",
            Transport::CacheLine => "cache-line",
            Transport::Futex => "futex",
            Transport::Iceoryx2 => "iceoryx2",
        }
    }

    /// The transport with this name.
    pub fn from_name(name: &str) -> Option<Transport> {
        Transport::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Copies of the payload per one-way message.
    pub fn copies(self) -> u32 {
        match self {
            Transport::Buffered | Transport::Pipe | Transport::UnixSocket => 2,
            Transport::Sync => 1,
            Transport::Loan | Transport::CacheLine | Transport::Futex | Transport::Iceoryx2 => 0,
        }
    }

    /// How this transport waits when the memlink channels wait by `wait`: memlink's
    /// channels as told, the kernel transports and the futex floor block, the cache-line
    /// floor and iceoryx2 poll.
    pub fn wait_label(self, wait: Wait) -> Wait {
        match self {
            Transport::Loan | Transport::Sync | Transport::Buffered => wait,
            Transport::Pipe | Transport::UnixSocket | Transport::Futex => Wait::Block,
            Transport::CacheLine | Transport::Iceoryx2 => Wait::Spin,
        }
    }

    /// Whether the transport is a raw floor (always 8-byte messages, whatever the sizes).
    pub fn is_floor(self) -> bool {
        matches!(self, Transport::CacheLine | Transport::Futex)
    }

    /// Whether this build includes the transport.
    pub fn is_built(&self) -> bool {
        *self != Transport::Iceoryx2 || cfg!(feature = "iceoryx2")
    }

    /// Whether the transport carries messages of `size` bytes in this benchmark: the
    /// typed channels (sync, buffered) are built for powers of two from 8 B to 16 MiB,
    /// the others take any size from 8 B to [`MAX_MESSAGE`].
    pub fn supports_size(self, size: usize) -> bool {
        match self {
            Transport::Sync | Transport::Buffered => fixed_size::is_supported(size),
            _ => (size::MIN_SIZE..=MAX_MESSAGE).contains(&size),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Runs `transport`'s ping-pong over `plan` and summarises each size. `size_done` is
/// told each size as it finishes (for progress). Floors run at 8 bytes only.
pub fn measure(
    transport: Transport,
    plan: &Plan,
    wait: Wait,
    size_done: &mut (dyn FnMut(usize) + Send),
) -> Result<Vec<Measurement>, RunError> {
    let timings = round_trips(transport, plan, wait, size_done)?;
    let label = transport.wait_label(wait);
    Ok(timings
        .iter()
        .map(|t| Measurement::from_timing(transport.name(), transport.copies(), label.name(), t))
        .collect())
}

/// Runs `transport`'s ping-pong over `plan` and returns every timed round trip, per
/// size (for criterion's `iter_custom`, which wants the raw durations).
pub fn round_trips(
    transport: Transport,
    plan: &Plan,
    wait: Wait,
    size_done: &mut (dyn FnMut(usize) + Send),
) -> Result<Vec<SizeTiming>, RunError> {
    affinity::apply(transport.wait_label(wait) == Wait::Spin).map_err(|e| {
        RunError::setup(
            transport.name(),
            format!("setting the CPU affinity failed: {e}"),
        )
    })?;
    match transport {
        Transport::Loan => channel_loan::run(plan, wait, size_done),
        Transport::Sync => {
            per_size_runner::run::<channel_sync::SyncPingPong>(plan, wait, size_done)
        }
        Transport::Buffered => {
            per_size_runner::run::<channel_buffered::BufferedPingPong>(plan, wait, size_done)
        }
        Transport::Pipe => pipe::run(plan, size_done),
        Transport::UnixSocket => unix_socket::run(plan, size_done),
        Transport::CacheLine => floor_ping_pong::run::<cache_line::CacheLineFloor>(plan, size_done),
        Transport::Futex => floor_ping_pong::run::<futex_floor::FutexFloor>(plan, size_done),
        #[cfg(feature = "iceoryx2")]
        Transport::Iceoryx2 => iceoryx2_pubsub::run(plan, size_done),
        #[cfg(not(feature = "iceoryx2"))]
        Transport::Iceoryx2 => Err(RunError::NotBuilt {
            transport: "iceoryx2",
            hint: "rebuild with `cargo build --release --features iceoryx2`",
        }),
    }
}
