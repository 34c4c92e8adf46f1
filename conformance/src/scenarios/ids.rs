//! Identifiers: spec section 2.3, and request ids (5.3).

use std::collections::BTreeMap;

use natter_codec::frame::{GroupCreate, History};
use natter_codec::ids::direct_conversation;
use natter_codec::types::{Direction, Features, GroupOp, Role};
use natter_codec::{ErrorCode, Frame};

use super::{
    DEVICE, check, connect, connect_device, create_group, delivered, group_update, history, live,
    message, scenarios, send,
};
use crate::wire::Conn;
use crate::{Ctx, Failure};

scenarios! {
    "invalid-ids" ["NWP-2.3-1", "NWP-2.3-3", "NWP-6.1.6-2"] => invalid_ids,
    "uppercase-user-ids" ["NWP-2.3-5"] => uppercase_user_ids,
    "note-to-self" ["NWP-2.3-6"] => note_to_self,
    "request-ids-any-order" ["NWP-2.3-4", "NWP-5.3-1"] => request_ids_any_order,
    "request-id-zero" ["NWP-5.3-6"] => request_id_zero,
}

async fn invalid_ids(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    let conversations = [
        format!("x/{alice}"),
        format!("d/{bob}/{alice}"),
        format!("d/{alice}"),
        format!("d/{alice}/{bob}/x"),
        format!("d/{alice}/tab\t{bob}"),
        format!("d/{alice}/zz {bob}"),
        format!("d/{alice}/{}", "z".repeat(65)),
        format!("d/{}/{}", "a".repeat(80), "b".repeat(80)),
        "g/".to_owned(),
        "g/bad!name".to_owned(),
        format!("g/{}", "x".repeat(65)),
    ];
    let mut request = 0;
    for conversation in &conversations {
        request += 1;
        conn.send(message(request, conversation, request, b"x"))
            .await?;
        conn.answer_error(request, ErrorCode::INVALID_REQUEST)
            .await
            .map_err(|f| f.context(&format!("SEND to {conversation:?}")))?;
    }
    for member in ["has space", "has/slash", &"m".repeat(65), ""] {
        request += 1;
        let create = GroupCreate {
            request,
            title: "crew".into(),
            members: vec![bob.as_str().into(), member.into()],
        };
        conn.send(create.into()).await?;
        conn.answer_error(request, ErrorCode::INVALID_REQUEST)
            .await
            .map_err(|f| f.context(&format!("GROUP_CREATE with member {member:?}")))?;
    }
    let group = create_group(&mut conn, 100, "crew", &[&bob]).await?;
    conn.send(group_update(
        101,
        &group.conversation,
        GroupOp::ADD,
        "x/y",
        Role::MEMBER,
    ))
    .await?;
    conn.answer_error(101, ErrorCode::INVALID_REQUEST)
        .await
        .map_err(|f| f.context("GROUP_UPDATE ADD \"x/y\""))?;
    // The connection is still usable after all these request errors.
    send(
        &mut conn,
        102,
        &direct_conversation(&alice, &bob),
        "still here",
    )
    .await
    .map(drop)
}

async fn uppercase_user_ids(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let alice = ctx.user("alice");
    let uppercase = [ctx.user("Bob"), ctx.user("BOB"), ctx.user("boB")];
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    let group = create_group(&mut conn, 1, "crew", &[]).await?;
    let mut request = 10;
    for user in &uppercase {
        request += 1;
        let conversation = direct_conversation(&alice, user);
        conn.send(message(request, &conversation, request, b"hi"))
            .await?;
        conn.answer_error(request, ErrorCode::INVALID_REQUEST)
            .await
            .map_err(|f| f.context(&format!("SEND to {conversation}")))?;
        request += 1;
        let create = GroupCreate {
            request,
            title: "crew".into(),
            members: vec![user.as_str().into()],
        };
        conn.send(create.into()).await?;
        conn.answer_error(request, ErrorCode::INVALID_REQUEST)
            .await
            .map_err(|f| f.context(&format!("GROUP_CREATE with member {user}")))?;
        request += 1;
        conn.send(group_update(
            request,
            &group.conversation,
            GroupOp::ADD,
            user,
            Role::MEMBER,
        ))
        .await?;
        conn.answer_error(request, ErrorCode::INVALID_REQUEST)
            .await
            .map_err(|f| f.context(&format!("GROUP_UPDATE ADD {user}")))?;
        // An issuer must refuse to mint the token; if it does mint one, the server refuses it.
        if let Ok(token) = ctx.token(user, DEVICE) {
            let mut conn = Conn::open(ctx.addr()).await?;
            conn.send(crate::wire::hello(&token, Features::NONE))
                .await?;
            conn.expect_close(ErrorCode::UNAUTHENTICATED)
                .await
                .map_err(|f| f.context(&format!("HELLO with a token for {user}")))?;
        }
    }
    Ok(())
}

async fn note_to_self(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let notes = direct_conversation(&alice, &alice);
    let mut phone = live(ctx, &alice, Features::NONE).await?;
    let mut laptop = Conn::live(ctx.addr(), &ctx.token(&alice, "laptop")?, Features::NONE).await?;
    let seq = send(&mut phone, 1, &notes, "buy milk").await?;
    for (device, conn) in [("phone", &mut phone), ("laptop", &mut laptop)] {
        delivered(conn, &notes, seq)
            .await
            .map_err(|f| f.context(device))?;
        conn.quiet(
            std::time::Duration::from_millis(300),
            |f| matches!(f, Frame::Deliver(d) if d.event.seq == seq),
            &format!("{device}: the note was delivered twice"),
        )
        .await?;
    }
    let page = history(&mut phone, 2, &notes, 0, Direction::BACKWARD, 10).await?;
    check(page.events.iter().map(|e| e.seq).eq([seq]), || {
        format!("history of {notes}: {page:?}")
    })?;
    // Nobody else belongs to it.
    let mut other = connect_device(ctx, &bob, DEVICE, Features::NONE).await?;
    other.send(message(1, &notes, 1, b"let me in")).await?;
    other
        .answer_error(1, ErrorCode::NOT_FOUND)
        .await
        .map_err(|f| f.context(&format!("{bob} sends to {notes}")))
        .map(drop)
}

async fn request_ids_any_order(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    let ids = [9, 3, 1_000_000, 7, 1 << 40, 4];
    for (index, request) in ids.iter().enumerate() {
        let frame = if index % 2 == 0 {
            message(*request, &conversation, *request, b"x")
        } else {
            History {
                request: *request,
                conversation: conversation.as_str().into(),
                anchor: 0,
                direction: Direction::BACKWARD,
                limit: 5,
            }
            .into()
        };
        conn.send(frame).await?;
    }
    let mut answers: BTreeMap<u64, u32> = BTreeMap::new();
    while answers.len() < ids.len() {
        let frame = conn.expect(|f| f.request().is_some(), "an answer").await?;
        if let Frame::Error(error) = &frame {
            return Err(Failure::new(format!("a request failed: {error:?}")));
        }
        *answers
            .entry(frame.request().unwrap_or_default())
            .or_default() += 1;
    }
    for frame in conn.barrier().await? {
        if let Some(request) = frame.request() {
            *answers.entry(request).or_default() += 1;
        }
    }
    let expected: BTreeMap<u64, u32> = ids.iter().map(|id| (*id, 1)).collect();
    check(answers == expected, || {
        format!("answers per request id: {answers:?}, expected one each of {ids:?}")
    })
}

async fn request_id_zero(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    conn.send(message(0, &conversation, 1, b"request zero"))
        .await?;
    conn.expect_close(ErrorCode::PROTOCOL_VIOLATION)
        .await
        .map_err(|f| f.context("SEND with request id 0"))?;
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    let history = History {
        request: 0,
        conversation: conversation.as_str().into(),
        anchor: 0,
        direction: Direction::BACKWARD,
        limit: 5,
    };
    conn.send(history.into()).await?;
    conn.expect_close(ErrorCode::PROTOCOL_VIOLATION)
        .await
        .map_err(|f| f.context("HISTORY with request id 0"))
}
