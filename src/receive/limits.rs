//! Per-request caps every decoder applies as it reads counts off the wire: spans per
//! request, tags (attributes) per span, logs (events) per span, nesting of attribute
//! values, and the memory the decoded request will take (see [`crate::budget`]).
//! A cap is checked when the count is known, before anything is allocated for it.

use thiserror::Error;

use crate::budget::BudgetError;
use crate::error::ErrorCode;

/// The caps, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_spans: usize,
    /// Tags of a span, of a process or resource, fields of a log, attributes of an event
    /// or link, and references of a span.
    pub max_tags: usize,
    pub max_logs: usize,
    /// Nesting of OTLP array and map values.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_spans: 100_000,
            max_tags: 1024,
            max_logs: 1024,
            max_depth: 16,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LimitError {
    #[error("the request has more than {limit} spans (at most {limit} per request); send smaller batches")]
    Spans { limit: usize },
    #[error("{what} has {n} entries; at most {limit} are accepted")]
    Tags {
        what: &'static str,
        n: usize,
        limit: usize,
    },
    #[error("a span has {n} logs (events); at most {limit} are accepted")]
    Logs { n: usize, limit: usize },
    #[error("an attribute value nests deeper than {limit} levels")]
    Depth { limit: usize },
    #[error(transparent)]
    Budget(#[from] BudgetError),
}

impl LimitError {
    pub fn code(&self) -> ErrorCode {
        match self {
            LimitError::Spans { .. } => ErrorCode::TooLarge,
            LimitError::Budget(b) => b.code(),
            LimitError::Tags { .. } | LimitError::Logs { .. } | LimitError::Depth { .. } => {
                ErrorCode::BadRequest
            }
        }
    }
}

impl Limits {
    /// Check that `total` spans (counted so far over the request) are allowed.
    pub fn spans(&self, total: usize) -> Result<(), LimitError> {
        if total > self.max_spans {
            return Err(LimitError::Spans {
                limit: self.max_spans,
            });
        }
        Ok(())
    }

    pub fn tags(&self, what: &'static str, n: usize) -> Result<(), LimitError> {
        if n > self.max_tags {
            return Err(LimitError::Tags {
                what,
                n,
                limit: self.max_tags,
            });
        }
        Ok(())
    }

    pub fn logs(&self, n: usize) -> Result<(), LimitError> {
        if n > self.max_logs {
            return Err(LimitError::Logs {
                n,
                limit: self.max_logs,
            });
        }
        Ok(())
    }

    pub fn depth(&self, depth: usize) -> Result<(), LimitError> {
        if depth > self.max_depth {
            return Err(LimitError::Depth {
                limit: self.max_depth,
            });
        }
        Ok(())
    }
}
