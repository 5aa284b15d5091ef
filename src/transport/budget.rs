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
}
