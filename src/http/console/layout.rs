//! The page shell every console page shares (navigation, the flash message, sign-out) and
//! the small helpers pages use to show times and build forms that carry the CSRF token.

use axum::response::Html;
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::session::Session;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1d2433}\
nav{background:#1d2433;padding:.6rem 1rem;display:flex;gap:1rem;align-items:center}\
nav a{color:#fff;text-decoration:none}nav form{margin-left:auto}\
main{padding:1rem 1.5rem;max-width:72rem}\
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:left;vertical-align:top}\
.flash{padding:.5rem 1rem;border-radius:4px;margin:.5rem 0}.ok{background:#e3f6e8}.refused,.error{background:#fde8e8}\
form.act{display:inline-block;border:1px solid #ccc;padding:.5rem;margin:.25rem;border-radius:4px}\
.muted{color:#667}";

/// A rendered page as an HTML response.
pub fn html(page: Markup) -> Html<String> {
    Html(page.into_string())
}

/// Every page's head: its title and the one stylesheet.
fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            title { (title) " · payouts console" }
            style { (STYLE) }
        }
    }
}

/// A page without navigation: sign-in and errors.
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body { main { (body) } }
        }
    }
}

/// A signed-in page: navigation, who is signed in, the flash, then `body`.
pub fn page(session: &Session, title: &str, body: Markup) -> Html<String> {
    html(html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                nav {
                    a href="/console" { "Home" }
                    a href="/console/attention" { "Attention" }
                    a href="/console/approvals" { "Approvals" }
                    a href="/console/rails" { "Rails" }
                    a href="/console/reconciliation" { "Reconciliation" }
                    form method="post" action="/console/logout" {
                        (csrf(session))
                        span.muted { (session.principal.name) " (" (session.principal.scope.code()) ") " }
                        button type="submit" id="sign-out" { "Sign out" }
                    }
                }
                main {
                    @if let Some(flash) = &session.flash {
                        p.flash.(if flash.ok { "ok" } else { "refused" }) id="flash" { (flash.text) }
                    }
                    h1 { (title) }
                    (body)
                }
            }
        }
    })
}

/// The hidden field every console form posts back.
pub fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// A form posting to `action` with a required reason, `extra` fields and a submit button.
pub fn action_form(session: &Session, action: &str, label: &str, extra: Markup) -> Markup {
    let name = label.to_lowercase().replace(' ', "-");
    html! {
        form.act method="post" action=(action) data-action=(name) {
            (csrf(session))
            (extra)
            label { "Reason " input type="text" name="reason" required minlength="1" maxlength="2000"; }
            " "
            button type="submit" { (label) }
        }
    }
}

pub fn time(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}
