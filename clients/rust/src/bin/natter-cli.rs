//! `natter-cli`: talk to a natter server from a shell or a script.
//!
//! Every command that prints data prints JSON with `--json` (one object per line for
//! streams), so tests and scripts can parse it.

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use natter_client::{
    ChatEvent, Client, ConnectionState, Cursor, Direction, Event, GroupInfo, MemoryCursorStore,
    OutgoingMessage, Request, Role,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A command-line client for natter.
#[derive(Debug, Parser)]
#[command(name = "natter-cli", version)]
struct Cli {
    /// The server: tcp://host:port, tls://host:port, ws://host:port/ws or wss://host/ws.
    #[arg(long, env = "NATTER_URL", default_value = "tcp://127.0.0.1:7400")]
    url: String,
    /// The token (see `natter token`).
    #[arg(long, env = "NATTER_TOKEN", hide_env_values = true)]
    token: String,
    /// A PEM file of CA certificates to trust for tls:// and wss://.
    #[arg(long, env = "NATTER_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// Print data as JSON (one object per line for streams).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send a text message; TO is a conversation id (d/..., g/...) or a user for a direct chat.
    Send {
        /// Conversation id or user.
        to: String,
        /// The text; several words are joined with spaces.
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// Print events as they come until interrupted.
    Listen {
        /// Replay the whole inbox the server still holds instead of starting at its head.
        #[arg(long)]
        from_start: bool,
    },
    /// Print a conversation's history, oldest first.
    History {
        /// Conversation id or user.
        to: String,
        /// At most this many events.
        #[arg(long, default_value_t = 50)]
        limit: u64,
        /// Only events before this seq (default: the newest).
        #[arg(long, default_value_t = 0)]
        before: u64,
    },
    /// List conversations, most recently active first.
    Conversations {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Manage groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Show the presence of a conversation's members.
    Presence {
        /// Conversation id or user.
        to: String,
        /// Keep printing changes until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// Mark a conversation read up to a seq.
    MarkRead {
        /// Conversation id or user.
        to: String,
        /// The seq.
        seq: u64,
    },
    /// Chat by hand: lines you type are sent, messages that arrive are printed.
    Chat {
        /// Conversation id or user.
        to: String,
    },
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// Create a group and print its id.
    Create {
        /// The title.
        title: String,
        /// Members besides you.
        members: Vec<String>,
    },
    /// Add a member.
    Add {
        /// The group id.
        group: String,
        /// The user.
        user: String,
        /// member or admin.
        #[arg(long, default_value = "member")]
        role: String,
    },
    /// Remove a member (yourself to leave).
    Remove {
        /// The group id.
        group: String,
        /// The user.
        user: String,
    },
    /// Print a group's title and members.
    Info {
        /// The group id.
        group: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("natter-cli: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> natter_client::Result<()> {
    let mut config = natter_client::Config::new(&cli.url, cli.token.clone())?;
    config.ca_file = cli.ca_file.clone();
    if let Command::Listen { from_start: true } = cli.command {
        let cursor = Cursor {
            inbox: Some(0),
            ..Cursor::default()
        };
        config = config.with_cursor_store(MemoryCursorStore::new(cursor));
    }
    let (client, mut events) = Client::connect(config).await?;
    let out = Output { json: cli.json };
    let target = |to: &str| conversation_id(&client, to);
    match cli.command {
        Command::Send { to, text } => {
            let conversation = target(&to);
            let sent = client.send_text(&conversation, &text.join(" ")).await?;
            out.print(
                json!({
                    "conversation": conversation,
                    "seq": sent.seq,
                    "timestamp": sent.timestamp,
                    "duplicate": sent.duplicate,
                }),
                || format!("sent to {conversation} at seq {}", sent.seq),
            );
        }
        Command::Listen { .. } => {
            while let Some(event) = events.next().await {
                out.event(&event);
            }
        }
        Command::History { to, limit, before } => {
            let conversation = target(&to);
            let page = client
                .history(&conversation, before, Direction::BACKWARD, limit)
                .await?;
            for event in &page.events {
                out.print(chat_json(event), || chat_line(event));
            }
        }
        Command::Conversations { limit } => {
            let page = client.conversations(Bytes::new(), limit).await?;
            for summary in page.conversations {
                out.print(
                    json!({
                        "conversation": summary.conversation,
                        "kind": summary.kind.name(),
                        "title": summary.title,
                        "last_seq": summary.last_seq,
                        "last_timestamp": summary.last_timestamp,
                        "read_seq": summary.read_seq,
                        "unread": summary.unread,
                    }),
                    || {
                        let name = match summary.title.is_empty() {
                            true => summary.conversation.clone(),
                            false => format!("{} ({})", summary.title, summary.conversation),
                        };
                        format!(
                            "{name}: {} unread, last seq {}",
                            summary.unread, summary.last_seq
                        )
                    },
                );
            }
        }
        Command::Group(group) => group_command(&client, &out, group).await?,
        Command::Presence { to, watch } => {
            let conversation = target(&to);
            client
                .subscribe_presence(&conversation, Duration::from_secs(300))
                .await?;
            // PRESENCE frames come around the DONE; give stragglers a moment.
            let window = tokio::time::sleep(Duration::from_millis(500));
            tokio::pin!(window);
            loop {
                tokio::select! {
                    () = &mut window, if !watch => break,
                    event = events.next() => match event {
                        Some(event @ Event::Presence { .. }) => out.event(&event),
                        Some(_) => {}
                        None => break,
                    },
                }
            }
        }
        Command::MarkRead { to, seq } => {
            client.mark_read(&target(&to), seq).await?;
        }
        Command::Chat { to } => chat(&client, &mut events, &target(&to)).await?,
    }
    client.close().await;
    Ok(())
}

async fn group_command(
    client: &Client,
    out: &Output,
    command: GroupCommand,
) -> natter_client::Result<()> {
    match command {
        GroupCommand::Create { title, members } => {
            let members: Vec<&str> = members.iter().map(String::as_str).collect();
            let info = client.create_group(&title, &members).await?;
            out.print(group_json(&info), || info.conversation.clone());
        }
        GroupCommand::Add { group, user, role } => {
            let role = Role::from_name(&role.to_uppercase()).ok_or_else(|| {
                natter_client::Error::InvalidArgument(format!("unknown role {role:?}"))
            })?;
            let sent = client.add_member(&group, &user, role).await?;
            out.print(json!({"conversation": group, "seq": sent.seq}), || {
                format!("added {user} to {group} (seq {})", sent.seq)
            });
        }
        GroupCommand::Remove { group, user } => {
            let sent = client.remove_member(&group, &user).await?;
            out.print(json!({"conversation": group, "seq": sent.seq}), || {
                format!("removed {user} from {group} (seq {})", sent.seq)
            });
        }
        GroupCommand::Info { group } => {
            let info = client.group_info(&group).await?;
            out.print(group_json(&info), || {
                let members: Vec<String> = info
                    .members
                    .iter()
                    .map(|(user, role)| format!("{user} ({role})"))
                    .collect();
                format!("{}: {}", info.title, members.join(", "))
            });
        }
    }
    Ok(())
}

/// The interactive mode: stdin lines are sent, the conversation's events are printed.
async fn chat(
    client: &Client,
    events: &mut natter_client::Events,
    conversation: &str,
) -> natter_client::Result<()> {
    let page = client
        .history(conversation, 0, Direction::BACKWARD, 20)
        .await?;
    for event in &page.events {
        println!("{}", chat_line(event));
    }
    eprintln!("chatting in {conversation}; type a line to send it, /quit to leave");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) if line.trim() == "/quit" => break,
                Ok(Some(line)) if line.trim().is_empty() => {}
                Ok(Some(line)) => {
                    // Queue in typing order, but wait for the ack elsewhere so events keep
                    // flowing meanwhile.
                    let message = OutgoingMessage::text(conversation, &line);
                    let pending = client.enqueue(Request::Send(message)).await?;
                    tokio::spawn(async move {
                        if let Err(error) = pending.sent().await {
                            eprintln!("not sent: {error}");
                        }
                    });
                }
                Ok(None) | Err(_) => break,
            },
            event = events.next() => match event {
                Some(Event::Typing { conversation: c, user, active: true })
                    if c == conversation =>
                {
                    eprintln!("{user} is typing...");
                }
                Some(Event::Connection(state)) => eprintln!("{}", connection_line(&state)),
                Some(event) => {
                    let mine = event.chat_event().filter(|e| e.conversation == conversation);
                    if let Some(chat) = mine {
                        println!("{}", chat_line(chat));
                        if chat.sender != client.user() {
                            let read = Request::Mark {
                                conversation: conversation.to_owned(),
                                marker: natter_client::Marker::READ,
                                seq: chat.seq,
                            };
                            // Not awaited: the answer would wait behind unread events.
                            client.enqueue(read).await?;
                        }
                    }
                }
                None => break,
            },
        }
    }
    Ok(())
}

/// A conversation id as given, or the direct conversation with a user.
fn conversation_id(client: &Client, to: &str) -> String {
    if natter_codec::ids::ConversationId::parse(to).is_some() {
        to.to_owned()
    } else {
        client.direct_conversation(to)
    }
}

struct Output {
    json: bool,
}

impl Output {
    fn print(&self, value: Value, human: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{}", human());
        }
    }

    fn event(&self, event: &Event) {
        let value = event_json(event);
        self.print(value, || match event.chat_event() {
            Some(chat) => chat_line(chat),
            None => event_line(event),
        });
    }
}

fn chat_line(event: &ChatEvent) -> String {
    let body = match event.text() {
        Some(text) => text.to_owned(),
        None => format!("<{} bytes>", event.body.len()),
    };
    match event.kind.name() {
        Some("MESSAGE") => format!(
            "[{} #{}] {}: {body}",
            event.conversation, event.seq, event.sender
        ),
        _ => format!(
            "[{} #{}] {} {} {}",
            event.conversation,
            event.seq,
            event.sender,
            event.kind,
            event
                .member_change()
                .map(|(user, role)| format!("{user} {role}"))
                .unwrap_or(body)
        ),
    }
}

fn event_line(event: &Event) -> String {
    match event {
        Event::Connection(state) => connection_line(state),
        Event::Receipt {
            conversation,
            user,
            delivered,
            read,
        } => format!("[{conversation}] {user} received #{delivered}, read #{read}"),
        Event::Presence {
            user,
            status,
            last_seen,
        } => format!("{user} is {status} (last seen {last_seen})"),
        Event::Typing {
            conversation,
            user,
            active,
        } => {
            let what = if *active {
                "is typing"
            } else {
                "stopped typing"
            };
            format!("[{conversation}] {user} {what}")
        }
        Event::Gap {
            conversation,
            from,
            to,
        } => {
            let place = conversation.as_deref().unwrap_or("inbox");
            format!("* missed {place} #{from}..#{to}; repairing from history")
        }
        Event::Repaired {
            conversation,
            through,
        } => format!("* {conversation} complete through #{through}"),
        Event::RepairFailed {
            conversation,
            error,
        } => format!("* could not repair {conversation}: {error}"),
        other => format!("{other:?}"),
    }
}

fn connection_line(state: &ConnectionState) -> String {
    match state {
        ConnectionState::Connected { user, device, .. } => {
            format!("* connected as {user}/{device}")
        }
        ConnectionState::Synced { .. } => "* in sync".to_owned(),
        ConnectionState::Disconnected { reason, retry_in } => {
            format!(
                "* disconnected ({reason}); retrying in {} ms",
                retry_in.as_millis()
            )
        }
        other => format!("* {other:?}"),
    }
}

fn chat_json(event: &ChatEvent) -> Value {
    let mut value = json!({
        "conversation": event.conversation,
        "seq": event.seq,
        "kind": event.kind.name().map_or_else(|| event.kind.0.to_string(), str::to_owned),
        "sender": event.sender,
        "device": event.device,
        "timestamp": event.timestamp,
        "client_msg_id": event.client_msg_id,
        "target": event.target,
        "deleted": event.flags.contains(natter_codec::types::EventFlags::DELETED),
        "edited": event.flags.contains(natter_codec::types::EventFlags::EDITED),
        "content_type": event.content_type,
    });
    match (event.member_change(), event.text()) {
        (Some((user, role)), _) => {
            value["member"] = json!({"user": user, "role": role.name()});
        }
        (None, Some(text)) => value["text"] = json!(text),
        (None, None) => value["body_len"] = json!(event.body.len()),
    }
    value
}

fn group_json(info: &GroupInfo) -> Value {
    let members: Vec<Value> = info
        .members
        .iter()
        .map(|(user, role)| json!({"user": user, "role": role.name()}))
        .collect();
    json!({"conversation": info.conversation, "title": info.title, "members": members})
}

fn event_json(event: &Event) -> Value {
    if let Some(chat) = event.chat_event() {
        let mut value = chat_json(chat);
        value["event"] = json!(match event {
            Event::Message(_) => "message",
            Event::Edit(_) => "edit",
            Event::Delete(_) => "delete",
            Event::Membership(_) => "membership",
            _ => "other",
        });
        return value;
    }
    match event {
        Event::Receipt {
            conversation,
            user,
            delivered,
            read,
        } => json!({
            "event": "receipt", "conversation": conversation, "user": user,
            "delivered": delivered, "read": read,
        }),
        Event::Presence {
            user,
            status,
            last_seen,
        } => json!({
            "event": "presence", "user": user, "status": status.name(), "last_seen": last_seen,
        }),
        Event::Typing {
            conversation,
            user,
            active,
        } => json!({
            "event": "typing", "conversation": conversation, "user": user, "active": active,
        }),
        Event::Gap {
            conversation,
            from,
            to,
        } => json!({
            "event": "gap", "conversation": conversation, "from": from, "to": to,
        }),
        Event::Repaired {
            conversation,
            through,
        } => json!({
            "event": "repaired", "conversation": conversation, "through": through,
        }),
        Event::RepairFailed {
            conversation,
            error,
        } => json!({
            "event": "repair_failed", "conversation": conversation, "error": error.to_string(),
        }),
        Event::Connection(state) => {
            let (name, detail) = match state {
                ConnectionState::Connecting { attempt } => {
                    ("connecting", json!({"attempt": attempt}))
                }
                ConnectionState::Connected {
                    user,
                    device,
                    session,
                } => (
                    "connected",
                    json!({"user": user, "device": device, "session": session}),
                ),
                ConnectionState::Synced { inbox_head } => {
                    ("synced", json!({"inbox_head": inbox_head}))
                }
                ConnectionState::GoingAway { reconnect_after } => (
                    "going_away",
                    json!({"reconnect_ms": reconnect_after.as_millis() as u64}),
                ),
                ConnectionState::Disconnected { reason, retry_in } => (
                    "disconnected",
                    json!({"reason": reason, "retry_ms": retry_in.as_millis() as u64}),
                ),
                ConnectionState::Closed { error } => (
                    "closed",
                    json!({"error": error.as_ref().map(ToString::to_string)}),
                ),
                _ => ("unknown", Value::Null),
            };
            json!({"event": "connection", "state": name, "detail": detail})
        }
        other => json!({"event": "unknown", "debug": format!("{other:?}")}),
    }
}
