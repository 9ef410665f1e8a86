//! Stripe's own records of money moved, for reconciliation: transfers to connected accounts
//! (`tr_…`, matched to our payouts) and the platform's bank payouts (`po_…`, counted in the
//! totals but never matched), listed page by page for a window.

use chrono::{DateTime, Utc};
use futures::stream;

use super::StripeAdapter;
use super::wire::{List, Payout, Transfer};
use crate::domain::ids::Rail;
use crate::domain::money::{Currency, Money};
use crate::domain::reconcile::{ProviderRecord, RecordKind};
use crate::domain::tracking::{Observation, RailState};
use crate::providers::ProviderError;
use crate::providers::records::{RecordPages, RecordSource};

/// A transfer as a provider record: `reference` is its transfer_group (our payout id) and
/// `payout_hint` its `metadata[payout_id]`.
pub fn transfer_record(t: &Transfer) -> Result<ProviderRecord, ProviderError> {
    let currency = currency(&t.currency, &t.id)?;
    let observation = super::observe(t);
    Ok(ProviderRecord {
        rail: Rail::Stripe,
        kind: RecordKind::Transfer,
        record_id: t.id.clone(),
        reference: t.transfer_group.clone(),
        payout_hint: t.metadata.get("payout_id").cloned(),
        group_id: None,
        payee: t.destination.clone(),
        amount: amount(t.amount, currency, &t.id)?,
        state: observation.state,
        provider_status: observation.provider_status,
        created_at: created(t.created, &t.id)?,
    })
}

/// A payout from the platform balance to its bank account or card.
pub fn bank_payout_record(p: &Payout) -> Result<ProviderRecord, ProviderError> {
    let currency = currency(&p.currency, &p.id)?;
    let payee = p.destination.clone().ok_or_else(|| {
        ProviderError::Decode(format!("Stripe payout {} has no destination", p.id))
    })?;
    let observation = payout_observation(p);
    Ok(ProviderRecord {
        rail: Rail::Stripe,
        kind: RecordKind::BankPayout,
        record_id: p.id.clone(),
        reference: None,
        payout_hint: None,
        group_id: None,
        payee,
        amount: amount(p.amount, currency, &p.id)?,
        state: observation.state,
        provider_status: observation.provider_status,
        created_at: created(p.created, &p.id)?,
    })
}

/// A payout's status in our terms. An unknown word stays in flight (never guess).
pub fn payout_observation(p: &Payout) -> Observation {
    let state = match p.status.as_str() {
        "paid" => RailState::Paid,
        "failed" | "canceled" => RailState::Failed,
        _ => RailState::InFlight,
    };
    Observation::new(state, p.status.clone()).with_detail(p.failure_code.clone())
}

fn currency(code: &str, id: &str) -> Result<Currency, ProviderError> {
    code.to_ascii_uppercase().parse().map_err(|_| {
        ProviderError::Decode(format!(
            "Stripe object {id} is in currency {code:?}, which this system does not handle"
        ))
    })
}

fn amount(minor: i64, currency: Currency, id: &str) -> Result<Money, ProviderError> {
    if minor < 0 {
        return Err(ProviderError::Decode(format!(
            "Stripe object {id} has a negative amount ({minor})"
        )));
    }
    Ok(Money::from_minor_units(minor, currency))
}

fn created(secs: i64, id: &str) -> Result<DateTime<Utc>, ProviderError> {
    DateTime::from_timestamp(secs, 0).ok_or_else(|| {
        ProviderError::Decode(format!(
            "Stripe object {id} has an impossible creation time ({secs})"
        ))
    })
}

/// Where a listing is: which endpoint, after which object.
enum Phase {
    Transfers(Option<String>),
    Payouts(Option<String>),
}

impl RecordSource for StripeAdapter {
    fn rail(&self) -> Rail {
        Rail::Stripe
    }

    /// `GET /v1/transfers`, then `GET /v1/payouts`, both with `created[gte]`/`created[lt]`
    /// (Stripe counts whole seconds) and followed to the end, 100 objects per page.
    fn record_pages<'a>(&'a self, from: DateTime<Utc>, to: DateTime<Utc>) -> RecordPages<'a> {
        let (gte, lt) = (from.timestamp().to_string(), to.timestamp().to_string());
        let start = (from < to).then_some(Phase::Transfers(None));
        Box::pin(stream::try_unfold(start, move |phase| {
            let window = [("created[gte]", gte.clone()), ("created[lt]", lt.clone())];
            async move {
                let filters: Vec<(&str, &str)> =
                    window.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let mut phase = phase;
                loop {
                    let (records, next) = match phase {
                        None => return Ok(None),
                        Some(Phase::Transfers(after)) => {
                            let page: List<Transfer> = self
                                .list_page("/v1/transfers", &filters, after.as_deref())
                                .await?;
                            let next = match cursor(&page, |t| &t.id) {
                                Some(c) => Phase::Transfers(Some(c)),
                                None => Phase::Payouts(None),
                            };
                            let records = page
                                .data
                                .iter()
                                .map(transfer_record)
                                .collect::<Result<Vec<_>, _>>()?;
                            (records, Some(next))
                        }
                        Some(Phase::Payouts(after)) => {
                            let page: List<Payout> = self
                                .list_page("/v1/payouts", &filters, after.as_deref())
                                .await?;
                            let next = cursor(&page, |p| &p.id).map(|c| Phase::Payouts(Some(c)));
                            let records = page
                                .data
                                .iter()
                                .map(bank_payout_record)
                                .collect::<Result<Vec<_>, _>>()?;
                            (records, next)
                        }
                    };
                    if records.is_empty() {
                        phase = next;
                        continue;
                    }
                    return Ok(Some((records, next)));
                }
            }
        }))
    }
}

/// The `starting_after` for the next page, if there is one.
fn cursor<T>(page: &List<T>, id: impl Fn(&T) -> &String) -> Option<String> {
    if page.has_more {
        page.data.last().map(|t| id(t).clone())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn transfer(amount: i64, reversed: i64, currency: &str) -> Transfer {
        Transfer {
            id: "tr_1".into(),
            object: "transfer".into(),
            amount,
            amount_reversed: reversed,
            balance_transaction: None,
            created: 1_717_243_200,
            currency: currency.into(),
            description: None,
            destination: "acct_1".into(),
            destination_payment: None,
            livemode: false,
            metadata: BTreeMap::from([("payout_id".to_string(), "po_hint".to_string())]),
            reversed: reversed >= amount && reversed > 0,
            source_transaction: None,
            source_type: None,
            transfer_group: Some("pay_1".into()),
        }
    }

    #[test]
    fn a_transfer_becomes_a_record_in_its_own_words() {
        let r = transfer_record(&transfer(1250, 0, "eur")).unwrap();
        assert_eq!(r.kind, RecordKind::Transfer);
        assert_eq!(r.amount, Money::parse("12.50", Currency::Eur, 2).unwrap());
        assert_eq!(r.reference.as_deref(), Some("pay_1"));
        assert_eq!(r.payout_hint.as_deref(), Some("po_hint"));
        assert_eq!(r.payee, "acct_1");
        assert_eq!(
            (r.state, r.provider_status.as_str()),
            (RailState::Paid, "transferred")
        );
        assert_eq!(r.created_at.to_rfc3339(), "2024-06-01T12:00:00+00:00");

        let back = transfer_record(&transfer(1250, 1250, "eur")).unwrap();
        assert_eq!(back.state, RailState::Returned);
        let part = transfer_record(&transfer(1250, 50, "jpy")).unwrap();
        assert_eq!(part.state, RailState::Disputed);
        assert_eq!(part.amount, Money::parse("1250", Currency::Jpy, 0).unwrap());
    }

    #[test]
    fn an_unknown_currency_is_a_decode_error_naming_it() {
        let err = transfer_record(&transfer(100, 0, "xyz")).unwrap_err();
        assert!(
            matches!(&err, ProviderError::Decode(m) if m.contains("\"xyz\"") && m.contains("tr_1")),
            "{err}"
        );
    }

    #[test]
    fn payout_statuses_map_to_rail_states() {
        let mut p = Payout {
            id: "po_1".into(),
            object: "payout".into(),
            amount: 5000,
            arrival_date: None,
            automatic: false,
            balance_transaction: None,
            created: 1_717_243_200,
            currency: "usd".into(),
            description: None,
            destination: Some("ba_1".into()),
            failure_code: None,
            failure_message: None,
            livemode: false,
            metadata: BTreeMap::new(),
            method: None,
            statement_descriptor: None,
            status: "paid".into(),
            kind: None,
        };
        for (status, state) in [
            ("paid", RailState::Paid),
            ("pending", RailState::InFlight),
            ("in_transit", RailState::InFlight),
            ("failed", RailState::Failed),
            ("canceled", RailState::Failed),
        ] {
            p.status = status.into();
            let r = bank_payout_record(&p).unwrap();
            assert_eq!((r.state, r.provider_status.as_str()), (state, status));
            assert_eq!((r.kind, r.payee.as_str()), (RecordKind::BankPayout, "ba_1"));
        }
        p.destination = None;
        assert!(bank_payout_record(&p).is_err());
    }
}
