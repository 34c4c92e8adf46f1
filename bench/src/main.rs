//! `natter-bench`: load generators for natter and, for comparison in the same run, an MQTT
//! broker. `bench/run.sh` starts the servers and calls these; see bench/README.md.
//!
//! Every scenario prints one JSON object on stdout; progress goes to stderr.

mod mqtt;
mod natter;
mod stats;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use natter_codec::Frame;
use natter_codec::frame::Send as SendFrame;
use natter_codec::types::EventKind;
use stats::Samples;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;

#[derive(Parser)]
#[command(about = "Load generators for natter and an MQTT peer")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Send-to-ack and send-to-deliver latency at a fixed rate, over direct conversations.
    Latency {
        /// natter TCP address.
        #[arg(long)]
        addr: String,
        /// natter HTTP address, for dev tokens.
        #[arg(long)]
        http: String,
        #[command(flatten)]
        load: Load,
    },
    /// The same load through an MQTT broker at QoS 1, one topic per pair.
    MqttLatency {
        /// MQTT address.
        #[arg(long)]
        addr: String,
        #[command(flatten)]
        load: Load,
    },
    /// The same load from MQTT devices into natter's MQTT listener (spec chapter 14): QoS 1
    /// PUBLISH to natter/send/<direct conversation>, received on natter/in/#.
    MqttNatter {
        /// natter MQTT address.
        #[arg(long)]
        addr: String,
        /// natter HTTP address, for dev tokens.
        #[arg(long)]
        http: String,
        #[command(flatten)]
        load: Load,
    },
    /// Opens idle authenticated connections, prints a line when all are up, then holds them.
    Idle {
        /// natter TCP address.
        #[arg(long)]
        addr: String,
        /// natter HTTP address, for dev tokens.
        #[arg(long)]
        http: String,
        #[command(flatten)]
        idle: IdleArgs,
    },
    /// The same idle connections to an MQTT broker.
    MqttIdle {
        /// MQTT address.
        #[arg(long)]
        addr: String,
        #[command(flatten)]
        idle: IdleArgs,
    },
}

#[derive(clap::Args, Clone, Copy)]
struct Load {
    /// Messages per second, in total.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Sender/receiver pairs.
    #[arg(long, default_value_t = 50)]
    pairs: u32,
    /// How long to send.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Body size in bytes (at least 8: the send time travels in the body).
    #[arg(long, default_value_t = 100)]
    body: usize,
}

#[derive(clap::Args, Clone, Copy)]
struct IdleArgs {
    /// How many connections.
    #[arg(long, default_value_t = 1000)]
    connections: u32,
    /// How long to hold them after all are up.
    #[arg(long, default_value_t = 10)]
    hold_seconds: u64,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What one run of a latency scenario saw.
#[derive(Default)]
struct Tally {
    sent: u64,
    acked: u64,
    delivered: u64,
    errors: u64,
    /// Errors by wire code name, so a run says what went wrong.
    error_codes: std::collections::BTreeMap<String, u64>,
    to_ack: Samples,
    to_deliver: Samples,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let report = match Cli::parse().scenario {
        Scenario::Latency { addr, http, load } => natter_latency(&addr, &http, load).await?,
        Scenario::MqttLatency { addr, load } => mqtt_latency(&addr, load).await?,
        Scenario::MqttNatter { addr, http, load } => {
            mqtt_natter_latency(&addr, &http, load).await?
        }
        Scenario::Idle { addr, http, idle } => natter_idle(&addr, &http, idle).await?,
        Scenario::MqttIdle { addr, idle } => mqtt_idle(&addr, idle).await?,
    };
    println!("{report}");
    Ok(())
}

/// A body of `size` bytes whose first eight carry the send time since `start`.
fn stamped_body(start: Instant, size: usize) -> Vec<u8> {
    let mut body = vec![b'x'; size.max(8)];
    body[..8].copy_from_slice(&(start.elapsed().as_nanos() as u64).to_be_bytes());
    body
}

/// How long ago a stamped body was sent.
fn age(start: Instant, body: &[u8]) -> Option<Duration> {
    let nanos = u64::from_be_bytes(body.get(..8)?.try_into().ok()?);
    Some(start.elapsed().saturating_sub(Duration::from_nanos(nanos)))
}

fn tick_period(load: Load) -> Duration {
    Duration::from_secs_f64(f64::from(load.pairs.max(1)) / f64::from(load.rate.max(1)))
}

/// Waits for every sender and receiver of a latency run, then reports what they saw.
async fn finish_latency(
    peer: &str,
    load: Load,
    mut tasks: JoinSet<Result<(), Error>>,
    tally: Arc<Mutex<Tally>>,
) -> Result<serde_json::Value, Error> {
    eprintln!(
        "{peer}: {} pairs up, sending {} msg/s for {} s",
        load.pairs, load.rate, load.seconds
    );
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    let tally = Arc::try_unwrap(tally)
        .map_err(|_| "tally still shared")?
        .into_inner();
    Ok(latency_report(peer, load, tally))
}

/// When a loop of a latency run stops: two seconds after sending stops, for the last
/// answers and deliveries to arrive.
fn drain_deadline(until: Instant) -> tokio::time::Sleep {
    tokio::time::sleep_until((until + Duration::from_secs(2)).into())
}

fn latency_report(peer: &str, load: Load, tally: Tally) -> serde_json::Value {
    serde_json::json!({
        "scenario": "latency",
        "peer": peer,
        "rate": load.rate,
        "pairs": load.pairs,
        "seconds": load.seconds,
        "body": load.body,
        "sent": tally.sent,
        "acked": tally.acked,
        "delivered": tally.delivered,
        "errors": tally.errors,
        "error_codes": tally.error_codes,
        "send_to_ack": tally.to_ack.summary(),
        "send_to_deliver": tally.to_deliver.summary(),
    })
}

/// Mints a dev token over the HTTP API (serve --dev, loopback only).
async fn dev_token(http: &str, user: &str) -> Result<String, Error> {
    dev_token_for(http, user, "bench").await
}

/// Mints a dev token for `user` on `device`.
async fn dev_token_for(http: &str, user: &str, device: &str) -> Result<String, Error> {
    let body = serde_json::json!({ "user": user, "device": device }).to_string();
    let mut stream = tokio::net::TcpStream::connect(http).await?;
    let request = format!(
        "POST /v1/dev/token HTTP/1.1\r\nHost: {http}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let json = response.split("\r\n\r\n").nth(1).ok_or("no HTTP body")?;
    let value: serde_json::Value = serde_json::from_str(json.trim())?;
    Ok(value["token"]
        .as_str()
        .ok_or_else(|| format!("no token in {json}"))?
        .to_string())
}

async fn natter_latency(addr: &str, http: &str, load: Load) -> Result<serde_json::Value, Error> {
    let start = Instant::now();
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let until = start + Duration::from_secs(load.seconds);
    let mut tasks = JoinSet::new();
    for pair in 0..load.pairs {
        let (sender, receiver) = (format!("s{run}-{pair}"), format!("r{run}-{pair}"));
        let conversation = natter_codec::ids::direct_conversation(&sender, &receiver);
        let rx = natter::connect(addr, &dev_token(http, &receiver).await?).await?;
        let tx = natter::connect(addr, &dev_token(http, &sender).await?).await?;
        tasks.spawn(natter_receive(rx, start, until, Arc::clone(&tally)));
        tasks.spawn(natter_send(
            tx,
            conversation,
            load,
            start,
            until,
            Arc::clone(&tally),
        ));
    }
    finish_latency("natter", load, tasks, tally).await
}

/// Reads deliveries until two seconds after sending stops, acking as it goes.
async fn natter_receive(
    mut conn: natter::Connection,
    start: Instant,
    until: Instant,
    tally: Arc<Mutex<Tally>>,
) -> Result<(), Error> {
    let mut seen = Samples::default();
    let mut heartbeat = tokio::time::interval(Duration::from_millis(conn.heartbeat_ms.max(2) / 2));
    let deadline = drain_deadline(until);
    tokio::pin!(deadline);
    let mut last_inbox = 0;
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = heartbeat.tick() => {
                natter::send(&mut conn.writer, natter::ack(last_inbox)).await?;
            }
            frame = natter::next(&mut conn.reader) => {
                if let Frame::Deliver(deliver) = frame? {
                    last_inbox = last_inbox.max(deliver.inbox_seq);
                    if let Some(latency) = age(start, &deliver.event.body) {
                        seen.record(latency);
                    }
                }
            }
        }
    }
    let mut tally = tally.lock().await;
    tally.delivered += seen.len() as u64;
    tally.to_deliver.merge(seen);
    Ok(())
}

/// Sends at the pair's share of the rate, and reads SEND_ACKs on the same connection.
async fn natter_send(
    conn: natter::Connection,
    conversation: String,
    load: Load,
    start: Instant,
    until: Instant,
    tally: Arc<Mutex<Tally>>,
) -> Result<(), Error> {
    let natter::Connection {
        mut reader,
        mut writer,
        ..
    } = conn;
    let epoch = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64 & 0xffff_ffff;
    // Send time by request id; both loops run in this task, so the lock is never contended.
    let pending = std::sync::Mutex::new(HashMap::<u64, Instant>::new());
    let send_loop = async {
        let mut ticker = tokio::time::interval(tick_period(load));
        let mut sent = 0u64;
        while Instant::now() < until {
            ticker.tick().await;
            sent += 1;
            let frame = SendFrame {
                request: sent,
                conversation: conversation.as_str().into(),
                client_msg_id: (epoch << 24) | sent,
                kind: EventKind::MESSAGE,
                target: 0,
                content_type: "".into(),
                body: Bytes::from(stamped_body(start, load.body)),
            };
            pending
                .lock()
                .map_err(|_| "poisoned")?
                .insert(sent, Instant::now());
            natter::send(&mut writer, frame.into()).await?;
        }
        // Dropping the write half would shut the socket down before the last acks arrive.
        Ok::<_, Error>((sent, writer))
    };
    let ack_loop = async {
        let mut acks = Samples::default();
        let mut errors = std::collections::BTreeMap::<String, u64>::new();
        let mut own_inbox = 0;
        let deadline = drain_deadline(until);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                frame = natter::next(&mut reader) => match frame? {
                    // The sender's own devices get its messages too; the stamp is the send time.
                    Frame::Deliver(deliver) => own_inbox = own_inbox.max(deliver.inbox_seq),
                    Frame::SendAck(ack) => {
                        if let Some(at) = pending.lock().map_err(|_| "poisoned")?.remove(&ack.request) {
                            acks.record(at.elapsed());
                        }
                    }
                    Frame::Error(error) => {
                        let count = errors.entry(format!("{:?}", error.code)).or_default();
                        if *count == 0 {
                            eprintln!("natter: first {:?} (request {}): {}", error.code, error.request, error.message);
                        }
                        *count += 1;
                    }
                    _ => {}
                }
            }
        }
        Ok::<_, Error>((acks, errors, own_inbox))
    };
    let ((sent, _writer), (acks, errors, _)) = tokio::try_join!(send_loop, ack_loop)?;
    let mut tally = tally.lock().await;
    tally.sent += sent;
    tally.acked += acks.len() as u64;
    tally.errors += errors.values().sum::<u64>();
    for (code, count) in errors {
        *tally.error_codes.entry(code).or_default() += count;
    }
    tally.to_ack.merge(acks);
    Ok(())
}

async fn mqtt_latency(addr: &str, load: Load) -> Result<serde_json::Value, Error> {
    let start = Instant::now();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let until = start + Duration::from_secs(load.seconds);
    let mut tasks = JoinSet::new();
    for pair in 0..load.pairs {
        let topic = format!("bench/{pair}");
        let mut rx = mqtt::connect(addr, &format!("r{pair}")).await?;
        mqtt::subscribe(&mut rx, &topic).await?;
        let tx = mqtt::connect(addr, &format!("s{pair}")).await?;
        tasks.spawn(mqtt_receive(rx, start, until, Arc::clone(&tally)));
        tasks.spawn(mqtt_send(tx, topic, load, start, until, Arc::clone(&tally)));
    }
    finish_latency("mqtt", load, tasks, tally).await
}

async fn mqtt_natter_latency(
    addr: &str,
    http: &str,
    load: Load,
) -> Result<serde_json::Value, Error> {
    let start = Instant::now();
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let until = start + Duration::from_secs(load.seconds);
    let mut tasks = JoinSet::new();
    for pair in 0..load.pairs {
        let (sender, receiver) = (format!("ms{run}-{pair}"), format!("mr{run}-{pair}"));
        // A natter device's client id is its token's device.
        let rx_token = dev_token_for(http, &receiver, "mqtt").await?;
        let tx_token = dev_token_for(http, &sender, "mqtt").await?;
        let mut rx = mqtt::connect_as(addr, "mqtt", Some((&receiver, &rx_token))).await?;
        mqtt::subscribe(&mut rx, "natter/in/#").await?;
        let tx = mqtt::connect_as(addr, "mqtt", Some((&sender, &tx_token))).await?;
        let (low, high) = if sender < receiver {
            (&sender, &receiver)
        } else {
            (&receiver, &sender)
        };
        let topic = format!("natter/send/d/{low}/{high}");
        tasks.spawn(mqtt_receive(rx, start, until, Arc::clone(&tally)));
        tasks.spawn(mqtt_send(tx, topic, load, start, until, Arc::clone(&tally)));
    }
    finish_latency("natter-mqtt", load, tasks, tally).await
}

async fn mqtt_receive(
    mut conn: mqtt::Connection,
    start: Instant,
    until: Instant,
    tally: Arc<Mutex<Tally>>,
) -> Result<(), Error> {
    let mut seen = Samples::default();
    let deadline = drain_deadline(until);
    tokio::pin!(deadline);
    let mut keepalive = tokio::time::interval(Duration::from_secs(20));
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = keepalive.tick() => conn.writer.write_all(&mqtt::pingreq()).await?,
            packet = mqtt::read(&mut conn.reader) => {
                let packet = packet?;
                if packet.kind() == mqtt::PUBLISH {
                    let (id, payload) = mqtt::parse_publish(&packet).ok_or("bad PUBLISH")?;
                    if let Some(latency) = age(start, payload) {
                        seen.record(latency);
                    }
                    conn.writer.write_all(&mqtt::puback(id)).await?;
                }
            }
        }
    }
    let mut tally = tally.lock().await;
    tally.delivered += seen.len() as u64;
    tally.to_deliver.merge(seen);
    Ok(())
}

async fn mqtt_send(
    conn: mqtt::Connection,
    topic: String,
    load: Load,
    start: Instant,
    until: Instant,
    tally: Arc<Mutex<Tally>>,
) -> Result<(), Error> {
    let mqtt::Connection {
        mut reader,
        mut writer,
    } = conn;
    let pending = std::sync::Mutex::new(HashMap::<u16, Instant>::new());
    let send_loop = async {
        let mut ticker = tokio::time::interval(tick_period(load));
        let mut sent = 0u64;
        while Instant::now() < until {
            ticker.tick().await;
            sent += 1;
            let id = (sent % 65_535 + 1) as u16;
            pending
                .lock()
                .map_err(|_| "poisoned")?
                .insert(id, Instant::now());
            writer
                .write_all(&mqtt::publish(&topic, id, &stamped_body(start, load.body)))
                .await?;
        }
        // Dropping the write half would shut the socket down before the last PUBACKs arrive.
        Ok::<_, Error>((sent, writer))
    };
    let ack_loop = async {
        let mut acks = Samples::default();
        let deadline = drain_deadline(until);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                packet = mqtt::read(&mut reader) => {
                    let packet = packet?;
                    let id = packet.body.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
                    if packet.kind() == mqtt::PUBACK {
                        if let Some(at) = id.and_then(|id| pending.lock().ok()?.remove(&id)) {
                            acks.record(at.elapsed());
                        }
                    }
                }
            }
        }
        Ok::<_, Error>(acks)
    };
    let ((sent, _writer), acks) = tokio::try_join!(send_loop, ack_loop)?;
    let mut tally = tally.lock().await;
    tally.sent += sent;
    tally.acked += acks.len() as u64;
    tally.to_ack.merge(acks);
    Ok(())
}

/// Opens connections `limit` at a time and reports once all are up.
async fn open_all<C, F, Fut>(count: u32, open: F) -> (Vec<C>, u32)
where
    C: Send + 'static,
    F: Fn(u32) -> Fut,
    Fut: std::future::Future<Output = Result<C, Error>> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(256));
    let mut tasks = JoinSet::new();
    for i in 0..count {
        let limit = Arc::clone(&limit);
        let fut = open(i);
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            fut.await
        });
    }
    let (mut open, mut failed) = (Vec::new(), 0);
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(Ok(conn)) => open.push(conn),
            Ok(Err(error)) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("connect failed: {error}");
                }
            }
            Err(_) => failed += 1,
        }
    }
    (open, failed)
}

fn idle_report(peer: &str, open: usize, failed: u32, setup: Duration) -> serde_json::Value {
    serde_json::json!({
        "scenario": "idle",
        "peer": peer,
        "open": open,
        "failed": failed,
        "setup_seconds": setup.as_secs_f64(),
    })
}

async fn natter_idle(addr: &str, http: &str, args: IdleArgs) -> Result<serde_json::Value, Error> {
    let started = Instant::now();
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let (addr, http) = (Arc::new(addr.to_string()), Arc::new(http.to_string()));
    let (mut conns, failed) = open_all(args.connections, |i| {
        let (addr, http) = (Arc::clone(&addr), Arc::clone(&http));
        async move {
            let token = dev_token(&http, &format!("idle{run}-{i}")).await?;
            Ok(natter::connect(&addr, &token).await?)
        }
    })
    .await;
    let report = idle_report("natter", conns.len(), failed, started.elapsed());
    // The line run.sh waits for before it measures the server.
    println!("{report}");
    let hold_until = Instant::now() + Duration::from_secs(args.hold_seconds);
    while Instant::now() < hold_until {
        tokio::time::sleep(Duration::from_secs(10).min(hold_until - Instant::now())).await;
        for conn in &mut conns {
            natter::send(&mut conn.writer, natter::ping()).await?;
        }
    }
    Ok(report)
}

async fn mqtt_idle(addr: &str, args: IdleArgs) -> Result<serde_json::Value, Error> {
    let started = Instant::now();
    let addr = Arc::new(addr.to_string());
    let (mut conns, failed) = open_all(args.connections, |i| {
        let addr = Arc::clone(&addr);
        async move { Ok(mqtt::connect(&addr, &format!("idle-{i}")).await?) }
    })
    .await;
    let report = idle_report("mqtt", conns.len(), failed, started.elapsed());
    println!("{report}");
    let hold_until = Instant::now() + Duration::from_secs(args.hold_seconds);
    while Instant::now() < hold_until {
        tokio::time::sleep(Duration::from_secs(10).min(hold_until - Instant::now())).await;
        for conn in &mut conns {
            conn.writer.write_all(&mqtt::pingreq()).await?;
        }
    }
    Ok(report)
}
