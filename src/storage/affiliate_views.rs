//! Affiliate opt-in outcomes, shared by both storage backends.

use crate::domain::ids::{AccountId, ProgramId};
use crate::storage::StoreError;
use chrono::{DateTime, Utc};

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum OptInError {
    #[error("unknown program {program}; configured programs: {configured}")]
    UnknownProgram { program: String, configured: String },
    #[error("{program} is a {kind} program; only an affiliate program can be opted into")]
    NotAffiliate { program: String, kind: &'static str },
    #[error("account {0} is not known; ingest an account record for it first")]
    UnknownAccount(AccountId),
    #[error(
        "{account} has {count} paying referred users in {referral_program} as of {as_of}; \
         {program} needs at least {required}"
    )]
    TooFewPayingReferrals {
        account: AccountId,
        program: ProgramId,
        referral_program: ProgramId,
        count: u32,
        required: u32,
        as_of: String,
    },
    #[error(
        "{account} already opted into {program} at {opted_in_at}; the choice is permanent and \
         cannot be made again at another time"
    )]
    AlreadyOptedIn {
        account: AccountId,
        program: ProgramId,
        opted_in_at: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for OptInError {
    fn from(e: sqlx::Error) -> Self {
        OptInError::Store(e.into())
    }
}

/// A recorded opt-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Enrollment {
    pub program: ProgramId,
    pub account: AccountId,
    pub opted_in_at: DateTime<Utc>,
    /// Paying referred users when the opt-in was accepted.
    pub paying_referrals: u32,
    /// True when this opt-in had already been recorded (a replay).
    pub replayed: bool,
}
