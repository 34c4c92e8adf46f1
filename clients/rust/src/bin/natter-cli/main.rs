//! `natter-cli`: talk to a natter server from a shell or a script.
//!
//! Every command that prints data prints JSON with `--json` (one object per line for
//! streams), so tests and scripts can parse it. Ids are checked before connecting, so a typo
//! is a usage error (exit 2) rather than a message to a user nobody meant.

mod chat;
mod ids;
mod localtime;
mod render;

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use natter_client::{
    ChatEvent, Client, Cursor, Direction, ErrorCode, Event, Events, MemoryCursorStore, Request,
    Role, Status,
};
use natter_codec::ids::ConversationId;
use serde_json::json;

use crate::render::{Output, group_json, presence_json, presence_line, role_name};

/// A command-line client for natter.
#[derive(Debug, Parser)]
#[command(
    name = "natter-cli",
    version,
    after_help = "Exit status: 0 on success, 1 when the server or the connection fails (or \
                  `presence` knows nobody), 2 for a usage error."
)]
struct Cli {
    /// The server: tcp://host:port, tls://host:port, ws://host:port/ws or wss://host/ws.
    #[arg(long, env = "NATTER_URL", default_value = "tcp://127.0.0.1:7400")]
    url: String,
    /// The device's token; mint one with `natter token --user USER --device cli`.
    #[arg(long, env = "NATTER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A PEM file of CA certificates to trust for tls:// and wss://.
    #[arg(long, env = "NATTER_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// Print JSON, one object per line, instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send a text message.
    Send {
        /// A user id (your direct conversation with them) or a conversation id (d/..., g/...).
        to: String,
        /// The text; several words are joined with single spaces.
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// Print events as they arrive, until interrupted.
    Listen {
        /// Start with every inbox entry the server still holds, not only new ones.
        #[arg(long)]
        from_start: bool,
    },
    /// Print a conversation's newest events (or those before --before), oldest first.
    History {
        /// A user id (your direct conversation with them) or a conversation id (d/..., g/...).
        to: String,
        /// At most this many events.
        #[arg(long, default_value_t = 50)]
        limit: u64,
        /// Only events older than this seq; without it, the newest events.
        #[arg(long)]
        before: Option<u64>,
    },
    /// List your conversations, most recently active first.
    Conversations {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Create and manage groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Show whether the other members of a conversation are online, and when last seen.
    ///
    /// A user the server does not show you (no shared conversation, or no such user) and a
    /// user never seen look alike on purpose; both print as unknown. Exits 1 when no member's
    /// presence is known.
    Presence {
        /// A user id (your direct conversation with them) or a conversation id (d/..., g/...).
        to: String,
        /// Keep printing changes until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// Mark a conversation read, on all your devices.
    MarkRead {
        /// A user id (your direct conversation with them) or a conversation id (d/..., g/...).
        to: String,
        /// The last seq read (a read pointer never moves back); without it, the newest event.
        seq: Option<u64>,
    },
    /// Chat interactively: lines you type are sent, arriving messages are printed.
    ///
    /// Lines starting with / are commands and are never sent: /help, /read, /history [N],
    /// /quit. Start a message with // to send a leading /.
    Chat {
        /// A user id (your direct conversation with them) or a conversation id (d/..., g/...).
        to: String,
    },
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// Create a group owned by you and print its id.
    Create {
        /// The title.
        title: String,
        /// User ids of the members besides you.
        members: Vec<String>,
    },
    /// Add a member (needs admin or owner).
    Add {
        /// The group id (g/...).
        group: String,
        /// The user id.
        user: String,
        /// The new member's role.
        #[arg(long, value_enum, default_value_t = NewRole::Member)]
        role: NewRole,
    },
    /// Remove a member, or yourself to leave.
    Remove {
        /// The group id (g/...).
        group: String,
        /// The user id.
        user: String,
    },
    /// Print a group's title and members.
    Info {
        /// The group id (g/...).
        group: String,
    },
}

/// The roles `group add` can give; the owner is whoever created the group.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum NewRole {
    Member,
    Admin,
}

impl From<NewRole> for Role {
    fn from(role: NewRole) -> Self {
        match role {
            NewRole::Member => Role::MEMBER,
            NewRole::Admin => Role::ADMIN,
        }
    }
}

/// Why natter-cli stops short; each maps to an exit code.
#[derive(Debug)]
enum Failure {
    /// A command line that cannot work: exit 2, like clap's own usage errors.
    Usage(String),
    /// The connection or the server failed: exit 1.
    Client(natter_client::Error),
    /// Already said (an unknown presence, a message not sent): exit 1.
    Reported,
}

impl From<natter_client::Error> for Failure {
    fn from(error: natter_client::Error) -> Self {
        Self::Client(error)
    }
}

const NO_TOKEN: &str = "\
no token: pass --token TOKEN or set NATTER_TOKEN, for example
    export NATTER_TOKEN=$(natter token --user alice --device cli)
(`natter token` signs with the server's secret: run it where the server keeps its config or \
data directory)";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("natter-cli: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Client(error)) => {
            eprintln!("natter-cli: {error}");
            match error {
                natter_client::Error::Config(_) | natter_client::Error::InvalidArgument(_) => {
                    ExitCode::from(2)
                }
                _ => ExitCode::FAILURE,
            }
        }
        Err(Failure::Reported) => ExitCode::FAILURE,
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    cli.command.check_ids().map_err(Failure::Usage)?;
    let token = match cli.token {
        Some(token) if !token.is_empty() => token,
        _ => return Err(Failure::Usage(NO_TOKEN.to_owned())),
    };
    let mut config = natter_client::Config::new(&cli.url, token)?;
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
    let result = command(&client, &mut events, out, cli.command).await;
    client.close().await;
    result
}

impl Command {
    /// Checks every id the command names, before connecting.
    fn check_ids(&self) -> Result<(), String> {
        match self {
            Self::Send { to, .. }
            | Self::History { to, .. }
            | Self::Presence { to, .. }
            | Self::MarkRead { to, .. }
            | Self::Chat { to } => ids::target(to),
            Self::Listen { .. } | Self::Conversations { .. } => Ok(()),
            Self::Group(GroupCommand::Create { members, .. }) => {
                members.iter().try_for_each(|member| ids::user(member))
            }
            Self::Group(
                GroupCommand::Add { group, user, .. } | GroupCommand::Remove { group, user },
            ) => ids::group(group).and_then(|()| ids::user(user)),
            Self::Group(GroupCommand::Info { group }) => ids::group(group),
        }
    }
}

async fn command(
    client: &Client,
    events: &mut Events,
    out: Output,
    command: Command,
) -> Result<(), Failure> {
    let target = |to: &str| ids::conversation_of(client.user(), to);
    match command {
        Command::Send { to, text } => {
            let conversation = target(&to);
            let sent = client.send_text(&conversation, &text.join(" ")).await?;
            out.print(
                json!({
                    "conversation": conversation,
                    "seq": sent.seq,
                    "timestamp": sent.timestamp,
                    "timestamp_iso": localtime::iso(sent.timestamp),
                    "duplicate": sent.duplicate,
                }),
                || {
                    let repeat = if sent.duplicate { " (a repeat)" } else { "" };
                    let time = localtime::local(sent.timestamp);
                    format!("sent to {conversation} at seq {}, {time}{repeat}", sent.seq)
                },
            );
        }
        Command::Listen { .. } => {
            while let Some(event) = events.next().await {
                out.event(&event);
            }
        }
        Command::History { to, limit, before } => {
            let page = history(client, &target(&to), before.unwrap_or(0), limit).await?;
            page.iter().for_each(|event| out.chat(event));
        }
        Command::Conversations { limit } => conversations(client, out, limit).await?,
        Command::Group(group) => group_command(client, out, group).await?,
        Command::Presence { to, watch } => presence(client, events, out, &to, watch).await?,
        Command::MarkRead { to, seq } => {
            let conversation = target(&to);
            let seq = match seq {
                Some(seq) => seq,
                None => history(client, &conversation, 0, 1)
                    .await?
                    .last()
                    .map_or(0, |event| event.seq),
            };
            if seq == 0 {
                out.print(json!({"conversation": conversation, "seq": null}), || {
                    format!("{conversation} has no events; nothing to mark read")
                });
            } else {
                client.mark_read(&conversation, seq).await?;
                out.print(
                    json!({"conversation": conversation, "marker": "read", "seq": seq}),
                    || format!("marked {conversation} read up to seq {seq}"),
                );
            }
        }
        Command::Chat { to } => chat::chat(client, events, out, &target(&to)).await?,
    }
    Ok(())
}

/// Up to `limit` events before `before` (0: the newest), oldest first. A server may answer
/// a short page with `more` ([NWP-7.5-5]), so this pages on until it has `limit` events.
pub async fn history(
    client: &Client,
    conversation: &str,
    before: u64,
    limit: u64,
) -> natter_client::Result<Vec<ChatEvent>> {
    let mut events = Vec::new();
    let mut anchor = before;
    loop {
        let wanted = limit.saturating_sub(events.len() as u64);
        let mut page = client
            .history(conversation, anchor, Direction::BACKWARD, wanted)
            .await?;
        let oldest = page.events.first().map(|event| event.seq);
        page.events.append(&mut events);
        events = page.events;
        match oldest {
            Some(seq) if page.more && seq > 1 && (events.len() as u64) < limit => anchor = seq,
            _ => return Ok(events),
        }
    }
}

async fn conversations(client: &Client, out: Output, limit: u64) -> Result<(), Failure> {
    let page = client.conversations(Bytes::new(), limit).await?;
    for summary in page.conversations {
        out.print(
            json!({
                "conversation": summary.conversation,
                "kind": summary.kind.name(),
                "title": summary.title,
                "last_seq": summary.last_seq,
                "last_timestamp": summary.last_timestamp,
                "last_timestamp_iso": localtime::iso_or_null(summary.last_timestamp),
                "read_seq": summary.read_seq,
                "unread": summary.unread,
            }),
            || {
                let id = &summary.conversation;
                // [NWP-7.6-2]: a direct conversation has no title; show the other user.
                let name = match ConversationId::parse(id) {
                    _ if !summary.title.is_empty() => format!("{} ({id})", summary.title),
                    Some(ConversationId::Direct(low, high)) => {
                        let other = if low == client.user() { high } else { low };
                        format!("{other} ({id})")
                    }
                    _ => id.clone(),
                };
                let last = match summary.last_timestamp {
                    0 => "no events yet".to_owned(),
                    ms => format!("last {} (seq {})", localtime::local(ms), summary.last_seq),
                };
                format!("{name}: {} unread, {last}", summary.unread)
            },
        );
    }
    Ok(())
}

async fn group_command(client: &Client, out: Output, command: GroupCommand) -> Result<(), Failure> {
    match command {
        GroupCommand::Create { title, members } => {
            let members: Vec<&str> = members.iter().map(String::as_str).collect();
            let info = client.create_group(&title, &members).await?;
            out.print(group_json(&info), || info.conversation.clone());
        }
        GroupCommand::Add { group, user, role } => {
            let role = Role::from(role);
            let sent = client.add_member(&group, &user, role).await?;
            out.print(json!({"conversation": group, "seq": sent.seq}), || {
                let role = role_name(role);
                format!("added {user} to {group} as {role} (seq {})", sent.seq)
            });
        }
        GroupCommand::Remove { group, user } => {
            let sent = client.remove_member(&group, &user).await?;
            out.print(json!({"conversation": group, "seq": sent.seq}), || {
                match user == client.user() {
                    true => format!("left {group} (seq {})", sent.seq),
                    false => format!("removed {user} from {group} (seq {})", sent.seq),
                }
            });
        }
        GroupCommand::Info { group } => {
            let info = client.group_info(&group).await?;
            out.print(group_json(&info), || {
                let members: Vec<String> = info
                    .members
                    .iter()
                    .map(|(user, role)| format!("{user} ({})", role_name(*role)))
                    .collect();
                format!(
                    "{} ({}): {}",
                    info.title,
                    info.conversation,
                    members.join(", ")
                )
            });
        }
    }
    Ok(())
}

/// Prints the presence of TO's other members; fails (exit 1) when it knows none of them, so
/// `natter-cli presence bob && ...` means something.
async fn presence(
    client: &Client,
    events: &mut Events,
    out: Output,
    to: &str,
    watch: bool,
) -> Result<(), Failure> {
    const TTL: Duration = Duration::from_secs(300);
    let show = |user: &str, status: Status, last_seen: u64| {
        let (line, known) = presence_line(user, status, last_seen);
        out.print(presence_json(user, status, last_seen), || line);
        known
    };
    let conversation = ids::conversation_of(client.user(), to);
    match client.subscribe_presence(&conversation, TTL).await {
        // No such conversation, or not ours: for a user that is exactly UNKNOWN ([NWP-7.9-3]).
        Err(error)
            if ConversationId::parse(to).is_none()
                && matches!(
                    error.code(),
                    Some(ErrorCode::NOT_FOUND | ErrorCode::FORBIDDEN)
                ) =>
        {
            show(to, Status::UNKNOWN, 0);
            return Err(Failure::Reported);
        }
        result => result?,
    }
    let (mut reported, mut known) = (0, 0);
    // PRESENCE frames come around the DONE; give stragglers a moment.
    let window = tokio::time::sleep(Duration::from_millis(500));
    tokio::pin!(window);
    // The interest lapses after its TTL; --watch renews it well before.
    let every = TTL * 4 / 5;
    let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            () = &mut window, if !watch => break,
            _ = renew.tick(), if watch => {
                let ttl_ms = TTL.as_millis() as u64;
                let renewal = Request::PresenceSubscribe { conversation: conversation.clone(), ttl_ms };
                // Not awaited: its DONE would queue behind the events this loop reads.
                client.enqueue(renewal).await?;
            }
            event = events.next() => match event {
                Some(Event::Presence { user, status, last_seen }) => {
                    reported += 1;
                    known += usize::from(show(&user, status, last_seen));
                }
                Some(_) => {}
                None => break,
            },
        }
    }
    match (reported, known) {
        (0, _) => {
            eprintln!("natter-cli: the server reported no presence for {conversation}");
            Err(Failure::Reported)
        }
        (_, 0) => Err(Failure::Reported),
        _ => Ok(()),
    }
}
