//! loom models of memlink's lock-free protocols. The models live in `tests/` and only
//! compile under `RUSTFLAGS="--cfg memlink_loom"`; `scripts/test-all.sh` runs them.

/// Killing one participant of a model at every step in turn (see
/// `memlink_channels::sync::stop_point`): the death models of the loan, port and ring
/// protocols use it.
#[cfg(memlink_loom)]
pub mod death {
    use memlink_channels::sync::stop;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// The participant a model kills. Cloned into the model; `stopped` is kept outside loom's
    /// state (a std atomic), to learn whether any execution reached the chosen step.
    #[derive(Clone)]
    pub struct Victim {
        step: u32,
        stopped: Arc<AtomicBool>,
    }

    impl Victim {
        /// Runs `body` as the victim: it stops forever at its `step`-th stop point. `None` if
        /// it stopped there, `Some(result)` if it finished first.
        pub fn run<R>(&self, body: impl FnOnce() -> R) -> Option<R> {
            let outcome = stop::run_until(self.step, body);
            if outcome.is_none() {
                self.stopped.store(true, Ordering::SeqCst);
            }
            outcome
        }
    }

    /// Runs `model` under loom with the victim stopping at step 0, 1, 2, ... until no
    /// execution of the model gets the victim that far (it always finishes first): every
    /// step of the victim has then been a point of death. Returns how many steps there were.
    pub fn at_every_step(model: impl Fn(&Victim) + Sync + Send + Clone + 'static) -> u32 {
        for step in 0.. {
            let victim = Victim {
                step,
                stopped: Arc::new(AtomicBool::new(false)),
            };
            let (v, m) = (victim.clone(), model.clone());
            loom::model(move || m(&v));
            if !victim.stopped.load(Ordering::SeqCst) {
                return step;
            }
        }
        unreachable!("a victim with more than u32::MAX steps")
    }
}
