//! The load generator: `connections` keep-alive HTTP/1.1 connections, each a loop that
//! sends its next request as soon as the previous one has been answered (closed loop, like
//! `wrk`), for a fixed time or a fixed number of requests. Each connection is a [`Wire`]:
//! HTTP/1.1 spoken on the socket by the task that measures it.
//!
//! Every request is a `POST /graphql` whose body comes from a [`Source`]. A response counts
//! as an error unless it is a 200 without an `"errors"` entry, so a workload that silently
//! fails cannot pass for a fast one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::procfs;
use crate::wire::{Answer, Wire};

/// What the requests are. One value serves every connection (interior mutability for the
/// few sources that keep state).
pub trait Source: Send + Sync + 'static {
    /// The body of request number `ticket` (global, from 0), sent on connection `conn`.
    fn request(&self, conn: usize, ticket: u64) -> Bytes;

    /// Called with the body of every successful answer; `ticket` is the request's.
    fn answered(&self, _conn: usize, _ticket: u64, _body: &[u8]) {}
}

/// A fixed list of bodies, sent round-robin.
pub struct Cycle(pub Vec<Bytes>);

impl Source for Cycle {
    fn request(&self, _conn: usize, ticket: u64) -> Bytes {
        self.0[(ticket % self.0.len() as u64) as usize].clone()
    }
}

/// When a run ends.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// Run `warmup` unmeasured, then measure for `measure`.
    Time {
        /// Unmeasured start (connections open, caches warm, the server's pools grow).
        warmup: Duration,
        /// Measured window.
        measure: Duration,
    },
    /// Send exactly this many requests, all measured.
    Count(u64),
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Latency (nanoseconds from sending to the answer's last byte) of every successful
    /// request inside the measured window.
    pub latencies: Vec<u64>,
    /// Failed requests inside the measured window.
    pub errors: u64,
    /// The first failure's status and body (shortened).
    pub first_error: Option<String>,
    /// Length of the measured window.
    pub elapsed: Duration,
    /// CPU time (user + system) of the server process during the window.
    pub server_cpu: Option<Duration>,
    /// CPU time of this process (the load generator) during the window.
    pub client_cpu: Option<Duration>,
    /// CPU time of everything else on the machine during the window (other users'
    /// builds): the machine's busy time minus the server's and the load generator's.
    pub others_cpu: Option<Duration>,
}

impl Outcome {
    /// Successful requests per second.
    pub fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Something to do exactly while the measured window is open (a profiler).
pub trait Window: Send {
    /// The window opens.
    fn open(&mut self);
    /// The window closes.
    fn close(&mut self);
}

/// Runs `source` against `addr` and measures it; `server_pid` is sampled for CPU time.
///
/// # Errors
/// When a connection cannot be opened or breaks (the server died).
pub async fn run(
    addr: SocketAddr,
    connections: usize,
    stop: Stop,
    source: Arc<dyn Source>,
    server_pid: Option<u32>,
    window: Option<Box<dyn Window>>,
) -> Result<Outcome, String> {
    let started = Instant::now();
    let (measure_from, end) = match stop {
        Stop::Time { warmup, measure } => {
            (Some(started + warmup), Some(started + warmup + measure))
        }
        Stop::Count(_) => (None, None),
    };
    let limit = match stop {
        Stop::Count(n) => n,
        Stop::Time { .. } => u64::MAX,
    };
    let tickets = Arc::new(AtomicU64::new(0));

    // CPU time is read where the window opens and closes (also a profiler's window).
    let cpu = tokio::spawn(async move {
        let mut window = window;
        if let Some(at) = measure_from {
            tokio::time::sleep_until(at.into()).await;
        }
        let before = (
            procfs_cpu(server_pid),
            procfs::own_cpu(),
            procfs::machine_busy(),
        );
        let opened = Instant::now();
        if let Some(w) = window.as_mut() {
            w.open();
        }
        if let Some(at) = end {
            tokio::time::sleep_until(at.into()).await;
        }
        (before, opened, window)
    });

    let mut tasks = Vec::with_capacity(connections);
    for conn in 0..connections {
        let (source, tickets) = (source.clone(), tickets.clone());
        let mut wire = Wire::connect(addr).await?;
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            loop {
                if end.is_some_and(|end| Instant::now() >= end) {
                    break;
                }
                let ticket = tickets.fetch_add(1, Ordering::Relaxed);
                if ticket >= limit {
                    break;
                }
                let body = source.request(conn, ticket);
                let sent = Instant::now();
                let Answer { status, body } = wire
                    .post(&body)
                    .await
                    .map_err(|e| format!("request on connection {conn}: {e}"))?;
                let done = Instant::now();
                let measured = measure_from.is_none_or(|from| sent >= from)
                    && end.is_none_or(|end| done <= end);
                let ok = status == 200 && !has_errors(body);
                if ok {
                    source.answered(conn, ticket, body);
                }
                if !measured {
                    continue;
                }
                if ok {
                    out.latencies.push((done - sent).as_nanos() as u64);
                } else {
                    out.errors += 1;
                    if out.first_error.is_none() {
                        let text = String::from_utf8_lossy(body);
                        let short: String = text.chars().take(400).collect();
                        out.first_error = Some(format!("HTTP {status}: {short}"));
                    }
                }
            }
            Ok::<_, String>(out)
        }));
    }

    let mut total = Outcome::default();
    let mut failure = None;
    for task in tasks {
        match task.await {
            Ok(Ok(out)) => {
                total.latencies.extend(out.latencies);
                total.errors += out.errors;
                if total.first_error.is_none() {
                    total.first_error = out.first_error;
                }
            }
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(e) => failure = failure.or(Some(format!("load task panicked: {e}"))),
        }
    }
    let ((server_before, client_before, machine_before), opened, window) =
        cpu.await.map_err(|e| format!("cpu sampler: {e}"))?;
    let server_after = procfs_cpu(server_pid);
    let client_after = procfs::own_cpu();
    let machine_after = procfs::machine_busy();
    if let Some(mut w) = window {
        w.close();
    }
    if let Some(e) = failure {
        return Err(e);
    }
    total.elapsed = match stop {
        Stop::Time { measure, .. } => measure,
        Stop::Count(_) => opened.elapsed(),
    };
    total.server_cpu = server_before
        .zip(server_after)
        .map(|(a, b)| b.saturating_sub(a));
    total.client_cpu = client_before
        .zip(client_after)
        .map(|(a, b)| b.saturating_sub(a));
    total.others_cpu = machine_before
        .zip(machine_after)
        .map(|(a, b)| b.saturating_sub(a))
        .map(|busy| {
            busy.saturating_sub(total.server_cpu.unwrap_or_default())
                .saturating_sub(total.client_cpu.unwrap_or_default())
        });
    Ok(total)
}

fn procfs_cpu(pid: Option<u32>) -> Option<Duration> {
    pid.and_then(procfs::cpu_of)
}

/// Whether a GraphQL response body carries errors. Responses put `errors` after `data`,
/// so a long body is only searched near its ends, which keeps the check cheap next to the
/// request itself.
fn has_errors(body: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"\"errors\"";
    let find = |part: &[u8]| part.windows(NEEDLE.len()).any(|w| w == NEEDLE);
    if body.len() <= 8192 {
        return find(body);
    }
    find(&body[..64]) || find(&body[body.len() - 4096..])
}

/// Sends one GraphQL request on a fresh connection and returns its JSON answer.
///
/// # Errors
/// When the server cannot be reached, answers other than 200, or answers with errors.
pub async fn graphql(
    addr: SocketAddr,
    query: &str,
    variables: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let body = serde_json::json!({ "query": query, "variables": variables }).to_string();
    let (status, answer) = exchange(addr, "POST", "/graphql", Bytes::from(body)).await?;
    let value: serde_json::Value = serde_json::from_slice(&answer)
        .map_err(|e| format!("HTTP {status}, not JSON ({e}): {}", lossy(&answer)))?;
    if status != 200 || value.get("errors").is_some() {
        return Err(format!("HTTP {status}: {value}"));
    }
    Ok(value)
}

/// One request on a fresh connection: `(status, body)`.
///
/// # Errors
/// When the server cannot be reached or the exchange breaks.
pub async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Bytes,
) -> Result<(u16, Bytes), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, addr.to_string())
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

fn lossy(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(400).collect()
}
