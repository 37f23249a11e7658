//! When an awake connection counts as idle, so that it may go dormant (see
//! [`crate::dormant`]). Sans-IO: it is told the time and what happened.

use std::time::{Duration, Instant};

/// How a connection enters its run loop: when it first checks for idleness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waking {
    /// Just connected: idle as soon as nothing is ready.
    New,
    /// Woken from dormancy, or kept awake: idle after `limits.dormant_after_ms` of quiet.
    Again,
}

/// The idle check of one run loop.
///
/// At [`IdleCheck::deadline`] the connection is quiet if neither its peer nor a publisher
/// stirred it since the previous check, so it goes dormant between one and two `after` of
/// quiet. The check is lazy rather than re-armed on every wake-up, which would reset the
/// loop's timer once per message. A new connection's first check is due at once, so a client
/// that sends nothing after CONNECT goes dormant as soon as its CONNACK is out.
///
/// A check already due is not left to the loop's timer: it is a `select!` branch polled
/// last, so it fires only when nothing else is ready. tokio fires timers only when a worker
/// turns its driver, which a busy worker does rarely: through a burst of connects a due timer
/// kept every new connection's task (1,152 bytes) alive, and their freed memory stayed behind
/// as holes among the connections that remained (~1,100 tasks' worth at 20k connects/s).
#[derive(Debug)]
pub(crate) struct IdleCheck {
    after: Duration,
    at: Instant,
    stirred: bool,
}

impl IdleCheck {
    /// A check every `after`, the first as `waking` says.
    pub(crate) fn new(after: Duration, waking: Waking, now: Instant) -> Self {
        let at = match waking {
            Waking::New => now,
            Waking::Again => now + after,
        };
        IdleCheck {
            after,
            at,
            stirred: false,
        }
    }

    /// When the next check is due.
    pub(crate) fn deadline(&self) -> Instant {
        self.at
    }

    /// The peer sent something or a delivery arrived.
    pub(crate) fn stir(&mut self) {
        self.stirred = true;
    }

    /// At a timer expiry: whether the connection was quiet for a whole period. If not (or
    /// the check is not due yet), the next period starts.
    pub(crate) fn quiet(&mut self, now: Instant) -> bool {
        if now < self.at {
            return false;
        }
        if !self.stirred {
            return true;
        }
        self.stirred = false;
        self.at = now + self.after;
        false
    }

    /// Something other than quiet keeps the connection awake (bytes buffered, a reply
    /// held): check again a period later.
    pub(crate) fn postpone(&mut self, now: Instant) {
        self.at = now + self.after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(1);

    #[test]
    fn a_new_connection_is_quiet_at_once() {
        let now = Instant::now();
        let mut check = IdleCheck::new(AFTER, Waking::New, now);
        assert_eq!(check.deadline(), now);
        assert!(check.quiet(now));
    }

    #[test]
    fn a_woken_connection_waits_a_whole_period() {
        let now = Instant::now();
        let mut check = IdleCheck::new(AFTER, Waking::Again, now);
        assert!(!check.quiet(now), "not due yet");
        assert!(check.quiet(now + AFTER));
    }

    #[test]
    fn a_stirred_period_starts_another() {
        let now = Instant::now();
        let mut check = IdleCheck::new(AFTER, Waking::Again, now);
        check.stir();
        let first = now + AFTER;
        assert!(!check.quiet(first));
        assert_eq!(check.deadline(), first + AFTER);
        assert!(check.quiet(first + AFTER), "nothing since the last check");
    }

    #[test]
    fn a_busy_connection_is_checked_again_later() {
        let now = Instant::now();
        let mut check = IdleCheck::new(AFTER, Waking::New, now);
        check.postpone(now);
        assert_eq!(check.deadline(), now + AFTER);
        assert!(!check.quiet(now));
    }
}
