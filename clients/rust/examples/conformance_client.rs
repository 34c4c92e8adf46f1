//! The conformance client of the Rust SDK: what `natter-conformance client` runs to check the
//! SDK against the rules a client must follow. It implements the contract of
//! `conformance/README.md` and nothing more; the SDK does the protocol.
//!
//! ```sh
//! cargo build -p natter-client --example conformance_client
//! natter-conformance client --cmd target/debug/examples/conformance_client
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use natter_client::{
    ChatEvent, Client, Config, ConnectionState, Cursor, CursorStore, Error, Event, OutgoingMessage,
    PendingReply, Request,
};
use serde_json::json;
use tokio::io::AsyncReadExt;

/// The contract's arguments.
#[derive(Parser)]
struct Args {
    /// `tcp://127.0.0.1:PORT` or `ws://127.0.0.1:PORT/ws`.
    #[arg(long)]
    url: String,
    /// The token; never printed.
    #[arg(long)]
    token: String,
    /// Where the cursor lives between runs.
    #[arg(long)]
    cursor_file: PathBuf,
    /// Where the messages go.
    #[arg(long)]
    conversation: String,
    /// How many messages to send: m1 to mN.
    #[arg(long, default_value_t = 0)]
    send: u32,
    /// One message of this many `x` before m1.
    #[arg(long)]
    big: Option<usize>,
    /// Type for two seconds, then stop.
    #[arg(long)]
    typing: bool,
}

/// The cursor in a JSON file, replaced whole by a rename so a crash leaves one or the other.
struct FileCursorStore(PathBuf);

impl CursorStore for FileCursorStore {
    fn load(&self) -> Cursor {
        let Ok(text) = std::fs::read_to_string(&self.0) else {
            return Cursor::default();
        };
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
            return Cursor::default();
        };
        let conversations = value["conversations"]
            .as_object()
            .map(|map| {
                map.iter()
                    .filter_map(|(id, seq)| Some((id.clone(), seq.as_u64()?)))
                    .collect()
            })
            .unwrap_or_default();
        Cursor {
            inbox: value["inbox"].as_u64(),
            conversations,
        }
    }

    fn save(&self, cursor: &Cursor) {
        let value = json!({ "inbox": cursor.inbox, "conversations": cursor.conversations });
        let temp = self.0.with_extension("tmp");
        if std::fs::write(&temp, value.to_string()).is_ok() {
            let _ = std::fs::rename(&temp, &self.0);
        }
    }
}

/// Prints one line of the contract; stdout is line-buffered, so each line goes out whole.
fn emit(value: serde_json::Value) {
    println!("{value}");
}

fn show(event: &ChatEvent) {
    emit(json!({
        "event": "message",
        "conversation": event.conversation,
        "seq": event.seq,
        "kind": event.kind.0,
        "sender": event.sender,
        "content_type": event.content_type,
        "body": String::from_utf8_lossy(&event.body),
    }));
}

/// Prints the outcome of a send once it is known.
fn report(conversation: String, body: String, reply: PendingReply) {
    tokio::spawn(async move {
        match reply.sent().await {
            Ok(sent) => emit(json!({
                "event": "sent", "conversation": conversation, "body": body, "seq": sent.seq,
            })),
            Err(error) => emit(json!({
                "event": "send_failed", "conversation": conversation, "body": body,
                "code": error.code().map_or(0, |code| code.0),
            })),
        }
    });
}

/// Whether an error stops the client for good ([NWP-5.5-3]).
fn fatal(error: &Error) -> Option<u64> {
    match error.code() {
        Some(code) if code.closes_connection() => Some(code.0),
        Some(_) => None,
        None => Some(0),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::new(&args.url, args.token.clone()) {
        Ok(config) => config.with_cursor_store(FileCursorStore(args.cursor_file.clone())),
        Err(error) => {
            eprintln!("conformance_client: {error}");
            return ExitCode::from(2);
        }
    };
    let (client, mut events) = match Client::connect(config).await {
        Ok(connected) => connected,
        Err(error) => {
            eprintln!("conformance_client: connecting: {error}");
            // UNSUPPORTED_VERSION, UNAUTHENTICATED, TOKEN_EXPIRED: never again with this token.
            if let Some(code @ 3..=5) = error.code().map(|code| code.0) {
                emit(json!({ "event": "fatal", "code": code }));
                return ExitCode::from(3);
            }
            return ExitCode::from(1);
        }
    };
    let conversation = args.conversation.clone();
    let bodies = args
        .big
        .map(|n| "x".repeat(n))
        .into_iter()
        .chain((1..=args.send).map(|n| format!("m{n}")));
    for body in bodies {
        let message = OutgoingMessage::new(&conversation, "", Bytes::from(body.clone()));
        match client.enqueue(Request::Send(message)).await {
            Ok(reply) => report(conversation.clone(), body, reply),
            Err(error) => eprintln!("conformance_client: queueing {body}: {error}"),
        }
    }
    if args.typing {
        let client = client.clone();
        let conversation = conversation.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                let _ = client.typing(&conversation, true).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = client.typing(&conversation, false).await;
        });
    }
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            read = stdin.read(&mut buf) => {
                if matches!(read, Ok(0) | Err(_)) {
                    // The contract's end: acknowledge what was shown, save the cursor, go.
                    client.close().await;
                    return ExitCode::SUCCESS;
                }
            }
            event = events.next() => match event {
                Some(Event::Connection(ConnectionState::Closed { error })) => {
                    let code = error.as_ref().and_then(fatal).unwrap_or(0);
                    emit(json!({ "event": "fatal", "code": code }));
                    // Not a return: the runtime would wait for the blocking read of stdin.
                    std::process::exit(3);
                }
                Some(Event::Connection(state)) => {
                    eprintln!("conformance_client: {state:?}");
                }
                Some(Event::Gap { conversation, from, to }) => emit(json!({
                    "event": "gap", "conversation": conversation, "from": from, "to": to,
                })),
                Some(event) => {
                    if let Some(chat) = event.chat_event() {
                        show(chat);
                    }
                }
                None => std::process::exit(1),
            },
        }
    }
}
