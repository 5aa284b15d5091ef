//! Memory budgets in bytes, shared by everything one client holds of a kind (the events its
//! streams queue, the HTTP bodies it reads at once): counts alone let a peer with large
//! messages take gigabytes.

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct ByteBudget {
    /// The option that sets it, for errors that say which limit was hit.
    name: &'static str,
    limit: usize,
    used: AtomicUsize,
}

impl ByteBudget {
    pub fn new(name: &'static str, limit: usize) -> ByteBudget {
        ByteBudget {
            name,
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// Takes `bytes` if they fit.
    pub fn try_take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    pub fn give_back(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// "the max_bodies limit of 64 MiB (67108864 bytes)": what an error says it hit.
    pub fn describe(&self) -> String {
        format!("the {} limit of {} bytes", self.name, self.limit)
    }
}

/// Bytes taken from a budget, given back when dropped.
pub struct Held<'a> {
    budget: &'a ByteBudget,
    bytes: usize,
}

impl<'a> Held<'a> {
    pub fn new(budget: &'a ByteBudget) -> Held<'a> {
        Held { budget, bytes: 0 }
    }

    pub fn describe(&self) -> String {
        self.budget.describe()
    }

    pub fn take(&mut self, bytes: usize) -> bool {
        let taken = self.budget.try_take(bytes);
        if taken {
            self.bytes += bytes;
        }
        taken
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

/// What a [`Reserve`] takes from its budget at once: a 64 KiB read of events (some 175) costs
/// one atomic update instead of one per event.
const RESERVE_CHUNK: usize = 64 * 1024;

/// Bytes taken from a budget ahead, in chunks, for a run of small takes that keep what they
/// take (a batch of events joining a queue): the budget's counter is a line the consumer's
/// thread writes too, so one update per take costs every event a locked instruction. A chunk
/// is taken only when it fits, and a take that it cannot cover asks for exactly what is
/// missing, so every take succeeds or fails as it would alone. The spare is given back when
/// dropped.
pub struct Reserve<'a> {
    budget: &'a ByteBudget,
    spare: usize,
}

impl<'a> Reserve<'a> {
    pub fn new(budget: &'a ByteBudget) -> Reserve<'a> {
        Reserve { budget, spare: 0 }
    }

    pub fn take(&mut self, bytes: usize) -> bool {
        if bytes > self.spare {
            let missing = bytes - self.spare;
            let ahead = missing.max(RESERVE_CHUNK);
            if self.budget.try_take(ahead) {
                self.spare += ahead;
            } else if self.budget.try_take(missing) {
                self.spare += missing;
            } else {
                return false;
            }
        }
        self.spare -= bytes;
        true
    }

    /// Bytes let go of meanwhile (an event evicted to make room) serve the next takes.
    pub fn put_back(&mut self, bytes: usize) {
        self.spare += bytes;
    }
}

impl Drop for Reserve<'_> {
    fn drop(&mut self) {
        self.budget.give_back(self.spare);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_what_fits_and_gets_it_back() {
        let budget = ByteBudget::new("max_test", 100);
        assert!(budget.try_take(60));
        assert!(!budget.try_take(50));
        {
            let mut held = Held::new(&budget);
            assert!(held.take(40));
            assert!(!held.take(1));
        }
        assert_eq!(budget.used(), 60);
        budget.give_back(60);
        assert!(budget.try_take(100));
        assert_eq!(budget.describe(), "the max_test limit of 100 bytes");
    }

    /// A reserve decides every take as taking it alone would, near the limit too, and keeps
    /// nothing once dropped.
    #[test]
    fn a_reserve_takes_what_fits_and_gives_back_its_spare() {
        let budget = ByteBudget::new("max_test", RESERVE_CHUNK + 100);
        assert!(budget.try_take(50));
        {
            let mut reserve = Reserve::new(&budget);
            assert!(reserve.take(10)); // a whole chunk, ahead
            assert_eq!(budget.used(), 50 + RESERVE_CHUNK);
            assert!(reserve.take(RESERVE_CHUNK - 10)); // from the spare
            assert!(reserve.take(50)); // no chunk fits: exactly the 50 missing
            assert_eq!(budget.used(), RESERVE_CHUNK + 100);
            assert!(!reserve.take(1));
            reserve.put_back(30);
            assert!(reserve.take(20));
        }
        // Kept: 50 + 10 + (CHUNK - 10) + 50 - 30 + 20; the other 10 given back.
        assert_eq!(budget.used(), 50 + RESERVE_CHUNK + 40);
        let mut reserve = Reserve::new(&budget);
        assert!(!reserve.take(11)); // 10 bytes of room: refused whole, nothing taken
        assert_eq!(budget.used(), 50 + RESERVE_CHUNK + 40);
        assert!(reserve.take(10));
        drop(reserve);
        assert_eq!(budget.used(), RESERVE_CHUNK + 100);
    }
}
