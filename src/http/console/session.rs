//! Console sessions: a random token in an HttpOnly, SameSite=Strict cookie scoped to
//! `/console`, mapped server-side (in memory) to the principal of the key that signed in.
//! The key itself is checked once at sign-in and never kept, so it is in no cookie, URL or
//! log line. Each session carries a CSRF token that every form posts back.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};

use super::{ConsoleError, ConsoleState};
use crate::domain::api_key::{Action, Principal};

/// The session cookie's name.
pub const COOKIE: &str = "payouts_console";
/// A session idle this long is gone: a console left open overnight signs in again.
pub const IDLE: Duration = Duration::from_secs(8 * 3600);

/// A one-time message shown on the next page after an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
}

#[derive(Debug, Clone)]
struct Entry {
    principal: Principal,
    csrf: String,
    expires: Instant,
    flash: Option<Flash>,
}

/// Every live session, by token.
#[derive(Debug, Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Entry>>,
}

/// 32 random bytes from the operating system's generator, as hex.
fn token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic elsewhere while holding the lock leaves the map usable: entries are
        // written whole.
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a session for `principal`; returns its token.
    pub fn start(&self, principal: Principal) -> String {
        let token = token();
        let now = Instant::now();
        let mut map = self.map();
        map.retain(|_, e| e.expires > now);
        map.insert(
            token.clone(),
            Entry {
                principal,
                csrf: self::token(),
                expires: now + IDLE,
                flash: None,
            },
        );
        token
    }

    pub fn end(&self, token: &str) {
        self.map().remove(token);
    }

    pub fn flash(&self, token: &str, flash: Flash) {
        if let Some(e) = self.map().get_mut(token) {
            e.flash = Some(flash);
        }
    }

    /// The live session for `token`, its idle time renewed; the flash is handed out (and
    /// forgotten) when `take_flash`.
    fn touch(&self, token: &str, take_flash: bool) -> Option<Session> {
        let now = Instant::now();
        let mut map = self.map();
        let entry = map.get_mut(token).filter(|e| e.expires > now)?;
        entry.expires = now + IDLE;
        Some(Session {
            token: token.to_string(),
            principal: entry.principal.clone(),
            csrf: entry.csrf.clone(),
            flash: if take_flash { entry.flash.take() } else { None },
        })
    }
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub principal: Principal,
    pub csrf: String,
    pub flash: Option<Flash>,
}

impl Session {
    /// Whether this session's key may do `action` (the API's own table).
    pub fn may(&self, action: Action<'_>) -> bool {
        self.principal.authorize(action).is_ok()
    }

    /// Refuses `action` with a 403 page unless the key's scope allows it.
    pub fn require(&self, action: Action<'_>) -> Result<(), ConsoleError> {
        if self.may(action) {
            Ok(())
        } else {
            Err(ConsoleError::Forbidden(format!(
                "a key with scope {} may not do this here",
                self.principal.scope.code()
            )))
        }
    }

    /// Refuses a form whose CSRF token is missing or not this session's.
    pub fn check_csrf(&self, sent: Option<&str>) -> Result<(), ConsoleError> {
        match sent {
            Some(sent) if same(sent.as_bytes(), self.csrf.as_bytes()) => Ok(()),
            _ => Err(ConsoleError::Forbidden(
                "this form is stale or did not come from the console; reload the page and try again"
                    .into(),
            )),
        }
    }
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The session token from the request's cookies, if any.
pub fn cookie_token(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// The cookie that carries a new session.
pub fn set_cookie(token: &str) -> String {
    format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/console; Max-Age={}",
        IDLE.as_secs()
    )
}

/// The cookie that ends one.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/console; Max-Age=0")
}

impl FromRequestParts<ConsoleState> for Session {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Session, ConsoleError> {
        let token = cookie_token(parts).ok_or(ConsoleError::SignedOut)?;
        let take_flash = parts.method == Method::GET;
        let session = state
            .sessions
            .touch(&token, take_flash)
            .ok_or(ConsoleError::SignedOut)?;
        // Only operators and finance use the console; sign-in already checked this, and it
        // is checked again so a session can never outgrow its key.
        if !session.may(Action::ReadOperations) {
            return Err(ConsoleError::Forbidden(
                "this key may not use the console".into(),
            ));
        }
        // A revoked (or no longer configured) key ends its sessions at their next request.
        let id = &session.principal.key_id;
        let live = if id.starts_with("config:") {
            let configured = &state.api.settings.configured_keys;
            configured.iter().any(|k| &k.principal.key_id == id)
        } else {
            state.api.store.api_key_live(id).await?
        };
        if !live {
            state.sessions.end(&token);
            return Err(ConsoleError::SignedOut);
        }
        Ok(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_compare_exactly() {
        let (a, b) = (token(), token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(same(a.as_bytes(), a.as_bytes()));
        assert!(!same(a.as_bytes(), b.as_bytes()));
        assert!(!same(b"", a.as_bytes()));
    }
}
