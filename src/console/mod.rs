//! # The operations console: what a long-running host shows while it runs
//!
//! Operations teams run hybrid as a `--watch` host or a fleet worker and watch it with the
//! tools they already have. `--listen ADDR` (or `[serve] listen`) serves:
//!
//! - `/metrics`: [`metrics`] in the OpenMetrics text format, which Prometheus scrapes;
//! - `/healthz`: the process answers;
//! - `/readyz`: the rules are built, and the local model has not failed to load (its load
//!   state is in the answer).
//!
//! - `/review`: the review queue ([`review`]), one item at a time or filtered, with
//!   keyboard shortcuts; decisions go to `reviews.jsonl`;
//! - `/dashboard`: the report's numbers, live ([`dashboard`]).
//!
//! `hybrid review OUT.jsonl` serves the same two pages for a results file on its own.
//!
//! The console binds loopback by default. Any other address needs a token (`--token-file`,
//! or `HYBRID_TOKEN`), checked on every request: `Authorization: Bearer TOKEN`, or the
//! cookie a browser gets by opening a page once with `?token=TOKEN` (`SameSite=Strict`, so
//! another site cannot post decisions with it). Nothing changes state on a GET, and every
//! value from a document is put on the pages as text, never as markup.

pub mod dashboard;
pub mod metrics;
pub mod review;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::bundle::Bundle;
use crate::models::Backend;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("`{0}` is not an address to listen on\nhint: write HOST:PORT, e.g. 127.0.0.1:9464")]
    Address(String),
    #[error("--listen {0} can be reached from other machines, so the console needs a token\nhint: pass --token-file FILE (or set HYBRID_TOKEN), or listen on 127.0.0.1")]
    NeedsToken(SocketAddr),
    #[error("cannot listen on {addr}: {message}\nhint: is another process using the port? Pick another with --listen")]
    Listen { addr: SocketAddr, message: String },
    #[error("cannot read the token file {path}: {source}")]
    Token {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the console token must be printable ASCII without spaces, `;` or `,` (it travels in a header and a cookie)\nhint: e.g. `openssl rand -hex 24 > token`")]
    BadToken,
}

/// What the console reads: the running host's rules and local model (none for `hybrid
/// review`), and the results the pages show.
pub struct Host {
    pub rules: Option<Arc<ArcSwap<Bundle>>>,
    pub local: Option<Arc<dyn Backend>>,
    /// The review queue of the results file, when there is one.
    pub review: Option<review::Queue>,
    pub pricing: crate::cost::Pricing,
}

/// The token from `--token-file` (its first line), else `HYBRID_TOKEN`.
pub fn token(file: Option<&std::path::Path>) -> Result<Option<String>, ConsoleError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| ConsoleError::Token {
            path: path.to_owned(),
            source,
        })?;
        let token = text.lines().next().unwrap_or("").trim().to_owned();
        return checked(Some(token).filter(|t| !t.is_empty()));
    }
    checked(std::env::var("HYBRID_TOKEN").ok().filter(|t| !t.is_empty()))
}

fn checked(token: Option<String>) -> Result<Option<String>, ConsoleError> {
    match &token {
        Some(t)
            if !t
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b';' && b != b',') =>
        {
            Err(ConsoleError::BadToken)
        }
        _ => Ok(token),
    }
}

/// Without a token, only requests addressed to this machine by a loopback name are
/// answered: a web page whose name was rebound to 127.0.0.1 sends its own name in `Host`,
/// and must not read the queue or post decisions.
fn loopback_host(request: &tiny_http::Request) -> bool {
    let Some(host) = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Host"))
        .map(|h| h.value.as_str().to_ascii_lowercase())
    else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or("").to_owned(),
        None => host.split(':').next().unwrap_or("").to_owned(),
    };
    matches!(name.as_str(), "localhost" | "127.0.0.1" | "::1")
}

/// Starts serving on `addr` from two threads; returns the address bound (port 0 picks one).
pub fn serve(
    addr: &str,
    token: Option<String>,
    host: Arc<Host>,
) -> Result<SocketAddr, ConsoleError> {
    use std::net::ToSocketAddrs;
    let wanted = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ConsoleError::Address(addr.to_owned()))?;
    if !wanted.ip().is_loopback() && token.is_none() {
        return Err(ConsoleError::NeedsToken(wanted));
    }
    let server = tiny_http::Server::http(wanted).map_err(|e| ConsoleError::Listen {
        addr: wanted,
        message: e.to_string(),
    })?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| ConsoleError::Address(addr.to_owned()))?;
    let server = Arc::new(server);
    let token = Arc::new(token);
    for n in 0..2 {
        let (server, token, host) = (server.clone(), token.clone(), host.clone());
        std::thread::Builder::new()
            .name(format!("console-{n}"))
            .spawn(move || {
                for mut request in server.incoming_requests() {
                    let response = answer(&mut request, token.as_deref(), &host);
                    let _ = request.respond(response);
                }
            })
            .map_err(|e| ConsoleError::Listen {
                addr: wanted,
                message: e.to_string(),
            })?;
    }
    let pages = if host.review.is_some() {
        ", /review, /dashboard"
    } else {
        ""
    };
    tracing::info!(url = %format!("http://{bound}"), "console: /metrics, /healthz, /readyz{pages}");
    Ok(bound)
}

type Response = tiny_http::Response<std::io::Cursor<Vec<u8>>>;

fn respond(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
    tiny_http::Response::from_data(body.into())
        .with_status_code(status)
        .with_header(
            tiny_http::Header::from_bytes("Content-Type", content_type).expect("a valid header"),
        )
        .with_header(
            tiny_http::Header::from_bytes("Cache-Control", "no-store").expect("a valid header"),
        )
}

/// Equal strings in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The token a request carries: `Authorization: Bearer`, the console's cookie, or
/// `?token=` (which also sets the cookie).
fn carried(request: &tiny_http::Request) -> Vec<String> {
    let mut found = Vec::new();
    for h in request.headers() {
        if h.field.equiv("Authorization") {
            if let Some(t) = h.value.as_str().strip_prefix("Bearer ") {
                found.push(t.trim().to_owned());
            }
        } else if h.field.equiv("Cookie") {
            for part in h.value.as_str().split(';') {
                if let Some(t) = part.trim().strip_prefix("hybrid_token=") {
                    found.push(t.to_owned());
                }
            }
        }
    }
    if let Some(t) = query(request.url(), "token") {
        found.push(t);
    }
    found
}

/// A query parameter, percent-decoded.
fn query(url: &str, name: &str) -> Option<String> {
    let (_, q) = url.split_once('?')?;
    q.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn authorised(request: &tiny_http::Request, token: Option<&str>) -> bool {
    let Some(token) = token else { return true };
    carried(request).iter().any(|given| same(given, token))
}

fn json_response(status: u16, body: &serde_json::Value) -> Response {
    respond(status, "application/json", format!("{body}\n"))
}

fn html(page: &'static str) -> Response {
    respond(200, "text/html; charset=utf-8", page).with_header(
        tiny_http::Header::from_bytes(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
        )
        .expect("a valid header"),
    )
}

/// A JSON request body, at most 1 MiB, sent as `application/json` (a form on another site
/// cannot send that without the browser asking first).
fn json_body(request: &mut tiny_http::Request) -> Result<serde_json::Value, Response> {
    let is_json = request
        .headers()
        .iter()
        .any(|h| h.field.equiv("Content-Type") && h.value.as_str().starts_with("application/json"));
    if !is_json {
        return Err(json_response(
            415,
            &serde_json::json!({"error": "send the decision as application/json"}),
        ));
    }
    let mut body = Vec::new();
    use std::io::Read;
    if request
        .as_reader()
        .take((1 << 20) + 1)
        .read_to_end(&mut body)
        .is_err()
        || body.len() > 1 << 20
    {
        return Err(json_response(
            413,
            &serde_json::json!({"error": "the request is too large"}),
        ));
    }
    serde_json::from_slice(&body)
        .map_err(|e| json_response(400, &serde_json::json!({"error": format!("not JSON: {e}")})))
}

fn answer(request: &mut tiny_http::Request, token: Option<&str>, host: &Host) -> Response {
    if token.is_none() && !loopback_host(request) {
        return respond(
            403,
            "text/plain; charset=utf-8",
            "this console answers requests to localhost or 127.0.0.1 only\nhint: to reach it by another name, give it a token (--token-file)\n",
        );
    }
    if !authorised(request, token) {
        return respond(
            401,
            "text/plain; charset=utf-8",
            "a token is needed: Authorization: Bearer TOKEN, or open a page once with ?token=TOKEN\n",
        )
        .with_header(
            tiny_http::Header::from_bytes("WWW-Authenticate", "Bearer").expect("a valid header"),
        );
    }
    let response = route(request, host);
    // A token given in the address becomes a cookie, so the page's own requests carry it.
    let cookie = match (token, query(request.url(), "token")) {
        (Some(t), Some(_)) => tiny_http::Header::from_bytes(
            "Set-Cookie",
            format!("hybrid_token={t}; HttpOnly; SameSite=Strict; Path=/"),
        )
        .ok(),
        _ => None,
    };
    match cookie {
        Some(cookie) => response.with_header(cookie),
        None => response,
    }
}

fn route(request: &mut tiny_http::Request, host: &Host) -> Response {
    use tiny_http::Method;
    let path = request.url().split('?').next().unwrap_or("/").to_owned();
    let method = request.method().clone();
    let no_queue = || {
        respond(
            404,
            "text/plain; charset=utf-8",
            "no results file here: the review page and the dashboard need --out FILE (or `hybrid review FILE`)\n",
        )
    };
    match (&method, path.as_str()) {
        (Method::Post, "/api/decisions") => {
            let Some(queue) = &host.review else {
                return no_queue();
            };
            let body = match json_body(request) {
                Ok(b) => b,
                Err(response) => return response,
            };
            let submitted: review::Submitted = match serde_json::from_value(body) {
                Ok(s) => s,
                Err(e) => return json_response(400, &serde_json::json!({"error": e.to_string()})),
            };
            match review::decide(queue, submitted) {
                Ok(decision) => json_response(200, &serde_json::json!({"decision": decision})),
                Err(e @ review::ReviewError::NoItem(_)) => {
                    json_response(404, &serde_json::json!({"error": e.to_string()}))
                }
                Err(e @ review::ReviewError::Invalid(_)) => {
                    json_response(422, &serde_json::json!({"error": e.to_string()}))
                }
                Err(e) => json_response(500, &serde_json::json!({"error": e.to_string()})),
            }
        }
        (Method::Get | Method::Head, _) => get(&path, request.url(), host),
        _ => respond(
            405,
            "text/plain; charset=utf-8",
            "only GET here (decisions: POST /api/decisions)\n",
        ),
    }
}

fn get(path: &str, url: &str, host: &Host) -> Response {
    let no_queue = || {
        respond(
            404,
            "text/plain; charset=utf-8",
            "no results file here: the review page and the dashboard need --out FILE (or `hybrid review FILE`)\n",
        )
    };
    match path {
        "/metrics" => respond(
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics::global().render(),
        ),
        "/healthz" => respond(200, "text/plain; charset=utf-8", "ok\n"),
        "/readyz" => {
            let local = host.local.as_ref().map_or("ready", |l| l.load_state());
            let ready = local != "failed";
            let body = serde_json::json!({
                "ready": ready,
                "rules_version": host.rules.as_ref().map(|r| r.load().version.clone()),
                "local_model": local,
            });
            json_response(if ready { 200 } else { 503 }, &body)
        }
        "/" if host.review.is_some() => tiny_http::Response::from_data(Vec::new())
            .with_status_code(303)
            .with_header(tiny_http::Header::from_bytes("Location", "/dashboard").expect("valid")),
        "/review" if host.review.is_some() => html(include_str!("assets/review.html")),
        "/dashboard" if host.review.is_some() => html(include_str!("assets/dashboard.html")),
        "/api/items" => match &host.review {
            Some(queue) => match review::items(queue) {
                Ok(items) => json_response(200, &serde_json::json!({"items": items})),
                Err(e) => json_response(500, &serde_json::json!({"error": e.to_string()})),
            },
            None => no_queue(),
        },
        "/api/document" => {
            let Some(queue) = &host.review else {
                return no_queue();
            };
            let key = query(url, "item").unwrap_or_default();
            let item = review::items(queue)
                .ok()
                .and_then(|items| items.into_iter().find(|i| i.key == key));
            match item.as_ref().and_then(review::document) {
                Some(text) => json_response(200, &serde_json::json!({"text": text})),
                None => json_response(
                    404,
                    &serde_json::json!({"error": "the document is not on this machine"}),
                ),
            }
        }
        "/api/summary" => match &host.review {
            Some(queue) => json_response(
                200,
                &dashboard::summary(std::slice::from_ref(&queue.results), &host.pricing),
            ),
            None => no_queue(),
        },
        _ => respond(
            404,
            "text/plain; charset=utf-8",
            "not here: /metrics, /healthz, /readyz, /review, /dashboard\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_must_travel_in_a_header_and_a_cookie() {
        assert!(checked(Some("s3cret-Token_1".into())).is_ok());
        for bad in ["pässwort", "a b", "a;b", "a,b"] {
            assert!(
                matches!(checked(Some(bad.into())), Err(ConsoleError::BadToken)),
                "{bad}"
            );
        }
    }

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(query("/review?token=a%2Bb&x=1", "token").unwrap(), "a+b");
        assert_eq!(query("/review?item=d%C3%A9%401", "item").unwrap(), "dé@1");
        assert_eq!(query("/review?x=%zz", "x").unwrap(), "%zz");
        assert!(query("/review", "token").is_none());
    }
}
