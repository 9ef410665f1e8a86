//! The PartnerStack rewards export (CSV), one row per reward.
//!
//! - `Reward Key` is the reward's key: both the record id and our attempt token.
//! - `Partner Key` is the payee, in the form payouts store as their destination.
//! - `Amount` is in major units (`12.50`), positive; `Currency` its ISO code.
//! - `Payment Status` is where the money is (mapped to our terms); `Status` the approval
//!   status, informational.
//! - `Created At` is `YYYY-MM-DD HH:MM:SS` in UTC.
//! - `Payout ID` is our payout id from the reward's metadata, when set.

use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};
use rust_decimal::Decimal;

use super::classify::rail_state;
use crate::domain::ids::Rail;
use crate::domain::money::{Currency, Money};
use crate::domain::reconcile::{ProviderRecord, RecordKind};
use crate::providers::records::{Row, StatementError, StatementFormat};

pub const REWARD_KEY: &str = "Reward Key";
pub const PARTNER_KEY: &str = "Partner Key";
pub const CUSTOMER_KEY: &str = "Customer Key";
pub const AMOUNT: &str = "Amount";
pub const CURRENCY: &str = "Currency";
pub const PAYMENT_STATUS: &str = "Payment Status";
pub const STATUS: &str = "Status";
pub const CREATED_AT: &str = "Created At";
pub const DESCRIPTION: &str = "Description";
pub const PAYOUT_ID: &str = "Payout ID";

const DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

pub static FORMAT: StatementFormat = StatementFormat {
    name: "PartnerStack rewards export",
    columns: &[
        REWARD_KEY,
        PARTNER_KEY,
        CUSTOMER_KEY,
        AMOUNT,
        CURRENCY,
        PAYMENT_STATUS,
        STATUS,
        CREATED_AT,
        DESCRIPTION,
        PAYOUT_ID,
    ],
    required: &[
        REWARD_KEY,
        PARTNER_KEY,
        AMOUNT,
        CURRENCY,
        PAYMENT_STATUS,
        CREATED_AT,
    ],
    parse_row,
    to_row,
};

fn parse_date(text: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
        .or_else(|| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
}

/// One export row as a reward record.
pub fn parse_row(row: &Row<'_>) -> Result<ProviderRecord, StatementError> {
    let key = row.require(REWARD_KEY)?.to_string();
    let payee = row.require(PARTNER_KEY)?.to_string();
    let code = row.require(CURRENCY)?;
    let currency = Currency::from_str(code).map_err(|e| row.bad(CURRENCY, code, &e.to_string()))?;
    let amount_text = row.require(AMOUNT)?;
    let amount = Decimal::from_str_exact(amount_text)
        .ok()
        .filter(|a| *a > Decimal::ZERO)
        .ok_or_else(|| {
            row.bad(
                AMOUNT,
                amount_text,
                "is not a positive decimal such as 12.50",
            )
        })?;
    let money = Money::new(amount, currency);
    if !money.is_whole_minor() {
        return Err(row.bad(
            AMOUNT,
            amount_text,
            &format!(
                "has more decimals than {currency} has ({}); rewards are whole minor units",
                currency.minor_decimals()
            ),
        ));
    }
    let payment_status = row.require(PAYMENT_STATUS)?.to_string();
    let date = row.require(CREATED_AT)?;
    let created_at = parse_date(date)
        .ok_or_else(|| row.bad(CREATED_AT, date, "is not a UTC time as YYYY-MM-DD HH:MM:SS"))?;
    Ok(ProviderRecord {
        rail: Rail::Partnerstack,
        kind: RecordKind::Reward,
        record_id: key.clone(),
        reference: Some(key),
        payout_hint: row.get(PAYOUT_ID).map(str::to_string),
        group_id: None,
        payee,
        amount: money,
        state: rail_state(&payment_status),
        provider_status: payment_status,
        created_at,
    })
}

/// One reward record as an export row, in [`FORMAT`] column order. The export's customer,
/// approval status and description are not part of a record: they are left empty.
pub fn to_row(record: &ProviderRecord) -> Vec<String> {
    vec![
        record.record_id.clone(),
        record.payee.clone(),
        String::new(),
        record.amount.display_amount(),
        record.amount.currency().code().to_string(),
        record.provider_status.clone(),
        String::new(),
        record.created_at.format(DATE_FORMAT).to_string(),
        String::new(),
        record.payout_hint.clone().unwrap_or_default(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::tracking::RailState;
    use crate::providers::records::{StatementReader, write_statement};

    fn record() -> ProviderRecord {
        ProviderRecord {
            rail: Rail::Partnerstack,
            kind: RecordKind::Reward,
            record_id: "po_01JTEST-attempt-1".into(),
            reference: Some("po_01JTEST-attempt-1".into()),
            payout_hint: Some("po_01JTEST".into()),
            group_id: None,
            payee: "pk_alice".into(),
            amount: Money::from_minor_units(1250, Currency::Usd),
            state: RailState::Returned,
            provider_status: "paid_and_refunded".into(),
            created_at: parse_date("2025-03-04 05:06:07").unwrap(),
        }
    }

    fn read(csv: &str) -> Vec<Result<ProviderRecord, String>> {
        let mut reader = StatementReader::new(&FORMAT, csv.as_bytes()).unwrap();
        let mut out = Vec::new();
        while let Some(row) = reader.next_row() {
            out.push(parse_row(&row.unwrap()).map_err(|e| e.to_string()));
        }
        out
    }

    #[test]
    fn a_record_round_trips_through_a_row() {
        let r = record();
        let row = to_row(&r);
        assert_eq!(row.len(), FORMAT.columns.len());
        assert_eq!(row[3], "12.50");
        assert_eq!(row[7], "2025-03-04 05:06:07");
        let mut csv = Vec::new();
        write_statement(&FORMAT, [row], &mut csv).unwrap();
        assert_eq!(read(std::str::from_utf8(&csv).unwrap()), vec![Ok(r)]);
    }

    #[test]
    fn bad_cells_are_named() {
        let csv = "Created At,Reward Key,Partner Key,Amount,Currency,Payment Status\n\
                   2025-03-04 05:06:07,k-001,pk_a,-1.00,USD,available\n\
                   2025-03-04 05:06:07,k-002,pk_a,1.001,USD,available\n\
                   2025-03-04,k-003,pk_a,1.00,USD,available\n\
                   2025-03-04 05:06:07,k-004,pk_a,100,JPY,withdrawn\n";
        let rows = read(csv);
        assert!(rows[0].as_ref().unwrap_err().contains("positive"));
        assert!(rows[1].as_ref().unwrap_err().contains("whole minor units"));
        assert!(rows[2].as_ref().unwrap_err().contains("Created At"));
        // Column order does not matter; names do.
        let ok = rows[3].as_ref().unwrap();
        assert_eq!(ok.amount, Money::from_minor_units(100, Currency::Jpy));
        assert_eq!((ok.state, ok.payee.as_str()), (RailState::Paid, "pk_a"));
    }
}
