//! Stored responses for requests that carry an Idempotency-Key (shared by both backends).

use super::payout_views::{WithdrawError, WithdrawalOutcome};

/// Turns a withdrawal's outcome into the response every repeat of the request gets.
pub type Answerer = Box<dyn FnOnce(Result<WithdrawalOutcome, WithdrawError>) -> Answer + Send>;

/// A response as the API sends it: what a request under a key is answered, and what every
/// repeat of it is answered again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    /// A failure of ours (5xx): never stored, so a retry does the work.
    pub fn is_server_error(&self) -> bool {
        self.status >= 500
    }
}

/// What a request under an Idempotency-Key came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keyed {
    /// The key was new: the work was done and this is its answer, stored in the same commit
    /// as the work unless it is a server error.
    Answered(Answer),
    /// The same request was answered before: answer it again.
    Replay(Answer),
    /// The key is claimed by a request still running in a process of an earlier release
    /// (which stored its claim before its work); it frees itself when stale.
    InFlight,
    /// The key was used for a different request.
    Mismatch,
}
