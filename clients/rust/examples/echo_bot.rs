//! A bot that answers every text message it receives with the same text, reversed.
//!
//! ```sh
//! natter serve --token-secret dev &
//! export NATTER_TOKEN=$(natter token --secret dev --user echo --device bot)
//! cargo run -p natter-client --example echo_bot -- tcp://127.0.0.1:7400
//! # elsewhere: natter-cli --token "$(natter token --secret dev --user alice --device cli)" send echo hello
//! ```

use natter_client::{Client, Config, ConnectionState, Event};

#[tokio::main]
async fn main() -> natter_client::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tcp://127.0.0.1:7400".into());
    let token = std::env::var("NATTER_TOKEN")
        .map_err(|_| natter_client::Error::Config("set NATTER_TOKEN".into()))?;
    let (client, mut events) = Client::connect(Config::new(&url, token)?).await?;
    println!("connected as {}", client.user());
    while let Some(event) = events.next().await {
        match event {
            Event::Message(message) if message.sender != client.user() => {
                let Some(text) = message.text() else { continue };
                let reply: String = text.chars().rev().collect();
                // Sends are acknowledged once durable; a reconnect in between is handled.
                let sent = client.send_text(&message.conversation, &reply).await?;
                client.mark_read(&message.conversation, message.seq).await?;
                println!("{}: {text:?} -> seq {}", message.sender, sent.seq);
            }
            Event::Connection(ConnectionState::Disconnected { reason, retry_in }) => {
                println!("disconnected ({reason}), retrying in {retry_in:?}");
            }
            Event::Connection(ConnectionState::Closed { error }) => {
                println!("closed: {error:?}");
                break;
            }
            _ => {}
        }
    }
    Ok(())
}
