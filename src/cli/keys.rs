//! `payouts keys create`: API keys for the HTTP API, shown once and stored hashed.

use anyhow::Result;
use clap::Subcommand;
use payouts::domain::api_key::check_grant;
use payouts::domain::ids::AccountId;
use payouts::storage::Store;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key. Its text is printed once; only its SHA-256 is stored.
    Create {
        /// What the key is for, e.g. "console (production)".
        #[arg(long)]
        name: String,
        /// ingest, referrer, operator or finance.
        #[arg(long)]
        scope: String,
        /// The one account a referrer key acts for.
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id (`key_...`): every request with it is refused from now on.
    Revoke { id: String },
    /// Print the SHA-256 of a key read from standard input, for PAYOUTS_API_KEYS: generate the
    /// key yourself (e.g. `openssl rand -base64 32`), keep it secret, configure only the hash.
    Hash,
}

/// `keys hash`: needs no database.
pub fn hash() -> Result<i32> {
    let mut key = String::new();
    std::io::stdin().read_line(&mut key)?;
    let key = key.trim();
    if key.is_empty() {
        anyhow::bail!("no key on standard input; e.g. `echo \"$KEY\" | payouts keys hash`");
    }
    outln!("{}", payouts::domain::api_key::key_hash(key));
    Ok(0)
}

pub async fn keys(store: &Store, command: KeysCommand) -> Result<i32> {
    match command {
        KeysCommand::Create {
            name,
            scope,
            account,
            json,
        } => {
            let account = account.as_deref().map(AccountId::parse).transpose()?;
            let scope = check_grant(&scope, account.as_ref())?;
            let (id, key) = store.create_api_key(&name, scope, account.as_ref()).await?;
            if json {
                super::print_json(&serde_json::json!({
                    "id": id,
                    "name": name,
                    "scope": scope,
                    "account": account,
                    "key": key,
                }))?;
            } else {
                outln!("created {id} ({}, scope {})", name, scope.code());
                outln!("key: {key}");
                outln!("this is the only time the key is shown: store it now");
            }
            Ok(0)
        }
        KeysCommand::Hash => hash(),
        KeysCommand::Revoke { id } => {
            if store.revoke_api_key(&id).await? {
                outln!("revoked {id}");
                Ok(0)
            } else {
                eprintln!("error: no live API key {id}");
                Ok(1)
            }
        }
    }
}
