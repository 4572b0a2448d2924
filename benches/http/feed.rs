//! `--feed`: what the change feed costs writers, and how soon a subscriber hears of a
//! write.
//!
//! Per backend and round it measures `createProduct` at the configured connections on
//! every binary (with `--baseline` a binary from before the feed, whose writes append no
//! change records), then on this tree's binary again with `--subscribers` live
//! `catalogChanged` subscriptions draining the feed (each must receive every record of
//! the run). Then the latency from a mutation's response to the subscriber's event, for
//! sequential `createProduct`s on an otherwise idle server and while the write workload
//! runs on the other connections.
//!
//! Subscribers run on a thread of their own (their own runtime), so reading events does
//! not slow the load generator's thread.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::load::{self, Stop};
use crate::report::{Latency, Run, Table, int, median, ms};
use crate::server::{self, Binary};
use crate::workloads::Workload;
use crate::{Settings, procfs, seed};

const CREATE: &str = "mutation($input: CreateProductInput!) { createProduct(input: $input) \
                      { product { id } } }";
const SUBSCRIPTION: &str = "subscription { catalogChanged(filter: { entities: [PRODUCT], kinds: [CREATED] }) \
     { position id } }";

/// Runs the feed report and prints it.
///
/// # Errors
/// When a server cannot be started or seeded, or a subscription fails.
pub async fn run(s: &Settings, header: &str, subscribers: usize) -> Result<(), String> {
    let mut out = String::from("\n## Change feed\n\n");
    out.push_str(header);
    out.push_str(&format!(
        "- Load average before: {}\n- Subscribers in the \"with subscribers\" runs: {subscribers}\n",
        procfs::loadavg()
    ));
    let this = s.binaries.last().ok_or("no server binary")?;
    let mut writes = Table::new(&[
        "backend",
        "server",
        "createProduct req/s (median)",
        "spread",
        "p99",
        "server CPU / req",
        "vs first row",
    ]);
    let mut latency = Table::new(&["backend", "while", "mutations", "p50", "p99", "max"]);
    for backend in &s.backends {
        let mut rates: Vec<(String, Vec<Run>)> = Vec::new();
        let mut idle = Vec::new();
        let mut loaded = Vec::new();
        for round in 0..s.rounds {
            eprintln!(
                "== feed round {}/{} on {}",
                round + 1,
                s.rounds,
                backend.name()
            );
            let mut order: Vec<&Binary> = s.binaries.iter().collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for binary in order {
                let run = writes_of(s, binary, backend, round, 0).await?;
                push(&mut rates, &binary.label, run.0);
            }
            let (run, probe_idle, probe_loaded) =
                writes_of(s, this, backend, round, subscribers.max(1)).await?;
            push(
                &mut rates,
                &format!("{} + {subscribers} subscribers", this.label),
                run,
            );
            idle.extend(probe_idle);
            loaded.extend(probe_loaded);
        }
        let first = rates
            .first()
            .map(|(_, r)| median(r.iter().map(|r| r.rate).collect()));
        for (label, runs) in &rates {
            let rate = median(runs.iter().map(|r| r.rate).collect());
            let lo = runs.iter().map(|r| r.rate).fold(f64::MAX, f64::min);
            let hi = runs.iter().map(|r| r.rate).fold(0.0, f64::max);
            let p99 = runs.iter().map(|r| r.p99).max().unwrap_or_default();
            let cpu = median(
                runs.iter()
                    .filter_map(|r| r.server_cpu.map(|c| c.as_secs_f64() * 1e6))
                    .collect(),
            );
            writes.row(vec![
                backend.name().to_owned(),
                label.clone(),
                int(rate),
                format!("{}–{}", int(lo), int(hi)),
                ms(p99),
                format!("{cpu:.0} µs"),
                first.map_or_else(String::new, |f| {
                    format!("{:+.1}%", (rate / f - 1.0) * 100.0)
                }),
            ]);
        }
        for (label, mut nanos) in [("idle", idle), ("64-connection write load", loaded)] {
            let n = nanos.len();
            let l = Latency::of(&mut nanos);
            latency.row(vec![
                backend.name().to_owned(),
                label.to_owned(),
                int(n as f64),
                ms(l.p50),
                ms(l.p99),
                ms(l.max),
            ]);
        }
    }
    out.push_str(&format!(
        "\n### Write throughput\n\n{}\n### From mutation response to subscriber event\n\n{}\n\
         Load average after: {}\n",
        writes.render(),
        latency.render(),
        procfs::loadavg()
    ));
    print!("{out}");
    Ok(())
}

fn push(rates: &mut Vec<(String, Vec<Run>)>, label: &str, run: Run) {
    match rates.iter_mut().find(|(l, _)| l == label) {
        Some((_, runs)) => runs.push(run),
        None => rates.push((label.to_owned(), vec![run])),
    }
}

/// One server: seeded, the write workload measured (with `subscribers` draining the feed
/// when > 0, and then the latency probes).
async fn writes_of(
    s: &Settings,
    binary: &Binary,
    backend: &server::Backend,
    round: usize,
    subscribers: usize,
) -> Result<(Run, Vec<u64>, Vec<u64>), String> {
    let label = format!("{} {}", binary.label, backend.name());
    // The subscribers share one client thread with a CPU the server and the load
    // generator also use: a queue long enough for a whole run keeps them from being
    // dropped for lag, which would measure this benchmark's client, not the server.
    let settings: &[(&str, &str)] = if subscribers > 0 {
        &[("GITSTORE_SUBSCRIPTIONS_BUFFER", "10000000")]
    } else {
        &[]
    };
    let running = server::start_with(binary, backend, &s.out_dir, settings).await?;
    let catalogue = seed::seed(running.addr, s.products, s.connections).await?;
    let feed = if subscribers > 0 {
        Some(Feed::open(running.addr, subscribers)?)
    } else {
        None
    };
    // Events counted from a marker write that every subscriber has seen (a subscription
    // registers a moment after its `subscribe` message; writes before that are not its).
    let mut base = (s.products, Vec::new());
    if let Some(feed) = &feed {
        feed.wait_connected(Duration::from_secs(10))?;
        let mut markers = 0;
        while feed.counts().contains(&0) {
            markers += 1;
            if markers > 100 {
                return Err("subscriptions did not start receiving events".to_owned());
            }
            load::graphql(
                running.addr,
                CREATE,
                json!({ "input": {
                    "sku": format!("MARK-{}", ulid::Ulid::new()), "title": "Marker",
                    "price": "1.00", "currency": "EUR",
                    "categoryId": catalogue.categories[0],
                }}),
            )
            .await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        base = (total_products(running.addr).await?, feed.counts());
    }
    let source = Workload::Create.source(&catalogue, &format!("f{round}s{subscribers}"));
    let stop = Stop::Time {
        warmup: s.warmup,
        measure: s.duration,
    };
    let outcome = load::run(
        running.addr,
        s.connections,
        stop,
        source,
        Some(running.pid),
        None,
    )
    .await?;
    let run = Run::of(&outcome);
    eprintln!("{label} create ({subscribers} subscribers): {}", run.line());
    let mut idle = Vec::new();
    let mut loaded = Vec::new();
    if let Some(feed) = &feed {
        // Every subscriber must have every product the run created (warm-up included).
        let created = total_products(running.addr).await? - base.0;
        feed.wait_for(&base.1, created, Duration::from_secs(60))?;
        idle = probe(running.addr, feed, &catalogue, 300).await?;
        let background = Workload::Create.source(&catalogue, &format!("f{round}bg"));
        let writers = tokio::spawn(load::run(
            running.addr,
            s.connections,
            Stop::Time {
                warmup: Duration::ZERO,
                measure: s.duration,
            },
            background,
            None,
            None,
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
        loaded = probe(running.addr, feed, &catalogue, 300).await?;
        let _ = writers.await;
        feed.check()?;
    }
    drop(feed);
    running.stop().await;
    Ok((run, idle, loaded))
}

async fn total_products(addr: SocketAddr) -> Result<u64, String> {
    let answer = load::graphql(addr, "{ products(first: 0) { totalCount } }", Value::Null).await?;
    answer["data"]["products"]["totalCount"]
        .as_u64()
        .ok_or_else(|| format!("no totalCount in {answer}"))
}

/// Sequential `createProduct`s; for each, nanoseconds from its response to the first
/// subscriber's event for it (0 when the event came first).
async fn probe(
    addr: SocketAddr,
    feed: &Feed,
    catalogue: &crate::workloads::Catalogue,
    count: usize,
) -> Result<Vec<u64>, String> {
    let mut answered = Vec::with_capacity(count);
    for i in 0..count {
        let sku = format!("PROBE-{}-{i}", ulid::Ulid::new());
        let answer = load::graphql(
            addr,
            CREATE,
            json!({ "input": {
                "sku": sku, "title": "Probe", "price": "1.00", "currency": "EUR",
                "categoryId": catalogue.categories[i % catalogue.categories.len()],
            }}),
        )
        .await?;
        let at = Instant::now();
        let id = answer["data"]["createProduct"]["product"]["id"]
            .as_str()
            .ok_or("createProduct answered without an id")?
            .to_owned();
        answered.push((id, at));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::with_capacity(count);
    for (id, at) in answered {
        loop {
            if let Some(seen) = feed.arrival(&id) {
                out.push(
                    u64::try_from(seen.saturating_duration_since(at).as_nanos())
                        .unwrap_or(u64::MAX),
                );
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("no event for {id} within 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok(out)
}

/// Subscribers on a thread of their own.
struct Feed {
    /// Events received, per subscriber.
    received: Vec<Arc<AtomicU64>>,
    /// When the first subscriber saw each product id.
    arrivals: Arc<Mutex<HashMap<String, Instant>>>,
    connected: Arc<AtomicU64>,
    failure: Arc<Mutex<Option<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Feed {
    fn open(addr: SocketAddr, subscribers: usize) -> Result<Self, String> {
        let received: Vec<Arc<AtomicU64>> = (0..subscribers)
            .map(|_| Arc::new(AtomicU64::new(0)))
            .collect();
        let arrivals = Arc::new(Mutex::new(HashMap::new()));
        let connected = Arc::new(AtomicU64::new(0));
        let failure = Arc::new(Mutex::new(None));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = {
            let (received, arrivals, connected, failure) = (
                received.clone(),
                arrivals.clone(),
                connected.clone(),
                failure.clone(),
            );
            std::thread::Builder::new()
                .name("feed-subscribers".to_owned())
                .spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    rt.block_on(async move {
                        let tasks = received.into_iter().enumerate().map(|(i, count)| {
                            let arrivals = (i == 0).then(|| arrivals.clone());
                            let (connected, failure) = (connected.clone(), failure.clone());
                            async move {
                                if let Err(e) = subscribe(addr, count, arrivals, connected).await {
                                    failure
                                        .lock()
                                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                                        .get_or_insert(e);
                                }
                            }
                        });
                        tokio::select! {
                            () = async { futures_util::future::join_all(tasks).await; } => {}
                            _ = stopped => {}
                        }
                    });
                })
                .map_err(|e| format!("cannot start the subscriber thread: {e}"))?
        };
        Ok(Self {
            received,
            arrivals,
            connected,
            failure,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    fn check(&self) -> Result<(), String> {
        match &*self
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some(e) => Err(format!("a subscriber failed: {e}")),
            None => Ok(()),
        }
    }

    fn wait_connected(&self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        while self.connected.load(Ordering::Acquire) < self.received.len() as u64 {
            self.check()?;
            if Instant::now() > deadline {
                return Err("subscribers did not connect".to_owned());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Events received so far, per subscriber.
    fn counts(&self) -> Vec<u64> {
        self.received
            .iter()
            .map(|c| c.load(Ordering::Acquire))
            .collect()
    }

    /// Waits until every subscriber has `events` more than it had at `base`.
    fn wait_for(&self, base: &[u64], events: u64, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            self.check()?;
            let least = self
                .counts()
                .iter()
                .zip(base)
                .map(|(now, then)| now - then)
                .min()
                .unwrap_or(0);
            if least >= events {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("a subscriber received {least} of {events} events"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn arrival(&self, id: &str) -> Option<Instant> {
        self.arrivals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .copied()
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One `graphql-transport-ws` subscription, counting events until the socket closes.
async fn subscribe(
    addr: SocketAddr,
    count: Arc<AtomicU64>,
    arrivals: Option<Arc<Mutex<HashMap<String, Instant>>>>,
    connected: Arc<AtomicU64>,
) -> Result<(), String> {
    let mut request = format!("ws://{addr}/graphql")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().map_err(|e| format!("{e}"))?,
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| format!("websocket: {e}"))?;
    let send = |v: Value| Message::text(v.to_string());
    socket
        .send(send(json!({ "type": "connection_init" })))
        .await
        .map_err(|e| e.to_string())?;
    let mut acked = false;
    while let Some(message) = socket.next().await {
        let message = message.map_err(|e| e.to_string())?;
        let text = match &message {
            Message::Text(t) => t.as_str().to_owned(),
            Message::Close(frame) => return Err(format!("closed by the server: {frame:?}")),
            _ => continue,
        };
        let value: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        match value["type"].as_str() {
            Some("connection_ack") if !acked => {
                acked = true;
                socket
                    .send(send(json!({ "id": "1", "type": "subscribe",
                        "payload": { "query": SUBSCRIPTION } })))
                    .await
                    .map_err(|e| e.to_string())?;
                connected.fetch_add(1, Ordering::AcqRel);
            }
            Some("next") => {
                let at = Instant::now();
                if let Some(arrivals) = &arrivals
                    && let Some(id) = value["payload"]["data"]["catalogChanged"]["id"].as_str()
                {
                    arrivals
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(id.to_owned(), at);
                }
                count.fetch_add(1, Ordering::AcqRel);
            }
            Some("ping") => {
                socket
                    .send(send(json!({ "type": "pong" })))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Some("error" | "complete") => return Err(format!("subscription ended: {text}")),
            _ => {}
        }
    }
    Ok(())
}
