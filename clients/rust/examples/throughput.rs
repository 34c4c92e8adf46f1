//! Pipelines N text messages into one conversation and reports how fast they were
//! acknowledged (each acknowledgement means durable on the server's disk).
//!
//! ```sh
//! export NATTER_TOKEN=$(natter token --secret dev --user load --device bench)
//! cargo run --release -p natter-client --example throughput -- tcp://127.0.0.1:7400 10000 [max_in_flight]
//! ```

use std::time::Instant;

use natter_client::{Client, Config, OutgoingMessage, Request};

#[tokio::main]
async fn main() -> natter_client::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "tcp://127.0.0.1:7400".into());
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let in_flight: Option<usize> = args.next().and_then(|n| n.parse().ok());
    let token = std::env::var("NATTER_TOKEN")
        .map_err(|_| natter_client::Error::Config("set NATTER_TOKEN".into()))?;
    let mut config = Config::new(&url, token)?;
    if let Some(in_flight) = in_flight {
        config.session.max_in_flight = in_flight;
    }
    let (client, mut events) = Client::connect(config).await?;
    // Our own messages come back as events; drain them so the connection keeps reading.
    tokio::spawn(async move { while events.next().await.is_some() {} });
    let conversation = client.direct_conversation("throughput-sink");

    let start = Instant::now();
    let acks = tokio::spawn({
        let client = client.clone();
        async move {
            let mut pending = Vec::with_capacity(count);
            for n in 0..count {
                let message = OutgoingMessage::text(&conversation, &format!("message {n}"));
                pending.push(client.enqueue(Request::Send(message)).await?);
            }
            let mut last = 0;
            for reply in pending {
                last = reply.sent().await?.seq;
            }
            natter_client::Result::Ok(last)
        }
    });
    let last = acks
        .await
        .map_err(|e| natter_client::Error::Transport(e.to_string()))??;
    let elapsed = start.elapsed();
    println!(
        "{count} sends acknowledged in {elapsed:.2?}: {:.0} msg/s (last seq {last})",
        count as f64 / elapsed.as_secs_f64()
    );
    client.close().await;
    Ok(())
}
