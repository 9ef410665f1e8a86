//! Retention: how long the service keeps what it only needs for a while (finished queue
//! jobs, providers' webhook deliveries, stored idempotent responses, delivered outgoing
//! events, the provider records a reconciliation read), and what it keeps for good (ledger
//! postings, payouts and their events, operator actions, reconciliation summaries and
//! exceptions: nothing here names them).

use std::fmt;

use chrono::{DateTime, Duration, Utc};

/// What can be pruned, each with its own age.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Finished apalis jobs (done, killed, or failed with no attempt left).
    Jobs,
    /// Providers' webhook deliveries: their ids dedupe a provider's retries.
    Webhooks,
    /// Stored API responses replayed to a repeated `Idempotency-Key`.
    Idempotency,
    /// Outgoing events no delivery is pending for, with their delivery log.
    Events,
    /// The copies of provider records a reconciliation run read (its summary and its
    /// exceptions, with the records they name, stay).
    ReconRecords,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Jobs,
        Kind::Webhooks,
        Kind::Idempotency,
        Kind::Events,
        Kind::ReconRecords,
    ];

    /// The environment variable that sets its age in days.
    pub fn setting(self) -> &'static str {
        match self {
            Kind::Jobs => "PAYOUTS_RETAIN_JOBS_DAYS",
            Kind::Webhooks => "PAYOUTS_RETAIN_WEBHOOKS_DAYS",
            Kind::Idempotency => "PAYOUTS_RETAIN_IDEMPOTENCY_DAYS",
            Kind::Events => "PAYOUTS_RETAIN_EVENTS_DAYS",
            Kind::ReconRecords => "PAYOUTS_RETAIN_RECON_RECORDS_DAYS",
        }
    }

    pub fn default_days(self) -> u32 {
        match self {
            Kind::Jobs => 7,
            Kind::Webhooks | Kind::Idempotency | Kind::Events => 30,
            Kind::ReconRecords => 90,
        }
    }

    /// The shortest age allowed, so a typo cannot erase what is still in use: providers
    /// retry a webhook for up to three days and clients an idempotent request for a day or
    /// more; an event is retried for three days; a queue job is read back while its payout
    /// is worked on.
    pub fn floor_days(self) -> u32 {
        match self {
            Kind::Jobs => 1,
            Kind::Webhooks | Kind::Idempotency | Kind::Events | Kind::ReconRecords => 7,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Jobs => "finished jobs",
            Kind::Webhooks => "webhook deliveries",
            Kind::Idempotency => "idempotent responses",
            Kind::Events => "delivered events",
            Kind::ReconRecords => "reconciliation records",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting} is {days} days; keep {kind} at least {floor} days")]
pub struct TooShort {
    pub setting: &'static str,
    pub kind: Kind,
    pub days: u32,
    pub floor: u32,
}

/// The age after which each kind is pruned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    days: [u32; 5],
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            days: Kind::ALL.map(Kind::default_days),
        }
    }
}

impl Retention {
    /// The ages in days, one per kind; each must be at least its floor.
    pub fn new(days_of: impl Fn(Kind) -> u32) -> Result<Retention, TooShort> {
        let mut days = [0; 5];
        for (i, kind) in Kind::ALL.into_iter().enumerate() {
            let d = days_of(kind);
            if d < kind.floor_days() {
                return Err(TooShort {
                    setting: kind.setting(),
                    kind,
                    days: d,
                    floor: kind.floor_days(),
                });
            }
            days[i] = d;
        }
        Ok(Retention { days })
    }

    pub fn days(&self, kind: Kind) -> u32 {
        let i = Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.days[i]
    }

    /// Rows of `kind` older than this (at `now`) go.
    pub fn cutoff(&self, kind: Kind, now: DateTime<Utc>) -> DateTime<Utc> {
        now - Duration::days(i64::from(self.days(kind)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_cutoffs() {
        let r = Retention::default();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(r.days(Kind::Jobs), 7);
        assert_eq!(r.days(Kind::ReconRecords), 90);
        assert_eq!(r.cutoff(Kind::Idempotency, now), now - Duration::days(30));
    }

    #[test]
    fn an_age_below_its_floor_is_refused_with_the_setting_named() {
        let err = Retention::new(|k| if k == Kind::Idempotency { 1 } else { 30 }).unwrap_err();
        assert_eq!(err.setting, "PAYOUTS_RETAIN_IDEMPOTENCY_DAYS");
        assert!(err.to_string().contains("at least 7 days"), "{err}");
        assert!(Retention::new(|k| k.floor_days()).is_ok());
    }
}
