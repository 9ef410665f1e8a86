//! A pooled connection handed back while still inside a transaction (a future cancelled at
//! the wrong moment, a library's raw `BEGIN`) must never be reused: whatever the next caller
//! wrote would sit in that open transaction, invisible to every other connection and lost.
//! (Seen as rare PostgreSQL failures: a row just written not found, a foreign key refused.)

use payouts::domain::api_key::Scope;

use crate::common::TestDb;

/// Leaves every connection the pool can hold idle inside an open transaction.
async fn leak_open_transactions(store: &payouts::storage::Store) {
    payouts::on_backend!(store, s => {
        let pool = s.pool();
        let mut held = Vec::new();
        for _ in 0..pool.options().get_max_connections() {
            let mut conn = pool.acquire().await.expect("a connection");
            sqlx::raw_sql("BEGIN").execute(&mut *conn).await.expect("begin");
            held.push(conn);
        }
        drop(held);
    });
}

#[tokio::test]
async fn a_connection_left_inside_a_transaction_is_never_reused() {
    let db = TestDb::named("pool_hygiene").await;
    let store = db.open(crate::common::all_rails_programs()).await;
    leak_open_transactions(&store).await;
    let (_, key) = store
        .create_api_key("after-a-leak", Scope::Operator, None)
        .await
        .expect("create a key");
    let found = store.principal(&key).await.expect("look the key up");
    assert!(
        found.is_some(),
        "a key just created is not visible: it was written inside a leaked transaction"
    );
}

/// The check that finds a leaked transaction must not mistake a clean connection for one: a
/// probe that did (over the extended protocol the statement's clock restarts after the
/// transaction's) closed and reopened a connection on every acquire, and under load the pool
/// ran dry ("pool timed out while waiting for an open connection"). Sequential work reuses
/// the connections already open. (SQLite never discards one: it rolls back instead.)
#[tokio::test]
async fn clean_connections_are_reused() {
    let db = TestDb::named("pool_reuse").await;
    let store = db.open(crate::common::all_rails_programs()).await;
    let payouts::storage::Store::Postgres(s) = &store else {
        return;
    };
    let pool = s.pool();
    let mut backends = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let mut conn = pool.acquire().await.expect("a connection");
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await
            .expect("backend pid");
        backends.insert(pid);
    }
    // Every connection that served is still open: none was closed as dirty.
    let open = pool.size() as usize;
    assert!(
        backends.len() <= open,
        "{} server connections served 30 sequential acquires, {open} are open: clean \
         connections were closed and reopened",
        backends.len()
    );
}
