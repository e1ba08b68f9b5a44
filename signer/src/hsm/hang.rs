//! A test hook, compiled only with the `test-hooks` feature (which only the
//! signer's own tests turn on): the pool's next signing call blocks, as a
//! PKCS#11 call that never returns would, until the guard is dropped; the
//! call then fails without reaching `C_Sign` ([`Hang::arm`]), or goes on and
//! signs ([`Hang::arm_hold`]: a slow HSM call, for racing other requests).
//!
//! SoftHSM answers every call promptly, so a hung HSM cannot be had otherwise.

use std::sync::{Arc, Condvar, Mutex};

#[derive(Debug, Default)]
struct State {
    armed: bool,
    // The blocked call signs once released, instead of failing.
    proceed: bool,
    hung: bool,
    released: bool,
}

/// The hook the pool holds.
#[derive(Debug, Default)]
pub struct Hang {
    state: Mutex<State>,
    wake: Condvar,
}

/// Keeps the hung call blocked until dropped.
#[derive(Debug)]
pub struct HangGuard(Arc<Hang>);

impl HangGuard {
    /// Whether a call is blocked on the hook now.
    pub fn is_hung(&self) -> bool {
        self.0.lock().hung
    }
}

impl Drop for HangGuard {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.armed = false;
        state.released = true;
        self.0.wake.notify_all();
    }
}

impl Hang {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Arms the hook for the next signing call, which fails once released.
    pub fn arm(self: &Arc<Self>) -> HangGuard {
        *self.lock() = State {
            armed: true,
            ..State::default()
        };
        HangGuard(Arc::clone(self))
    }

    /// Arms the hook for the next signing call, which signs once released.
    pub fn arm_hold(self: &Arc<Self>) -> HangGuard {
        *self.lock() = State {
            armed: true,
            proceed: true,
            ..State::default()
        };
        HangGuard(Arc::clone(self))
    }

    /// Blocks the calling thread if the hook is armed (once), until released;
    /// true when this call was the hung one and must fail.
    pub(crate) fn block_if_armed(&self) -> bool {
        let mut state = self.lock();
        if !state.armed {
            return false;
        }
        state.armed = false;
        state.hung = true;
        while !state.released {
            state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.hung = false;
        !state.proceed
    }
}
