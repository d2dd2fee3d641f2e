//! The ingest memory budget: how many bytes of request data (bodies, decoded spans,
//! encoded batches) the daemon holds at once, over every client.
//!
//! A request takes a [`Reservation`] and charges it *before* it allocates: body bytes as
//! they stream in, and what each decoded element will cost in memory as soon as its
//! count is read from the wire (a list of ten million empty spans is ten million
//! `Span`s, whatever its size on the wire). One request may hold at most its share of
//! the budget; past that it can never fit and is refused as too large (413). When the
//! budget as a whole is in use, the charge fails as busy (503 + `Retry-After`). Both are
//! decided at once, never by waiting. Dropping the reservation gives its bytes back.
//!
//! This module only counts; receivers decide what an element costs, servers map the
//! errors to answers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use thiserror::Error;

use crate::error::ErrorCode;

/// Bytes taken from the shared count at a time, so charging a small element is a local
/// addition, not an atomic operation.
const GRAIN: usize = 256 << 10;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BudgetError {
    #[error("this request needs more than {share} bytes of memory to decode (its share of the {total}-byte ingest memory budget); send smaller batches")]
    TooLarge { share: usize, total: usize },
    #[error("the {total}-byte ingest memory budget is in use by other requests; retry later")]
    Busy { total: usize },
}

impl BudgetError {
    pub fn code(&self) -> ErrorCode {
        match self {
            BudgetError::TooLarge { .. } => ErrorCode::TooLarge,
            BudgetError::Busy { .. } => ErrorCode::Unavailable,
        }
    }
}

/// The daemon-wide budget.
#[derive(Debug)]
pub struct MemoryBudget {
    total: usize,
    share: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `total` bytes of which one request may hold `share`.
    pub fn new(total: usize, share: usize) -> Arc<Self> {
        Arc::new(MemoryBudget {
            total,
            share: share.min(total),
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes reserved now, over every request.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn total(&self) -> usize {
        self.total
    }

    pub fn share(&self) -> usize {
        self.share
    }

    /// An empty reservation for one request.
    pub fn reserve(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: Some(Arc::clone(self)),
            needed: 0,
            granted: 0,
        }
    }

    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&u| u <= self.total)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// What one request holds of the budget.
#[derive(Debug)]
pub struct Reservation {
    budget: Option<Arc<MemoryBudget>>,
    /// Bytes the request has charged.
    needed: usize,
    /// Bytes taken from the budget for it (at least `needed`, in grains).
    granted: usize,
}

impl Reservation {
    /// A reservation that never refuses: for tools and tests that decode trusted bytes.
    pub fn unlimited() -> Self {
        Reservation {
            budget: None,
            needed: 0,
            granted: 0,
        }
    }

    /// Bytes charged so far.
    pub fn charged(&self) -> usize {
        self.needed
    }

    /// Charge `n` bytes about to be allocated.
    pub fn charge(&mut self, n: usize) -> Result<(), BudgetError> {
        let Some(budget) = &self.budget else {
            self.needed = self.needed.saturating_add(n);
            return Ok(());
        };
        let needed = self.needed.saturating_add(n);
        if needed > budget.share {
            return Err(BudgetError::TooLarge {
                share: budget.share,
                total: budget.total,
            });
        }
        if needed > self.granted {
            let want = (needed - self.granted).max(GRAIN);
            let want = want.min(budget.share - self.granted);
            if !budget.take(want) {
                // a last try for exactly what is missing, in case the grain was the
                // problem
                let exact = needed - self.granted;
                if exact == want || !budget.take(exact) {
                    return Err(BudgetError::Busy {
                        total: budget.total,
                    });
                }
                self.granted += exact;
            } else {
                self.granted += want;
            }
        }
        self.needed = needed;
        Ok(())
    }

    /// Charge `count` elements of `size` bytes each, refusing a product that overflows.
    pub fn charge_each(&mut self, count: usize, size: usize) -> Result<(), BudgetError> {
        self.charge(count.saturating_mul(size))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.give_back(self.granted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_over_its_share_is_too_large_and_holds_nothing() {
        let b = MemoryBudget::new(10 << 20, 4 << 20);
        let mut r = b.reserve();
        r.charge(3 << 20).unwrap();
        assert!(b.used() >= 3 << 20);
        assert_eq!(
            r.charge(2 << 20),
            Err(BudgetError::TooLarge {
                share: 4 << 20,
                total: 10 << 20
            })
        );
        drop(r);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn a_full_budget_is_busy_until_given_back() {
        let b = MemoryBudget::new(8 << 20, 4 << 20);
        let mut r1 = b.reserve();
        let mut r2 = b.reserve();
        r1.charge(4 << 20).unwrap();
        r2.charge(4 << 20).unwrap();
        let mut r3 = b.reserve();
        assert_eq!(r3.charge(1), Err(BudgetError::Busy { total: 8 << 20 }));
        drop(r1);
        r3.charge(1).unwrap();
        assert!(b.used() <= 8 << 20);
    }

    #[test]
    fn small_charges_are_taken_in_grains_and_counted_exactly() {
        let b = MemoryBudget::new(64 << 20, 16 << 20);
        let mut r = b.reserve();
        for _ in 0..1000 {
            r.charge(100).unwrap();
        }
        assert_eq!(r.charged(), 100_000);
        assert_eq!(b.used(), GRAIN);
        assert!(r.charge_each(usize::MAX, 2).is_err());
    }
}
