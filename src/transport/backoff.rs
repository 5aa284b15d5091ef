//! The one reconnect backoff of every driver: capped exponential waits with jitter, reset
//! only by a session that stayed up. Resetting it at every successful login made a server
//! that accepts the login and then drops the session a login storm at the initial wait.

use std::time::Duration;

use super::options::Reconnect;

pub(super) struct Backoff {
    initial: Duration,
    max: Duration,
    /// Waits since the last session that stayed up.
    exponent: u32,
}

impl Backoff {
    pub(super) fn new(policy: &Reconnect) -> Backoff {
        Backoff {
            initial: policy.initial,
            max: policy.max,
            exponent: 0,
        }
    }

    /// The next wait: `initial`, doubling up to `max`, each 50-100 % of that (jitter keeps
    /// many clients of one restarted PBX from coming back in step).
    pub(super) fn next_wait(&mut self) -> Duration {
        let doubled = self.initial.saturating_mul(1u32 << self.exponent.min(16));
        self.exponent = self.exponent.saturating_add(1);
        doubled.min(self.max).mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    /// A session ended after `lasted`: one that stayed up as long as the longest wait
    /// proves the server well, and the waits start over.
    pub(super) fn session_ended(&mut self, lasted: Duration) {
        if lasted >= self.max {
            self.exponent = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Reconnect {
        Reconnect {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            ..Reconnect::default()
        }
    }

    #[test]
    fn waits_double_up_to_the_cap_within_the_jitter() {
        let mut backoff = Backoff::new(&policy());
        for ceiling in [100, 200, 400, 800, 1000, 1000] {
            let wait = backoff.next_wait();
            let ceiling = Duration::from_millis(ceiling);
            assert!(
                wait <= ceiling && wait >= ceiling / 2,
                "{wait:?} for {ceiling:?}"
            );
        }
    }

    #[test]
    fn only_a_session_that_stayed_up_resets_the_waits() {
        let mut backoff = Backoff::new(&policy());
        for _ in 0..4 {
            backoff.next_wait();
        }
        backoff.session_ended(Duration::from_millis(50));
        assert!(backoff.next_wait() >= Duration::from_millis(500));
        backoff.session_ended(Duration::from_secs(1));
        assert!(backoff.next_wait() <= Duration::from_millis(100));
    }
}
