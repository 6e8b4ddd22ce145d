//! Subscriptions: a connection whose replies go to a handler as they come (Sentinel's
//! `+switch-master`), and whose one slot ends only when the connection fails.

use super::{Conn, OnPush, Step};

impl Conn {
    /// Makes this a subscriber: `on_reply` gets every reply of the subscription that
    /// [`Conn::subscribe`] starts.
    pub(crate) fn set_push(&mut self, on_reply: OnPush) {
        self.cancelable = true;
        self.push = Some(on_reply);
    }

    /// Sends a subscribing command; its replies go to the push handler, and `waiter` hears
    /// only that the connection failed (or could not be made: `false`).
    pub(crate) fn subscribe(&mut self, cmd: &[u8], waiter: u64) -> bool {
        if !self.submit(cmd, usize::MAX, waiter, 0) {
            return false;
        }
        if let Some(slot) = self.slots.back_mut() {
            slot.step = Step::Push;
        }
        self.arm_read_timer();
        true
    }
}
