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
//! The console binds loopback by default. Any other address needs a token (`--token-file`,
//! or `HYBRID_TOKEN`), checked on every request as `Authorization: Bearer TOKEN`.

pub mod metrics;

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
}

/// What the console reads from the running host.
pub struct Host {
    pub rules: Arc<ArcSwap<Bundle>>,
    pub local: Arc<dyn Backend>,
}

/// The token from `--token-file` (its first line), else `HYBRID_TOKEN`.
pub fn token(file: Option<&std::path::Path>) -> Result<Option<String>, ConsoleError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| ConsoleError::Token {
            path: path.to_owned(),
            source,
        })?;
        let token = text.lines().next().unwrap_or("").trim().to_owned();
        return Ok(Some(token).filter(|t| !t.is_empty()));
    }
    Ok(std::env::var("HYBRID_TOKEN").ok().filter(|t| !t.is_empty()))
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
                for request in server.incoming_requests() {
                    let response = answer(&request, token.as_deref(), &host);
                    let _ = request.respond(response);
                }
            })
            .map_err(|e| ConsoleError::Listen {
                addr: wanted,
                message: e.to_string(),
            })?;
    }
    tracing::info!(url = %format!("http://{bound}"), "console: /metrics, /healthz, /readyz");
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

fn authorised(request: &tiny_http::Request, token: Option<&str>) -> bool {
    let Some(token) = token else { return true };
    request.headers().iter().any(|h| {
        h.field.equiv("Authorization")
            && h.value
                .as_str()
                .strip_prefix("Bearer ")
                .is_some_and(|given| same(given.trim(), token))
    })
}

fn answer(request: &tiny_http::Request, token: Option<&str>, host: &Host) -> Response {
    if !authorised(request, token) {
        return respond(
            401,
            "text/plain; charset=utf-8",
            "a token is needed: Authorization: Bearer TOKEN\n",
        )
        .with_header(
            tiny_http::Header::from_bytes("WWW-Authenticate", "Bearer").expect("a valid header"),
        );
    }
    if !matches!(
        request.method(),
        tiny_http::Method::Get | tiny_http::Method::Head
    ) {
        return respond(405, "text/plain; charset=utf-8", "only GET here\n");
    }
    let path = request.url().split('?').next().unwrap_or("/");
    match path {
        "/metrics" => respond(
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics::global().render(),
        ),
        "/healthz" => respond(200, "text/plain; charset=utf-8", "ok\n"),
        "/readyz" => {
            let local = host.local.load_state();
            let ready = local != "failed";
            let body = serde_json::json!({
                "ready": ready,
                "rules_version": host.rules.load().version,
                "local_model": local,
            });
            respond(
                if ready { 200 } else { 503 },
                "application/json",
                format!("{body}\n"),
            )
        }
        _ => respond(
            404,
            "text/plain; charset=utf-8",
            "not here: /metrics, /healthz, /readyz\n",
        ),
    }
}
