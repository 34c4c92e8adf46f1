//! The scenarios, by spec chapter. Each names the rules it checks; keep them in step with
//! spec/PROTOCOL.md (the crate's tests refuse a cited id the spec does not list as
//! server-observable, and a server-observable rule no scenario cites).

use std::sync::LazyLock;

use bytes::Bytes;
use natter_codec::frame::{
    Deliver, GroupCreate, GroupInfo, GroupUpdate, Hello, History, HistoryPage, Send,
};
use natter_codec::types::{Direction, EventKind, Features, GroupOp, Role};
use natter_codec::{ErrorCode, Frame};

use crate::wire::{Conn, hello_frame};
use crate::{Ctx, Failure, Scenario};

mod connection;
mod framing;
mod groups;
mod ids;
mod inbox;
mod messaging;
mod presence;
mod queries;

/// Declares a module's scenarios: `"name" [rule ids] => async fn`, and `=> async fn (alone)`
/// for one that loads the server so much that it runs by itself ([`Scenario::alone`]).
macro_rules! scenarios {
    (@alone) => { false };
    (@alone alone) => { true };
    ($( $name:literal [$($rule:literal),* $(,)?] => $run:ident $(($alone:ident))?, )*) => {
        /// This module's scenarios, in spec order.
        pub(super) static SCENARIOS: &[crate::Scenario] = &[
            $( crate::Scenario {
                name: $name,
                rules: &[$($rule),*],
                run: |ctx| Box::pin($run(ctx)),
                alone: scenarios!(@alone $($alone)?),
            }, )*
        ];
    };
}
pub(crate) use scenarios;

/// Every scenario, in spec order.
pub static SCENARIOS: LazyLock<Vec<&'static Scenario>> = LazyLock::new(|| {
    [
        framing::SCENARIOS,
        ids::SCENARIOS,
        connection::SCENARIOS,
        messaging::SCENARIOS,
        inbox::SCENARIOS,
        queries::SCENARIOS,
        groups::SCENARIOS,
        presence::SCENARIOS,
    ]
    .into_iter()
    .flatten()
    .collect()
});

/// The device every scenario connection uses unless it needs several.
const DEVICE: &str = "conformance";

/// A connection for `user`, through HELLO and READY.
async fn connect(ctx: &Ctx<'_>, user: &str, features: Features) -> Result<Conn, Failure> {
    connect_device(ctx, user, DEVICE, features).await
}

/// A connection for `user` on `device`, through HELLO and READY.
async fn connect_device(
    ctx: &Ctx<'_>,
    user: &str,
    device: &str,
    features: Features,
) -> Result<Conn, Failure> {
    Conn::ready(ctx.addr(), &ctx.token(user, device)?, features).await
}

/// Like [`connect`], then RESUME from the inbox head.
async fn live(ctx: &Ctx<'_>, user: &str, features: Features) -> Result<Conn, Failure> {
    Conn::live(ctx.addr(), &ctx.token(user, DEVICE)?, features).await
}

/// A HELLO for `user` that announces `max_frame_size`.
fn hello_with_max(
    ctx: &Ctx<'_>,
    user: &str,
    features: Features,
    max_frame_size: u64,
) -> Result<Hello, Failure> {
    let mut hello = hello_frame(&ctx.token(user, DEVICE)?, features);
    hello.max_frame_size = max_frame_size;
    Ok(hello)
}

/// The smallest `max_frame_size` a client may announce ([NWP-3-4]).
const SMALL_FRAME: u64 = 4_096;

/// A connection for `user` that accepts frames of at most [`SMALL_FRAME`] bytes.
async fn connect_small(ctx: &Ctx<'_>, user: &str, features: Features) -> Result<Conn, Failure> {
    Conn::ready_with(
        ctx.addr(),
        hello_with_max(ctx, user, features, SMALL_FRAME)?,
    )
    .await
}

/// A SEND of a MESSAGE.
fn message(request: u64, conversation: &str, client_msg_id: u64, body: &[u8]) -> Frame {
    send_frame(
        request,
        conversation,
        client_msg_id,
        EventKind::MESSAGE,
        0,
        body,
    )
}

/// A SEND of any kind.
fn send_frame(
    request: u64,
    conversation: &str,
    client_msg_id: u64,
    kind: EventKind,
    target: u64,
    body: &[u8],
) -> Frame {
    Send {
        request,
        conversation: conversation.into(),
        client_msg_id,
        kind,
        target,
        content_type: "".into(),
        body: Bytes::copy_from_slice(body),
    }
    .into()
}

/// Sends a message (its client_msg_id is the request id) and returns its seq.
async fn send(
    conn: &mut Conn,
    request: u64,
    conversation: &str,
    body: &str,
) -> Result<u64, Failure> {
    send_bytes(conn, request, conversation, body.as_bytes()).await
}

/// Like [`send`] with any body.
async fn send_bytes(
    conn: &mut Conn,
    request: u64,
    conversation: &str,
    body: &[u8],
) -> Result<u64, Failure> {
    conn.send(message(request, conversation, request, body))
        .await?;
    sent(conn, request).await
}

/// The seq of the SEND_ACK answering `request`.
async fn sent(conn: &mut Conn, request: u64) -> Result<u64, Failure> {
    match conn.answer(request).await? {
        Frame::SendAck(ack) => Ok(ack.seq),
        other => Err(Failure::new(format!("expected SEND_ACK, got {other:?}"))),
    }
}

/// A HISTORY request's page.
async fn history(
    conn: &mut Conn,
    request: u64,
    conversation: &str,
    anchor: u64,
    direction: Direction,
    limit: u64,
) -> Result<HistoryPage, Failure> {
    let frame = History {
        request,
        conversation: conversation.into(),
        anchor,
        direction,
        limit,
    };
    conn.send(frame.into()).await?;
    match conn.answer(request).await? {
        Frame::HistoryPage(page) => Ok(page),
        other => Err(Failure::new(format!(
            "expected HISTORY_PAGE, got {other:?}"
        ))),
    }
}

/// Creates a group and returns its GROUP_INFO.
async fn create_group(
    conn: &mut Conn,
    request: u64,
    title: &str,
    members: &[&str],
) -> Result<GroupInfo, Failure> {
    let create = GroupCreate {
        request,
        title: title.into(),
        members: members.iter().map(|m| (*m).into()).collect(),
    };
    conn.send(create.into()).await?;
    match conn.answer(request).await? {
        Frame::GroupInfo(info) => Ok(info),
        other => Err(Failure::new(format!("expected GROUP_INFO, got {other:?}"))),
    }
}

/// A GROUP_UPDATE frame.
fn group_update(request: u64, group: &str, op: GroupOp, user: &str, role: Role) -> Frame {
    GroupUpdate {
        request,
        conversation: group.into(),
        op,
        user: user.into(),
        role,
    }
    .into()
}

/// Sends a GROUP_UPDATE and expects its SEND_ACK; returns the membership event's seq.
async fn update_group(
    conn: &mut Conn,
    request: u64,
    group: &str,
    op: GroupOp,
    user: &str,
    role: Role,
) -> Result<u64, Failure> {
    conn.send(group_update(request, group, op, user, role))
        .await?;
    sent(conn, request).await
}

/// Sends a GROUP_UPDATE and expects ERROR `code`.
async fn refuse_update(
    conn: &mut Conn,
    request: u64,
    (group, op, user, role): (&str, GroupOp, &str, Role),
    code: ErrorCode,
) -> Result<(), Failure> {
    conn.send(group_update(request, group, op, user, role))
        .await?;
    conn.answer_error(request, code)
        .await
        .map(drop)
        .map_err(|f| f.context(&format!("GROUP_UPDATE {op:?} {user}")))
}

/// Waits for the DELIVER of `seq` in `conversation`.
async fn delivered(conn: &mut Conn, conversation: &str, seq: u64) -> Result<Deliver, Failure> {
    let frame = conn
        .expect(
            |f| {
                matches!(f, Frame::Deliver(d)
                    if *d.conversation == *conversation && d.event.seq == seq)
            },
            &format!("the DELIVER of {conversation} seq {seq}"),
        )
        .await?;
    match frame {
        Frame::Deliver(deliver) => Ok(deliver),
        _ => Err(Failure::new("expected DELIVER")),
    }
}

fn check(condition: bool, message: impl FnOnce() -> String) -> Result<(), Failure> {
    if condition {
        Ok(())
    } else {
        Err(Failure::new(message()))
    }
}

/// Sleeps for `ms` milliseconds.
async fn pause(ms: u64) {
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}
