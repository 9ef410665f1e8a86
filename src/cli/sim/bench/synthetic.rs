//! The benchmark's synthetic data: referrers, referred accounts spread over 2025, and usage
//! rows generated deterministically in bounded chunks.

use anyhow::{Context, Result};
use chrono::{SecondsFormat, TimeZone, Utc};
use payouts::domain::money::UNIT_SCALE;
use payouts::ingest::record::content_hash;
use payouts::storage::{from_millis, to_millis};

/// Rows generated, and inserted in one transaction, at a time: memory stays bounded.
pub(super) const CHUNK_ROWS: usize = 100_000;
/// Seed of the usage generator: every run generates the same rows.
pub(super) const USAGE_SEED: u64 = 0x5eed_2026_acc2_0a11;
pub(super) const DAY_MS: i64 = 86_400_000;
/// Stored units per micro-dollar (amounts are generated with six decimals).
pub(super) const UNITS_PER_MICRO: i64 = 10_i64.pow(UNIT_SCALE - 6);

/// SplitMix64: small, fast and deterministic; good enough to spread synthetic rows.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `0..n` (n > 0).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The time frame of the synthetic data, in ms.
#[derive(Clone, Copy)]
pub(super) struct Frame {
    /// Referred accounts sign up over 2025.
    pub(super) signup_start: i64,
    pub(super) signup_span: i64,
    /// Usage runs until the end of June 2026, so 6-month windows close for many accounts.
    pub(super) usage_end: i64,
    /// Referrers' own accounts are older.
    pub(super) referrer_created: i64,
}

impl Frame {
    pub(super) fn new() -> Result<Frame> {
        let ms = |y, m, d| {
            Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
                .single()
                .map(to_millis)
                .context("building a benchmark date")
        };
        let signup_start = ms(2025, 1, 1)?;
        Ok(Frame {
            signup_start,
            signup_span: ms(2026, 1, 1)? - signup_start,
            usage_end: ms(2026, 7, 1)?,
            referrer_created: ms(2024, 6, 1)?,
        })
    }

    /// Referred account `i`'s signup (and referral) time: spread evenly over 2025 with a
    /// jitter of up to a day, whole seconds.
    pub(super) fn signup(&self, i: usize, accounts: usize) -> i64 {
        let slot = self.signup_span / i64::try_from(accounts.max(1)).unwrap_or(i64::MAX);
        let base = self.signup_start + slot * i64::try_from(i).unwrap_or(0);
        let jitter = i64::try_from((i as u64).wrapping_mul(0x9e37_79b9) % 86_400).unwrap_or(0);
        (base + jitter * 1000).min(self.signup_start + self.signup_span - DAY_MS)
    }
}

pub(super) fn referrer_id(i: usize) -> String {
    format!("bench-r{i:05}")
}

pub(super) fn referred_id(i: usize) -> String {
    format!("bench-a{i:06}")
}

pub(super) fn template_id(i: usize) -> String {
    format!("bench-tpl-{i:03}")
}

pub(super) fn rfc3339(ms: i64) -> String {
    from_millis(ms).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One usage row, as stored.
pub(super) struct UsageRow {
    pub(super) id: String,
    pub(super) account: String,
    pub(super) at: i64,
    pub(super) category: &'static str,
    pub(super) units: i64,
    pub(super) content_hash: String,
    pub(super) template: Option<String>,
    pub(super) runtime_secs: i64,
}

/// Generates the usage rows, chunk by chunk, the same on every run.
pub(super) struct UsageGen {
    rng: Rng,
    next_id: usize,
    total: usize,
    accounts: usize,
    templates: usize,
    frame: Frame,
    /// Signup time per referred account.
    signups: Vec<i64>,
}

impl UsageGen {
    pub(super) fn new(accounts: usize, total: usize, templates: usize, frame: Frame) -> UsageGen {
        UsageGen {
            rng: Rng(USAGE_SEED),
            next_id: 0,
            total,
            accounts,
            templates,
            frame,
            signups: (0..accounts).map(|i| frame.signup(i, accounts)).collect(),
        }
    }

    /// The next chunk of at most `CHUNK_ROWS` rows, or an empty one at the end.
    pub(super) fn chunk(&mut self) -> Vec<UsageRow> {
        let n = CHUNK_ROWS.min(self.total - self.next_id);
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            rows.push(self.row());
        }
        rows
    }

    pub(super) fn row(&mut self) -> UsageRow {
        let r = &mut self.rng;
        let n = self.next_id;
        self.next_id += 1;
        let a = usize::try_from(r.below(self.accounts as u64)).unwrap_or(0);
        let signup = self.signups[a];
        // Most spend follows the signup; one row in twenty falls anywhere in the frame, so
        // some of it predates the referral and must earn nothing.
        let at = if r.below(20) == 0 {
            let start = self.frame.signup_start;
            start
                + i64::try_from(r.below(u64::try_from(self.frame.usage_end - start).unwrap_or(1)))
                    .unwrap_or(0)
        } else {
            let span = u64::try_from(self.frame.usage_end - signup).unwrap_or(1);
            signup + i64::try_from(r.below(span)).unwrap_or(0)
        };
        let category = match r.below(100) {
            0..40 => "pod",
            40..60 => "serverless",
            60..85 => "instance",
            _ => "storage",
        };
        // $0.001 to $2.001 with six decimals, stored as integer units.
        let micros = i64::try_from(r.below(2_000_001)).unwrap_or(0) + 1_000;
        let units = micros * UNITS_PER_MICRO;
        let (template, runtime_secs) =
            if self.templates > 0 && category == "pod" && r.below(20) == 0 {
                let t = usize::try_from(r.below(self.templates as u64)).unwrap_or(0);
                (
                    Some(template_id(t)),
                    i64::try_from(r.below(7_200)).unwrap_or(0) + 60,
                )
            } else {
                (None, 0)
            };
        let account = referred_id(a);
        // The content hash ingest would store for this record.
        let (at_s, units_s) = (at.to_string(), units.to_string());
        let mut parts = vec![
            account.as_str(),
            at_s.as_str(),
            category,
            units_s.as_str(),
            "USD",
        ];
        let runtime_s = runtime_secs.to_string();
        if let Some(t) = &template {
            parts.push(t.as_str());
            parts.push(runtime_s.as_str());
        }
        let content_hash = content_hash(&parts);
        UsageRow {
            id: format!("bench-u{n:09}"),
            account,
            at,
            category,
            units,
            content_hash,
            template,
            runtime_secs,
        }
    }
}
