//! Presence: spec 6.5 and 7.9.

use std::time::Duration;

use natter_codec::frame::{Presence, PresenceSubscribe};
use natter_codec::ids::direct_conversation;
use natter_codec::types::{Features, GroupOp, Role, Status};
use natter_codec::{ErrorCode, Frame};

use super::{DEVICE, check, connect, create_group, pause, scenarios, send, update_group};
use crate::wire::Conn;
use crate::{Ctx, Failure};

scenarios! {
    "presence-basics" ["NWP-7.9-1", "NWP-7.9-2", "NWP-7.9-7"] => presence_basics,
    "presence-visibility" ["NWP-7.9-3", "NWP-7.9-4"] => presence_visibility,
    "presence-interest-ends" ["NWP-7.9-5"] => interest_ends,
    "presence-subscription-limit" ["NWP-7.9-6"] => subscription_limit,
}

/// How long a scenario waits to be sure a PRESENCE does not come.
const SILENCE: Duration = Duration::from_millis(700);

fn subscribe(request: u64, conversation: &str, ttl_ms: u64) -> Frame {
    PresenceSubscribe {
        request,
        conversation: conversation.into(),
        ttl_ms,
    }
    .into()
}

/// Subscribes and waits for DONE and for a PRESENCE of each of `users`, in any order
/// ([NWP-7.9-7]); returns those PRESENCE frames in the order of `users`.
async fn watch(
    conn: &mut Conn,
    request: u64,
    conversation: &str,
    ttl_ms: u64,
    users: &[&str],
) -> Result<Vec<Presence>, Failure> {
    conn.send(subscribe(request, conversation, ttl_ms)).await?;
    let mut done = false;
    let mut seen: Vec<Option<Presence>> = vec![None; users.len()];
    while !done || seen.iter().any(Option::is_none) {
        let frame = conn
            .expect(
                |f| f.request() == Some(request) || matches!(f, Frame::Presence(_)),
                "DONE and PRESENCE",
            )
            .await
            .map_err(|f| f.context(&format!("PRESENCE_SUBSCRIBE {conversation}")))?;
        match frame {
            Frame::Done(_) => done = true,
            Frame::Presence(presence) => {
                if let Some(index) = users.iter().position(|u| **u == *presence.user) {
                    seen[index] = Some(presence);
                }
            }
            Frame::Error(error) => {
                return Err(Failure::new(format!(
                    "PRESENCE_SUBSCRIBE {conversation}: {error:?}"
                )));
            }
            _ => {}
        }
    }
    Ok(seen.into_iter().flatten().collect())
}

/// Waits for a PRESENCE of `user` with `status`.
async fn expect_status(conn: &mut Conn, user: &str, status: Status) -> Result<Presence, Failure> {
    let frame = conn
        .expect(
            |f| matches!(f, Frame::Presence(p) if *p.user == *user && p.status == status),
            &format!("PRESENCE {user} {status:?}"),
        )
        .await?;
    match frame {
        Frame::Presence(presence) => Ok(presence),
        _ => Err(Failure::new("expected PRESENCE")),
    }
}

/// Fails if a PRESENCE of `user` arrives within [`SILENCE`].
async fn no_presence_of(conn: &mut Conn, user: &str, why: &str) -> Result<(), Failure> {
    conn.quiet(
        SILENCE,
        |f| matches!(f, Frame::Presence(p) if *p.user == *user),
        why,
    )
    .await
}

/// `user` comes online for a moment, then goes offline.
async fn blink(ctx: &Ctx<'_>, user: &str) -> Result<(), Failure> {
    let mut conn = connect(ctx, user, Features::NONE).await?;
    conn.barrier().await?;
    pause(100).await;
    drop(conn);
    pause(100).await;
    Ok(())
}

/// Makes `user` visible in `conversation`: it sends a MESSAGE there ([NWP-7.9-4]).
async fn speak(ctx: &Ctx<'_>, user: &str, conversation: &str) -> Result<(), Failure> {
    let mut conn = connect(ctx, user, Features::NONE).await?;
    send(&mut conn, 1, conversation, "hello").await.map(drop)
}

async fn presence_basics(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    speak(ctx, &alice, &conversation).await?;
    speak(ctx, &bob, &conversation).await?;
    let mut watcher = connect(ctx, &alice, Features::PRESENCE).await?;
    watch(&mut watcher, 1, &conversation, 30_000, &[]).await?;
    // bob's only session ended when `speak` returned.
    let offline = expect_status(&mut watcher, &bob, Status::OFFLINE).await?;
    let now = watcher.ready.as_ref().map_or(0, |r| r.server_time);
    check(offline.last_seen >= now.saturating_sub(60_000), || {
        format!(
            "bob was online moments ago, yet last_seen is {}",
            offline.last_seen
        )
    })?;
    // Online while a device holds a session, RESUME or not.
    let first = Conn::ready(ctx.addr(), &ctx.token(&bob, "phone")?, Features::NONE).await?;
    expect_status(&mut watcher, &bob, Status::ONLINE).await?;
    let second = Conn::ready(ctx.addr(), &ctx.token(&bob, "laptop")?, Features::NONE).await?;
    drop(first);
    watcher
        .quiet(
            SILENCE,
            |f| matches!(f, Frame::Presence(p) if *p.user == *bob && p.status != Status::ONLINE),
            "bob went offline while one of his devices was still connected",
        )
        .await?;
    drop(second);
    let gone = expect_status(&mut watcher, &bob, Status::OFFLINE).await?;
    check(gone.last_seen >= offline.last_seen, || {
        format!(
            "last_seen went back from {} to {}",
            offline.last_seen, gone.last_seen
        )
    })?;
    // A renewal sends the current state at once.
    let current = watch(&mut watcher, 2, &conversation, 30_000, &[&bob]).await?;
    check(
        current.first().is_some_and(|p| p.status == Status::OFFLINE),
        || format!("on renewal: {current:?}"),
    )
}

async fn presence_visibility(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob, ghost) = (ctx.user("alice"), ctx.user("bob"), ctx.user("ghost"));
    let conversation = direct_conversation(&alice, &bob);
    speak(ctx, &alice, &conversation).await?;
    // bob is online but has never written to alice: he is UNKNOWN to her, like a user who
    // does not exist.
    let mut bobs = Conn::ready(ctx.addr(), &ctx.token(&bob, DEVICE)?, Features::PRESENCE).await?;
    let mut watcher = connect(ctx, &alice, Features::PRESENCE).await?;
    let silent = watch(&mut watcher, 1, &conversation, 30_000, &[&bob]).await?;
    let nobody = watch(
        &mut watcher,
        2,
        &direct_conversation(&alice, &ghost),
        30_000,
        &[&ghost],
    )
    .await?;
    let shape = |p: &Presence| (p.status, p.last_seen);
    check(
        silent.iter().map(shape).eq([(Status::UNKNOWN, 0)])
            && nobody.iter().map(shape).eq([(Status::UNKNOWN, 0)]),
        || format!("a silent user gave {silent:?}, a user who does not exist {nobody:?}"),
    )?;
    // Nor do his transitions show.
    drop(bobs);
    no_presence_of(&mut watcher, &bob, "a silent user's transition was sent").await?;
    // bob sees alice, who wrote to him.
    bobs = Conn::ready(ctx.addr(), &ctx.token(&bob, DEVICE)?, Features::PRESENCE).await?;
    let seen = watch(&mut bobs, 1, &conversation, 30_000, &[&alice]).await?;
    check(
        seen.first().is_some_and(|p| p.status != Status::UNKNOWN),
        || format!("alice wrote to bob, yet he sees {seen:?}"),
    )?;
    // Once bob writes, alice sees him.
    send(&mut bobs, 2, &conversation, "hi alice").await?;
    let visible = watch(&mut watcher, 3, &conversation, 30_000, &[&bob]).await?;
    check(
        visible.first().is_some_and(|p| p.status == Status::ONLINE),
        || format!("bob wrote and is online, yet alice sees {visible:?}"),
    )
}

async fn interest_ends(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob, carol) = (ctx.user("alice"), ctx.user("bob"), ctx.user("carol"));
    let direct = direct_conversation(&alice, &bob);
    speak(ctx, &alice, &direct).await?;
    speak(ctx, &bob, &direct).await?;

    // When the TTL ends.
    let mut watcher = connect(ctx, &alice, Features::PRESENCE).await?;
    watch(&mut watcher, 1, &direct, 1_000, &[&bob]).await?;
    pause(1_500).await;
    blink(ctx, &bob).await?;
    no_presence_of(&mut watcher, &bob, "PRESENCE after the interest's TTL").await?;

    // When a PRESENCE_SUBSCRIBE with ttl_ms 0 ends it.
    watch(&mut watcher, 2, &direct, 30_000, &[&bob]).await?;
    watcher.send(subscribe(3, &direct, 0)).await?;
    watcher.answer(3).await?;
    blink(ctx, &bob).await?;
    no_presence_of(&mut watcher, &bob, "PRESENCE after ttl_ms 0").await?;

    // When the session that made it ends: the device's next session is not subscribed.
    watch(&mut watcher, 4, &direct, 30_000, &[&bob]).await?;
    drop(watcher);
    let mut next = connect(ctx, &alice, Features::PRESENCE).await?;
    blink(ctx, &bob).await?;
    no_presence_of(&mut next, &bob, "PRESENCE for a session that ended").await?;

    // When the watched user, or the subscriber, leaves the conversation.
    let mut owner = connect(ctx, &alice, Features::PRESENCE).await?;
    let group = create_group(&mut owner, 1, "crew", &[&bob, &carol])
        .await?
        .conversation
        .to_string();
    speak(ctx, &bob, &group).await?;
    speak(ctx, &carol, &group).await?;
    let mut subscriber = connect(ctx, &carol, Features::PRESENCE).await?;
    watch(&mut subscriber, 1, &group, 30_000, &[&bob]).await?;
    watch(&mut owner, 2, &group, 30_000, &[&bob]).await?;
    update_group(&mut owner, 3, &group, GroupOp::REMOVE, &carol, Role::MEMBER).await?;
    update_group(&mut owner, 4, &group, GroupOp::REMOVE, &bob, Role::MEMBER).await?;
    pause(200).await;
    blink(ctx, &bob).await?;
    no_presence_of(
        &mut owner,
        &bob,
        "PRESENCE of a user who left the conversation",
    )
    .await?;
    no_presence_of(&mut subscriber, &bob, "PRESENCE for a subscriber who left").await
}

async fn subscription_limit(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    let conversation = |i: u64| direct_conversation(&alice, &ctx.user(&format!("x{i}")));
    for i in 0..64 {
        conn.send(subscribe(i + 1, &conversation(i), 60_000))
            .await?;
    }
    for i in 0..64 {
        conn.answer(i + 1)
            .await
            .map_err(|f| f.context(&format!("subscription {}", i + 1)))?;
    }
    conn.send(subscribe(100, &conversation(64), 60_000)).await?;
    conn.answer_error(100, ErrorCode::LIMIT_EXCEEDED)
        .await
        .map_err(|f| f.context("the 65th subscription"))?;
    // Renewing one of the 64 is accepted; ending one makes room.
    conn.send(subscribe(101, &conversation(0), 60_000)).await?;
    conn.answer(101).await.map_err(|f| f.context("a renewal"))?;
    conn.send(subscribe(102, &conversation(1), 0)).await?;
    conn.answer(102).await.map_err(|f| f.context("an ending"))?;
    conn.send(subscribe(103, &conversation(64), 60_000)).await?;
    conn.answer(103)
        .await
        .map_err(|f| f.context("a subscription after one ended"))?;
    // Another connection, and another user, have limits of their own.
    let mut other = connect(ctx, &alice, Features::NONE).await?;
    other.send(subscribe(1, &conversation(200), 60_000)).await?;
    other
        .answer(1)
        .await
        .map_err(|f| f.context("the same user on another connection"))?;
    let mut bobs = connect(ctx, &bob, Features::NONE).await?;
    bobs.send(subscribe(1, &direct_conversation(&alice, &bob), 60_000))
        .await?;
    bobs.answer(1)
        .await
        .map_err(|f| f.context("another user watching alice"))
        .map(drop)
}
