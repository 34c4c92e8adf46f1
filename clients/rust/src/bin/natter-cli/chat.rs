//! `natter-cli chat`: the lines you type go to one conversation and its events are printed.
//! A line starting with `/` is a command and is never sent, so a mistyped command cannot
//! reach the other members; `//text` sends `/text`.

use std::time::Duration;

use natter_client::{Client, Event, Events, Marker, OutgoingMessage, Request};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::task::JoinSet;

use crate::Failure;
use crate::render::{Output, connection_line};

const HELP: &str = "\
/help          this list
/read          mark everything shown so far as read
/history [N]   show the last N events (default 20)
/quit          leave (so does the end of the input)
//text         send \"/text\"";

/// How many events joining shows, and `/history` without N.
const BACKLOG: u64 = 20;

/// How long leaving waits for the server to confirm what was typed before it.
const DRAIN: Duration = Duration::from_secs(10);

/// One line of input.
#[derive(Debug, PartialEq, Eq)]
enum Input<'a> {
    /// A blank line: nothing to do.
    Nothing,
    Send(&'a str),
    Help,
    Read,
    History(u64),
    Quit,
    /// A `/` line that is no command.
    Unknown(&'a str),
    /// A command used wrongly: its usage.
    Usage(&'static str),
}

fn parse(line: &str) -> Input<'_> {
    let trimmed = line.trim();
    let Some(command) = trimmed.strip_prefix('/') else {
        return match trimmed.is_empty() {
            true => Input::Nothing,
            false => Input::Send(line),
        };
    };
    if command.starts_with('/') {
        return Input::Send(&line.trim_start()[1..]);
    }
    let mut words = command.split_whitespace();
    match (words.next().unwrap_or(""), words.next()) {
        ("help", _) => Input::Help,
        ("read", _) => Input::Read,
        ("quit", _) => Input::Quit,
        ("history", None) => Input::History(BACKLOG),
        ("history", Some(count)) => count
            .parse()
            .map_or(Input::Usage("/history [N]"), Input::History),
        _ => Input::Unknown(trimmed.split_whitespace().next().unwrap_or(trimmed)),
    }
}

/// Runs the chat until `/quit` or the end of the input, then waits (a while) for the server
/// to confirm every message typed; fails if one was not sent.
pub async fn chat(
    client: &Client,
    events: &mut Events,
    out: Output,
    conversation: &str,
) -> Result<(), Failure> {
    let backlog = crate::history(client, conversation, 0, BACKLOG).await?;
    backlog.iter().for_each(|event| out.chat(event));
    let mut newest = backlog.last().map_or(0, |event| event.seq);
    eprintln!("chatting in {conversation}; type a line to send it, /help lists the commands");

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    // Answers are awaited off this loop: they queue behind events, which only it reads.
    let mut pending: JoinSet<bool> = JoinSet::new();
    let mut failed = 0;
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let line = match line {
                    Ok(Some(line)) => line,
                    Ok(None) => break,
                    Err(error) => {
                        eprintln!("natter-cli: reading the input: {error}");
                        break;
                    }
                };
                match parse(&line) {
                    Input::Nothing => {}
                    Input::Send(text) => {
                        // Queued in typing order; the session resends until acknowledged.
                        let message = OutgoingMessage::text(conversation, text);
                        let reply = client.enqueue(Request::Send(message)).await?;
                        pending.spawn(async move {
                            reply.sent().await.map_err(|error| eprintln!("not sent: {error}")).is_ok()
                        });
                    }
                    Input::Help => eprintln!("{HELP}"),
                    Input::Read if newest == 0 => eprintln!("nothing to mark read yet"),
                    Input::Read => {
                        let (client, conversation) = (client.clone(), conversation.to_owned());
                        pending.spawn(async move {
                            match client.mark_read(&conversation, newest).await {
                                Ok(()) => eprintln!("marked {conversation} read up to seq {newest}"),
                                Err(error) => eprintln!("not marked read: {error}"),
                            }
                            true
                        });
                    }
                    Input::History(count) => {
                        let (client, conversation) = (client.clone(), conversation.to_owned());
                        pending.spawn(async move {
                            match crate::history(&client, &conversation, 0, count).await {
                                Ok(page) => page.iter().for_each(|event| out.chat(event)),
                                Err(error) => eprintln!("no history: {error}"),
                            }
                            true
                        });
                    }
                    Input::Quit => break,
                    Input::Unknown(name) => {
                        eprintln!("unknown command {name}, not sent; /help lists them");
                    }
                    Input::Usage(usage) => eprintln!("usage: {usage}"),
                }
            }
            Some(done) = pending.join_next(), if !pending.is_empty() => {
                failed += usize::from(!done.unwrap_or(false));
            }
            event = events.next() => match event {
                Some(Event::Typing { conversation: c, user, active: true })
                    if c == conversation =>
                {
                    eprintln!("{user} is typing...");
                }
                Some(Event::Connection(state)) => eprintln!("{}", connection_line(&state)),
                Some(event) => {
                    let Some(chat) = event.chat_event().filter(|e| e.conversation == conversation)
                    else {
                        continue;
                    };
                    out.chat(chat);
                    newest = newest.max(chat.seq);
                    if chat.sender != client.user() {
                        // It was shown, so it was read; not awaited, like the sends.
                        let read = Request::Mark {
                            conversation: conversation.to_owned(),
                            marker: Marker::READ,
                            seq: chat.seq,
                        };
                        client.enqueue(read).await?;
                    }
                }
                None => break,
            },
        }
    }

    let drain = async {
        while let Some(done) = pending.join_next().await {
            failed += usize::from(!done.unwrap_or(false));
        }
    };
    if tokio::time::timeout(DRAIN, drain).await.is_err() {
        eprintln!(
            "natter-cli: no answer from the server in {} s; messages not yet confirmed may \
             not have been sent",
            DRAIN.as_secs()
        );
        return Err(Failure::Reported);
    }
    match failed {
        0 => Ok(()),
        _ => Err(Failure::Reported),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_lines_are_commands_never_messages() {
        let cases = [
            ("hello", Input::Send("hello")),
            ("  hello there ", Input::Send("  hello there ")),
            ("", Input::Nothing),
            ("   ", Input::Nothing),
            ("/help", Input::Help),
            (" /quit ", Input::Quit),
            ("/read", Input::Read),
            ("/history", Input::History(20)),
            ("/history 5", Input::History(5)),
            ("/history five", Input::Usage("/history [N]")),
            ("/qiut", Input::Unknown("/qiut")),
            ("/etc/passwd is gone", Input::Unknown("/etc/passwd")),
            ("/", Input::Unknown("/")),
            ("//text", Input::Send("/text")),
            ("//", Input::Send("/")),
            ("a /help b", Input::Send("a /help b")),
        ];
        for (line, input) in cases {
            assert_eq!(parse(line), input, "{line:?}");
        }
    }
}
