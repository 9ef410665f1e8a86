//! Double-entry ledger rules (no I/O).
//!
//! Sign convention: a posting's amount is positive when it *credits* its book. Referrer books
//! are liabilities (what the platform owes), so their balance is the plain sum of their
//! postings; platform books are the other side and run negative. Each transaction's postings
//! sum to zero per currency, which [`TransactionDraft::finish`] enforces before anything is
//! written.
//!
//! A payout is a *pending* transaction (a hold) that is later *posted* when the provider
//! confirms, or *voided* when the payout fails. Postings never change; only the status does,
//! and only from pending.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ids::{AccountId, ProgramId, Rail};
use super::money::{Currency, Money, MoneyError};

/// A ledger account ("book").
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "book", rename_all = "snake_case")]
pub enum Book {
    /// Earnings the referrer may withdraw as cash.
    ReferrerCashable {
        account: AccountId,
        program: ProgramId,
    },
    /// Earnings that stay on the platform as credit.
    ReferrerCredit {
        account: AccountId,
        program: ProgramId,
    },
    /// The platform's cost of the program (the other side of every commission).
    CommissionExpense { program: ProgramId },
    /// Money that left the platform through a rail.
    RailSettlement { rail: Rail },
    /// A duplicate payment an operator wrote off as the company's loss (never the program's
    /// commission cost: nobody earned it).
    PayoutLoss { program: ProgramId },
}

impl Book {
    /// The stored code of the book kind.
    pub fn code(&self) -> &'static str {
        match self {
            Book::ReferrerCashable { .. } => "referrer_cashable",
            Book::ReferrerCredit { .. } => "referrer_credit",
            Book::CommissionExpense { .. } => "commission_expense",
            Book::RailSettlement { .. } => "rail_settlement",
            Book::PayoutLoss { .. } => "payout_loss",
        }
    }

    pub fn holder(&self) -> Option<&AccountId> {
        match self {
            Book::ReferrerCashable { account, .. } | Book::ReferrerCredit { account, .. } => {
                Some(account)
            }
            _ => None,
        }
    }

    pub fn program(&self) -> Option<&ProgramId> {
        match self {
            Book::ReferrerCashable { program, .. }
            | Book::ReferrerCredit { program, .. }
            | Book::CommissionExpense { program }
            | Book::PayoutLoss { program } => Some(program),
            Book::RailSettlement { .. } => None,
        }
    }

    pub fn rail(&self) -> Option<Rail> {
        match self {
            Book::RailSettlement { rail } => Some(*rail),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionKind {
    /// A commission on a referred account's spend.
    Accrual,
    /// A refund taking back the commission it earned.
    Clawback,
    /// Money leaving through a payout (a hold until the provider confirms).
    Payout,
}

impl TransactionKind {
    pub fn code(self) -> &'static str {
        match self {
            TransactionKind::Accrual => "accrual",
            TransactionKind::Clawback => "clawback",
            TransactionKind::Payout => "payout",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionStatus {
    Pending,
    Posted,
    Voided,
}

impl TransactionStatus {
    pub fn code(self) -> &'static str {
        match self {
            TransactionStatus::Pending => "pending",
            TransactionStatus::Posted => "posted",
            TransactionStatus::Voided => "voided",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        [
            TransactionStatus::Pending,
            TransactionStatus::Posted,
            TransactionStatus::Voided,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub book: Book,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("a ledger transaction needs at least two postings")]
    TooFewPostings,
    #[error("postings in {currency} sum to {sum}, not zero")]
    Unbalanced { currency: Currency, sum: Money },
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// Postings being assembled into one balanced transaction.
#[derive(Debug, Clone)]
pub struct TransactionDraft {
    pub kind: TransactionKind,
    pub status: TransactionStatus,
    postings: Vec<Posting>,
}

/// A transaction whose postings are known to balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalancedTransaction {
    pub kind: TransactionKind,
    pub status: TransactionStatus,
    pub postings: Vec<Posting>,
}

impl TransactionDraft {
    pub fn new(kind: TransactionKind, status: TransactionStatus) -> Self {
        TransactionDraft {
            kind,
            status,
            postings: Vec::new(),
        }
    }

    /// Adds a posting; zero amounts are skipped (they carry no information).
    pub fn post(mut self, book: Book, amount: Money) -> Self {
        if !amount.is_zero() {
            self.postings.push(Posting { book, amount });
        }
        self
    }

    /// Moves `amount` from `from` to `to`: debits one book and credits the other.
    pub fn transfer(self, from: Book, to: Book, amount: Money) -> Self {
        self.post(from, amount.negate()).post(to, amount)
    }

    pub fn finish(self) -> Result<BalancedTransaction, LedgerError> {
        check_balanced(&self.postings)?;
        Ok(BalancedTransaction {
            kind: self.kind,
            status: self.status,
            postings: self.postings,
        })
    }
}

/// The totals a payee's balance is kept as, per program and currency: what a balance and a
/// payout run read, maintained beside the postings instead of summed from them on each read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceTotal {
    /// Commissions earned as cash, net of clawbacks.
    Cashable,
    /// Commissions earned as platform credit.
    Credit,
    /// Cash that left in posted payouts (positive).
    Withdrawn,
    /// Cash held by payouts still in flight (positive).
    Pending,
}

impl BalanceTotal {
    pub const ALL: [BalanceTotal; 4] = [
        BalanceTotal::Cashable,
        BalanceTotal::Credit,
        BalanceTotal::Withdrawn,
        BalanceTotal::Pending,
    ];

    /// Which total a posting to `book` in a transaction of `kind` (its stored code) and
    /// `status` moves, and by how much per unit posted; `None` when it moves none (a platform
    /// book, a voided transaction). Holds and payouts debit the payee's book, so they count
    /// with the opposite sign. The SQL of `storage::balance_views::book_sums` says the same.
    pub fn moved_by(book: &str, kind: &str, status: TransactionStatus) -> Option<(Self, i8)> {
        const PAID_OUT: [&str; 5] = [
            "payout",
            "payout_return",
            "payout_correction",
            "payout_duplicate",
            "payout_partial_return",
        ];
        match (book, status) {
            (_, TransactionStatus::Voided) => None,
            ("referrer_credit", _) => Some((BalanceTotal::Credit, 1)),
            ("referrer_cashable", _) if matches!(kind, "accrual" | "clawback") => {
                Some((BalanceTotal::Cashable, 1))
            }
            ("referrer_cashable", TransactionStatus::Pending) if kind == "payout" => {
                Some((BalanceTotal::Pending, -1))
            }
            ("referrer_cashable", TransactionStatus::Posted) if PAID_OUT.contains(&kind) => {
                Some((BalanceTotal::Withdrawn, -1))
            }
            _ => None,
        }
    }
}

impl BalancedTransaction {
    /// What the transaction adds to its holders' balance totals, posting by posting.
    pub fn balance_moves(
        &self,
    ) -> impl Iterator<Item = (&AccountId, &ProgramId, BalanceTotal, Money)> {
        self.postings.iter().filter_map(|p| {
            let holder = p.book.holder()?;
            let program = p.book.program()?;
            let (total, sign) =
                BalanceTotal::moved_by(p.book.code(), self.kind.code(), self.status)?;
            let amount = if sign < 0 {
                p.amount.negate()
            } else {
                p.amount
            };
            Some((holder, program, total, amount))
        })
    }
}

/// The double-entry invariant: at least two postings, summing to zero in every currency.
pub fn check_balanced(postings: &[Posting]) -> Result<(), LedgerError> {
    if postings.len() < 2 {
        return Err(LedgerError::TooFewPostings);
    }
    let mut sums: BTreeMap<Currency, Money> = BTreeMap::new();
    for p in postings {
        let currency = p.amount.currency();
        let sum = sums
            .entry(currency)
            .or_insert_with(|| Money::zero(currency));
        *sum = sum.checked_add(&p.amount)?;
    }
    match sums.into_iter().find(|(_, sum)| !sum.is_zero()) {
        Some((currency, sum)) => Err(LedgerError::Unbalanced { currency, sum }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vast() -> ProgramId {
        ProgramId::parse("vast").unwrap()
    }
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    fn acct() -> AccountId {
        AccountId::parse("alice").unwrap()
    }

    fn usd(cents: i64) -> Money {
        Money::from_minor_units(cents, Currency::Usd)
    }

    #[test]
    fn transfers_balance() {
        let tx = TransactionDraft::new(TransactionKind::Payout, TransactionStatus::Pending)
            .transfer(
                Book::ReferrerCashable {
                    account: acct(),
                    program: vast(),
                },
                Book::RailSettlement { rail: Rail::Stripe },
                usd(1234),
            )
            .finish()
            .unwrap();
        assert_eq!(tx.postings.len(), 2);
    }

    #[test]
    fn unbalanced_and_lonely_postings_are_rejected() {
        let lonely = TransactionDraft::new(TransactionKind::Accrual, TransactionStatus::Posted)
            .post(Book::CommissionExpense { program: vast() }, usd(1));
        assert_eq!(lonely.finish(), Err(LedgerError::TooFewPostings));
        let off = TransactionDraft::new(TransactionKind::Accrual, TransactionStatus::Posted)
            .post(Book::CommissionExpense { program: vast() }, usd(-100))
            .post(
                Book::ReferrerCashable {
                    account: acct(),
                    program: vast(),
                },
                usd(99),
            );
        assert!(matches!(off.finish(), Err(LedgerError::Unbalanced { .. })));
    }

    #[test]
    fn currencies_balance_separately() {
        let mixed = TransactionDraft::new(TransactionKind::Accrual, TransactionStatus::Posted)
            .post(Book::CommissionExpense { program: vast() }, usd(-100))
            .post(
                Book::ReferrerCashable {
                    account: acct(),
                    program: vast(),
                },
                Money::from_minor_units(100, Currency::Eur),
            );
        assert!(matches!(
            mixed.finish(),
            Err(LedgerError::Unbalanced { .. })
        ));
    }

    #[test]
    fn holds_count_as_pending_until_posted_and_nothing_once_voided() {
        let cashable = Book::ReferrerCashable {
            account: acct(),
            program: vast(),
        };
        let hold = |status| {
            TransactionDraft::new(TransactionKind::Payout, status)
                .transfer(
                    cashable.clone(),
                    Book::RailSettlement { rail: Rail::Stripe },
                    usd(1234),
                )
                .finish()
                .unwrap()
        };
        let moves = |t: &BalancedTransaction| {
            t.balance_moves()
                .map(|(_, _, total, m)| (total, m))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            moves(&hold(TransactionStatus::Pending)),
            vec![(BalanceTotal::Pending, usd(1234))]
        );
        assert_eq!(
            moves(&hold(TransactionStatus::Posted)),
            vec![(BalanceTotal::Withdrawn, usd(1234))]
        );
        assert_eq!(moves(&hold(TransactionStatus::Voided)), vec![]);
        let accrual = TransactionDraft::new(TransactionKind::Accrual, TransactionStatus::Posted)
            .post(Book::CommissionExpense { program: vast() }, usd(-100))
            .post(cashable, usd(75))
            .post(
                Book::ReferrerCredit {
                    account: acct(),
                    program: vast(),
                },
                usd(25),
            )
            .finish()
            .unwrap();
        assert_eq!(
            moves(&accrual),
            vec![
                (BalanceTotal::Cashable, usd(75)),
                (BalanceTotal::Credit, usd(25))
            ]
        );
        // A return of a posted payout credits the payee back: it lowers what was withdrawn.
        assert_eq!(
            BalanceTotal::moved_by(
                "referrer_cashable",
                "payout_return",
                TransactionStatus::Posted
            ),
            Some((BalanceTotal::Withdrawn, -1))
        );
        assert_eq!(
            BalanceTotal::moved_by("rail_settlement", "payout", TransactionStatus::Posted),
            None
        );
    }

    proptest! {
        #[test]
        fn any_chain_of_transfers_balances(amounts in proptest::collection::vec(1i64..10_000_000_000, 1..20)) {
            let mut draft = TransactionDraft::new(TransactionKind::Accrual, TransactionStatus::Posted);
            for a in &amounts {
                draft = draft.transfer(
                    Book::CommissionExpense { program: vast() },
                    Book::ReferrerCredit { account: acct(), program: vast() },
                    Money::new(Decimal::new(*a, 10), Currency::Usd),
                );
            }
            prop_assert!(draft.finish().is_ok());
        }
    }
}
