//! API keys: created with only their hash stored, and looked up by a presented key's hash.

use super::{Store, StoreResult, parse_code, parse_stored, to_millis};
use crate::domain::api_key::{Principal, Scope, generate_key, key_hash};
use crate::domain::ids::AccountId;

impl Store {
    /// Creates a key; returns its id and its text, which is not stored and cannot be shown
    /// again.
    pub async fn create_api_key(
        &self,
        name: &str,
        scope: Scope,
        account: Option<&AccountId>,
    ) -> StoreResult<(String, String)> {
        let key = generate_key();
        let id = format!("key_{}", crate::clock::ulid());
        sqlx::query(
            "INSERT INTO api_keys (id, name, scope, account_id, key_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(name)
        .bind(scope.code())
        .bind(account.map(AccountId::as_str))
        .bind(key_hash(&key))
        .bind(to_millis(crate::clock::now()))
        .execute(self.pool())
        .await?;
        Ok((id, key))
    }

    /// The caller a presented key identifies, if the key is known and not revoked.
    pub async fn principal(&self, presented: &str) -> StoreResult<Option<Principal>> {
        let row: Option<(String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT id, name, scope, account_id FROM api_keys \
             WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(key_hash(presented))
        .fetch_optional(self.pool())
        .await?;
        row.map(|(key_id, name, scope, account)| {
            Ok(Principal {
                key_id,
                name,
                scope: parse_code("key scope", &scope, Scope::from_code)?,
                account: account
                    .map(|a| parse_stored("account id", &a))
                    .transpose()?,
            })
        })
        .transpose()
    }

    /// Revokes a key for good; `false` when no such live key exists.
    pub async fn revoke_api_key(&self, id: &str) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(to_millis(crate::clock::now()))
                .bind(id)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether the database answers: the readiness check.
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(self.pool()).await?;
        Ok(())
    }
}
