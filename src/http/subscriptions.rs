//! GraphQL over WebSocket on `GET /graphql` (an `Upgrade: websocket` request): the
//! `graphql-transport-ws` protocol, and the legacy `graphql-ws`
//! (subscriptions-transport-ws) one, both through async-graphql's protocol machine,
//! run here over axum's socket so the connection can be closed with a reason.
//!
//! - **Max connections**: at most `GITSTORE_SUBSCRIPTIONS_MAX_CONNECTIONS` sockets are
//!   open at once (a semaphore permit per socket); one more upgrade is answered `503`
//!   with a GraphQL-shaped body, before any upgrade.
//! - **Limits**: every operation goes through the same guard as over HTTP
//!   (`GraphqlApi::execute_stream`), and one message may be at most
//!   `GITSTORE_API_MAX_BODY_BYTES`.
//! - **Auth**: subscriptions and queries are public; a mutation sent on the socket
//!   needs the bearer token in the init payload (`{"Authorization": "Bearer …"}`).
//! - **Slow consumers**: a subscriber the feed dropped for lag gets its final error
//!   (naming the position to resume after), then the socket is closed with code
//!   [`LAGGED_CLOSE_CODE`] and that reason. A client that has stopped reading cannot
//!   even be sent that: [`DROP_GRACE`] after the drop its socket is cut.
//! - **Init**: a socket that sends no `connection_init` within [`INIT_TIMEOUT`] is closed
//!   with `4408`.
//! - **Shutdown**: when the feed stops, every socket is closed with `1001`.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::Data;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, WebSocketProtocols, WsMessage};
use axum::extract::connect_info::ConnectInfo;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{FromRequestParts, Request, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::OwnedSemaphorePermit;

use super::HttpState;
use super::errors::{INVALID_ARGUMENT, UNAVAILABLE, bad_request, error_response};
use crate::auth::Credentials;
use crate::feed::Connection;

/// Gauge of open WebSocket connections.
pub const CONNECTIONS_METRIC: &str = "gitstore_websocket_connections";
/// Counter of WebSocket upgrades refused because the limit was reached.
pub const REFUSED_METRIC: &str = "gitstore_websocket_connections_refused_total";

/// Close code of a connection whose subscriber fell too far behind (application range).
pub const LAGGED_CLOSE_CODE: u16 = 4008;
/// How long a dropped subscriber's connection may take to be sent its close.
pub const DROP_GRACE: Duration = Duration::from_secs(5);
/// How long a new socket may take to send `connection_init` before it is closed with
/// `4408` (as `graphql-transport-ws` says), so idle sockets cannot hold the connection
/// slots.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `request` asks for a WebSocket.
pub(super) fn is_upgrade(request: &Request) -> bool {
    request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Answers a WebSocket upgrade on `/graphql`.
pub(super) async fn upgrade(state: HttpState, request: Request) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let (mut parts, _body) = request.into_parts();
    let Some(protocol) = protocol(&parts.headers) else {
        return bad_request(
            "a WebSocket on /graphql needs the subprotocol graphql-transport-ws (or the legacy \
             graphql-ws) in Sec-WebSocket-Protocol",
        );
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return error_response(rejection.status(), INVALID_ARGUMENT, rejection.body_text());
        }
    };
    let Ok(permit) = state.sockets.clone().try_acquire_owned() else {
        metrics::counter!(REFUSED_METRIC).increment(1);
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            UNAVAILABLE,
            format!(
                "too many WebSocket connections: at most {} may be open at once; retry later",
                state.max_sockets
            ),
        );
    };
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(state.max_body_bytes)
        .on_upgrade(move |socket| serve(state, socket, protocol, client, permit))
        .into_response()
}

/// The first GraphQL subprotocol the client offers.
fn protocol(headers: &axum::http::HeaderMap) -> Option<WebSocketProtocols> {
    headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(|offered| {
            offered
                .split(',')
                .find_map(|p| p.trim().parse::<WebSocketProtocols>().ok())
        })
}

/// Runs one connection until either side closes it.
async fn serve(
    state: HttpState,
    socket: WebSocket,
    protocol: WebSocketProtocols,
    client: Option<std::net::IpAddr>,
    _permit: OwnedSemaphorePermit,
) {
    metrics::gauge!(CONNECTIONS_METRIC).increment(1.0);
    let connection = Arc::new(Connection::default());
    let mut data = Data::default();
    data.insert(connection.clone());
    let (mut sink, stream) = socket.split();
    let input = stream
        .take_while(|message| std::future::ready(message.is_ok()))
        .filter_map(|message| {
            std::future::ready(match message {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => Some(message.into_data()),
                _ => None,
            })
        });
    let initialised = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let init_seen = initialised.clone();
    let on_init = move |payload: serde_json::Value| async move {
        init_seen.store(true, std::sync::atomic::Ordering::Release);
        let authorization = ["Authorization", "authorization"]
            .iter()
            .find_map(|key| payload.get(*key))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        let mut data = Data::default();
        data.insert(Credentials {
            authorization,
            client,
        });
        Ok(data)
    };
    let mut messages = async_graphql::http::WebSocket::new(state.api.clone(), input, protocol)
        .connection_data(data)
        .on_connection_init(on_init);
    let feed = state.api.feed().clone();
    let stopped = feed.stopped();
    let cut = async {
        connection.subscriber_dropped().await;
        tokio::time::sleep(DROP_GRACE).await;
    };
    let init_timeout = tokio::time::sleep(INIT_TIMEOUT);
    tokio::pin!(stopped, cut, init_timeout);
    let mut waiting_for_init = true;
    loop {
        let message = tokio::select! {
            () = &mut init_timeout, if waiting_for_init => {
                waiting_for_init = false;
                if initialised.load(std::sync::atomic::Ordering::Acquire) {
                    continue;
                }
                let reason = "connection initialisation timeout".to_owned();
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(close(4408, reason))).await;
                break;
            }
            () = &mut cut => {
                tracing::info!("cut a dropped subscriber's connection: it did not take its close");
                break;
            }
            () = &mut stopped => {
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(close(1001, "server shutting down".to_owned()))).await;
                break;
            }
            message = messages.next() => message,
        };
        let Some(message) = message else { break };
        let message = match message {
            WsMessage::Text(text) => Message::Text(text.into()),
            WsMessage::Close(code, reason) => close(code, reason),
        };
        tokio::select! {
            () = &mut cut => break,
            sent = sink.send(message) => if sent.is_err() { break },
        }
        if let Some(reason) = connection.close_reason() {
            tokio::select! {
                () = &mut cut => {}
                _ = sink.send(close(LAGGED_CLOSE_CODE, reason)) => {}
            }
            break;
        }
    }
    metrics::gauge!(CONNECTIONS_METRIC).decrement(1.0);
}

/// A close frame; the reason is cut to the 123 bytes a frame allows.
fn close(code: u16, mut reason: String) -> Message {
    if reason.len() > 123 {
        let mut end = 123;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}
