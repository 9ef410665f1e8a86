//! Stored responses for requests that carry an Idempotency-Key (shared by both backends).

/// What the first sight of an (scope, key) pair found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// This request is the first with the key (or took over a stale one): go ahead, then
    /// store the response.
    Started,
    /// The same request finished before: answer what it was answered.
    Replay { status: u16, body: String },
    /// The same key is being handled right now by another request.
    InFlight,
    /// The key was used for a different request.
    Mismatch,
}
