//! PayPal's "Payouts report" (CSV): one row per payout item, read into and written from
//! provider records. Amounts are in major units (`12.50`), `Status` is the item's
//! transaction_status word (SUCCESS, UNCLAIMED, ...), `Date (UTC)` is `YYYY-MM-DD HH:MM:SS`.

use chrono::{DateTime, NaiveDateTime, Utc};
use rust_decimal::Decimal;

use super::classify::{STATUS_MAP, item_state};
use crate::domain::ids::Rail;
use crate::domain::money::{Currency, Money};
use crate::domain::reconcile::{ProviderRecord, RecordKind};
use crate::providers::records::{Row, StatementError, StatementFormat};

const BATCH_ID: &str = "Payout Batch ID";
const SENDER_BATCH_ID: &str = "Sender Batch ID";
const ITEM_ID: &str = "Payout Item ID";
const TRANSACTION_ID: &str = "Transaction ID";
const SENDER_ITEM_ID: &str = "Sender Item ID";
const RECIPIENT: &str = "Recipient";
const AMOUNT: &str = "Amount";
const CURRENCY: &str = "Currency";
const FEE: &str = "Fee";
const STATUS: &str = "Status";
const DATE: &str = "Date (UTC)";

pub static FORMAT: StatementFormat = StatementFormat {
    name: "PayPal payouts report",
    columns: &[
        BATCH_ID,
        SENDER_BATCH_ID,
        ITEM_ID,
        TRANSACTION_ID,
        SENDER_ITEM_ID,
        RECIPIENT,
        AMOUNT,
        CURRENCY,
        FEE,
        STATUS,
        DATE,
    ],
    required: &[BATCH_ID, ITEM_ID, RECIPIENT, AMOUNT, CURRENCY, STATUS, DATE],
    parse_row,
    to_row,
};

const DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// One row of the report as a batch item record, its state as the item's status says.
pub fn parse_row(row: &Row<'_>) -> Result<ProviderRecord, StatementError> {
    let code = row.require(CURRENCY)?;
    let currency: Currency = code
        .parse()
        .map_err(|_| row.bad(CURRENCY, code, "is not a currency this system handles"))?;
    let value = row.require(AMOUNT)?;
    let amount = Money::parse(value, currency, currency.minor_decimals()).map_err(|e| {
        row.bad(
            AMOUNT,
            value,
            &format!("is not an amount in {currency}: {e}"),
        )
    })?;
    if amount.is_negative() {
        return Err(row.bad(AMOUNT, value, "is negative"));
    }
    let word = row.require(STATUS)?;
    let status = word.to_ascii_uppercase();
    if !STATUS_MAP.iter().any(|(s, _)| *s == status) {
        let known: Vec<&str> = STATUS_MAP.iter().map(|(s, _)| *s).collect();
        return Err(row.bad(
            STATUS,
            word,
            &format!("is not a payout item status ({})", known.join(", ")),
        ));
    }
    let date = row.require(DATE)?;
    let created_at = NaiveDateTime::parse_from_str(date, DATE_FORMAT)
        .map(|t| t.and_utc())
        .or_else(|_| DateTime::parse_from_rfc3339(date).map(|t| t.with_timezone(&Utc)))
        .map_err(|_| {
            row.bad(
                DATE,
                date,
                "is not a date and time like 2024-06-01 12:00:00",
            )
        })?;
    Ok(ProviderRecord {
        rail: Rail::Paypal,
        kind: RecordKind::BatchItem,
        record_id: row.require(ITEM_ID)?.to_string(),
        reference: row.get(SENDER_BATCH_ID).map(str::to_string),
        payout_hint: row.get(SENDER_ITEM_ID).map(str::to_string),
        group_id: Some(row.require(BATCH_ID)?.to_string()),
        payee: row.require(RECIPIENT)?.to_lowercase(),
        amount,
        state: item_state(&status),
        provider_status: status,
        created_at,
    })
}

/// A batch item record as a row, in [`FORMAT`]'s column order. The record carries neither
/// the item's transaction id nor its fee: those cells stay empty.
pub fn to_row(record: &ProviderRecord) -> Vec<String> {
    let mut amount: Decimal = record.amount.amount();
    amount.rescale(record.amount.currency().minor_decimals());
    vec![
        record.group_id.clone().unwrap_or_default(),
        record.reference.clone().unwrap_or_default(),
        record.record_id.clone(),
        String::new(),
        record.payout_hint.clone().unwrap_or_default(),
        record.payee.clone(),
        amount.to_string(),
        record.amount.currency().code().to_string(),
        String::new(),
        record.provider_status.clone(),
        record.created_at.format(DATE_FORMAT).to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::tracking::RailState;
    use crate::providers::records::StatementReader;
    use proptest::prelude::*;

    fn record(minor: i64, currency: Currency, status: &str) -> ProviderRecord {
        ProviderRecord {
            rail: Rail::Paypal,
            kind: RecordKind::BatchItem,
            record_id: "MOCKI0000000002".into(),
            reference: Some("01J0PAYOUT-1".into()),
            payout_hint: Some("01J0PAYOUT".into()),
            group_id: Some("MOCKB0000000001".into()),
            payee: "alice@example.test".into(),
            amount: Money::from_minor_units(minor, currency),
            state: item_state(status),
            provider_status: status.into(),
            created_at: DateTime::from_timestamp(1_717_243_200, 0).unwrap(),
        }
    }

    fn round_trip(records: &[ProviderRecord]) -> Vec<ProviderRecord> {
        crate::providers::records::round_trip(Rail::Paypal, records)
    }

    #[test]
    fn rows_read_back_as_the_records_they_were_written_from() {
        let records = vec![
            record(1250, Currency::Usd, "SUCCESS"),
            record(1230, Currency::Jpy, "UNCLAIMED"),
            record(5, Currency::Eur, "RETURNED"),
        ];
        assert_eq!(round_trip(&records), records);
        let row = to_row(&records[0]);
        assert_eq!(row.len(), FORMAT.columns.len());
        assert_eq!((row[6].as_str(), row[7].as_str()), ("12.50", "USD"));
        assert_eq!(row[10], "2024-06-01 12:00:00");
        assert_eq!(records[2].state, RailState::Returned);
    }

    fn read_one(csv: &str) -> Result<ProviderRecord, StatementError> {
        let mut reader = StatementReader::new(&FORMAT, csv.as_bytes())?;
        let row = reader.next_row().unwrap()?;
        parse_row(&row)
    }

    #[test]
    fn bad_cells_are_named_with_their_line_and_column() {
        let head = "Payout Batch ID,Payout Item ID,Recipient,Amount,Currency,Status,Date (UTC)\n";
        let ok = "B1,I1,Bob@X.test,12.50,USD,success,2024-06-01 12:00:00\n";
        let r = read_one(&format!("{head}{ok}")).unwrap();
        assert_eq!(
            (r.payee.as_str(), r.provider_status.as_str()),
            ("bob@x.test", "SUCCESS")
        );
        assert_eq!(r.state, RailState::Paid);
        for (bad, column) in [
            (
                "B1,I1,b@x.test,12.505,USD,SUCCESS,2024-06-01 12:00:00\n",
                "Amount",
            ),
            (
                "B1,I1,b@x.test,12.50,XYZ,SUCCESS,2024-06-01 12:00:00\n",
                "Currency",
            ),
            (
                "B1,I1,b@x.test,12.50,USD,DONE,2024-06-01 12:00:00\n",
                "Status",
            ),
            ("B1,I1,b@x.test,12.50,USD,SUCCESS,yesterday\n", "Date (UTC)"),
            (
                "B1,,b@x.test,12.50,USD,SUCCESS,2024-06-01 12:00:00\n",
                "Payout Item ID",
            ),
        ] {
            let err = read_one(&format!("{head}{bad}")).unwrap_err().to_string();
            assert!(err.contains("line 2") && err.contains(column), "{err}");
        }
    }

    fn any_currency() -> impl Strategy<Value = Currency> {
        prop_oneof![
            Just(Currency::Usd),
            Just(Currency::Eur),
            Just(Currency::Jpy),
            Just(Currency::Krw),
        ]
    }

    proptest! {
        #[test]
        fn any_item_record_round_trips(
            minor in 0i64..1_000_000_000_000,
            currency in any_currency(),
            status in proptest::sample::select(STATUS_MAP.iter().map(|(s, _)| *s).collect::<Vec<_>>()),
            secs in 0i64..4_000_000_000,
        ) {
            let mut r = record(minor, currency, status);
            r.created_at = DateTime::from_timestamp(secs, 0).unwrap();
            prop_assert_eq!(round_trip(std::slice::from_ref(&r)), vec![r]);
        }
    }
}
