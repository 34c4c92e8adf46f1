//! History and the conversation list: spec 6.3, 7.5, 7.6.

use std::collections::BTreeSet;

use bytes::Bytes;
use natter_codec::frame::{Conversations, Mark};
use natter_codec::ids::direct_conversation;
use natter_codec::types::{ConversationKind, Direction, EventFlags, Features, Marker, Summary};
use natter_codec::{ErrorCode, Frame};

use super::{
    DEVICE, check, connect, connect_small, create_group, history, message, pause, scenarios, send,
    send_bytes, sent,
};
use crate::wire::Conn;
use crate::{Ctx, Failure};

scenarios! {
    "history-paging" ["NWP-7.5-1", "NWP-7.5-2"] => history_paging,
    "history-of-an-empty-conversation" ["NWP-6.3.1-1"] => history_empty,
    "history-limits" ["NWP-6.3.1-2"] => history_limits,
    "history-fits-the-client" ["NWP-7.5-5", "NWP-7.5-6", "NWP-4.1-4"] => history_fits,
    "conversation-list" ["NWP-7.6-1", "NWP-7.6-2"] => conversation_list,
    "conversations-limits" ["NWP-6.3.3-1"] => conversations_limits,
}

async fn history_paging(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    for request in 1..=12 {
        send(&mut conn, request, &conversation, &format!("m{request}")).await?;
    }
    let cases = [
        (
            20,
            0,
            Direction::BACKWARD,
            (8..=12).collect::<Vec<u64>>(),
            true,
        ),
        (21, 8, Direction::BACKWARD, (3..=7).collect(), true),
        (22, 3, Direction::BACKWARD, (1..=2).collect(), false),
        (23, 0, Direction::FORWARD, (1..=5).collect(), true),
        (24, 10, Direction::FORWARD, (11..=12).collect(), false),
    ];
    for (request, anchor, direction, expected, more) in cases {
        let page = history(&mut conn, request, &conversation, anchor, direction, 5).await?;
        let seqs: Vec<u64> = page.events.iter().map(|e| e.seq).collect();
        check(seqs == expected && page.more == more, || {
            format!(
                "request {request}: seqs {seqs:?} more {}, expected {expected:?} more {more}",
                page.more
            )
        })?;
    }
    Ok(())
}

async fn history_empty(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    for (request, direction) in [(1, Direction::BACKWARD), (2, Direction::FORWARD)] {
        let conversation = direct_conversation(&alice, &bob);
        let page = history(&mut conn, request, &conversation, 0, direction, 10)
            .await
            .map_err(|f| f.context("HISTORY of a direct conversation nobody wrote in"))?;
        check(page.events.is_empty() && !page.more, || {
            format!("an empty conversation gave {page:?}")
        })?;
    }
    Ok(())
}

async fn history_limits(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    send(&mut conn, 1, &conversation, "one").await?;
    let zero = natter_codec::frame::History {
        request: 2,
        conversation: conversation.as_str().into(),
        anchor: 0,
        direction: Direction::BACKWARD,
        limit: 0,
    };
    conn.send(zero.into()).await?;
    conn.answer_error(2, ErrorCode::INVALID_REQUEST)
        .await
        .map_err(|f| f.context("limit 0"))?;
    // More events than any page limit should allow (the default is 200): three devices, so
    // that no per-device rate limit slows the run down.
    let mut total = 1;
    for device in 0..3u64 {
        let mut sender = Conn::ready(
            ctx.addr(),
            &ctx.token(&alice, &format!("d{device}"))?,
            Features::NONE,
        )
        .await?;
        for request in 1..=70 {
            sender
                .send(message(request, &conversation, request, b"filler"))
                .await?;
        }
        for request in 1..=70 {
            sent(&mut sender, request).await?;
        }
        total += 70;
    }
    let page = history(
        &mut conn,
        3,
        &conversation,
        0,
        Direction::BACKWARD,
        1_000_000,
    )
    .await
    .map_err(|f| f.context("a limit above the page limit is reduced, not refused"))?;
    let seqs: Vec<u64> = page.events.iter().map(|e| e.seq).collect();
    check(
        !seqs.is_empty() && seqs.len() < total as usize && page.more,
        || {
            format!(
                "limit 1000000 over {total} events gave {} events, more {}",
                seqs.len(),
                page.more
            )
        },
    )?;
    check(seqs.last() == Some(&total), || {
        format!("the newest page ends at {:?}, not {total}", seqs.last())
    })
}

/// Pages through a conversation in `direction` on `conn` until `more` is false; returns the
/// events in the order pages gave them.
async fn read_all(
    conn: &mut Conn,
    conversation: &str,
    direction: Direction,
) -> Result<Vec<natter_codec::types::Event>, Failure> {
    let mut events = Vec::new();
    let mut anchor = 0;
    for request in 1..=50 {
        let page = history(conn, request, conversation, anchor, direction, 10).await?;
        check(!page.events.is_empty() || !page.more, || {
            format!("an empty page with more = true at anchor {anchor}")
        })?;
        anchor = if direction == Direction::BACKWARD {
            page.events.first().map_or(0, |e| e.seq)
        } else {
            page.events.last().map_or(0, |e| e.seq)
        };
        let more = page.more;
        if direction == Direction::BACKWARD {
            let mut older = page.events;
            older.extend(events);
            events = older;
        } else {
            events.extend(page.events);
        }
        if !more {
            return Ok(events);
        }
    }
    Err(Failure::new("50 pages and still more"))
}

async fn history_fits(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut sender = connect(ctx, &alice, Features::NONE).await?;
    let sizes = [3_000, 3_000, 3_000, 10_000, 3_000, 3_000];
    for (index, size) in sizes.iter().enumerate() {
        let request = index as u64 + 1;
        send_bytes(
            &mut sender,
            request,
            &conversation,
            &vec![b'a' + index as u8; *size],
        )
        .await?;
    }
    // bob accepts frames of 4,096 bytes: [`Conn`] fails on any page larger than that.
    let mut small = connect_small(ctx, &bob, Features::NONE).await?;
    let first = history(&mut small, 100, &conversation, 0, Direction::BACKWARD, 10).await?;
    check(!first.events.is_empty() && first.more, || {
        format!(
            "the newest page holds {} events, more {}: it should be cut short",
            first.events.len(),
            first.more
        )
    })?;
    for direction in [Direction::BACKWARD, Direction::FORWARD] {
        let events = read_all(&mut small, &conversation, direction).await?;
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        check(seqs == (1..=6).collect::<Vec<_>>(), || {
            format!("paging {direction:?} in 4 KiB pages gave seqs {seqs:?}")
        })?;
        for event in &events {
            let omitted = event.flags.contains(EventFlags::OMITTED);
            if event.seq == 4 {
                check(
                    omitted
                        && event.body.is_empty()
                        && event.content_type.is_empty()
                        && *event.sender == *alice
                        && *event.device == *DEVICE
                        && event.client_msg_id == 4,
                    || format!("the 10 KB event should come OMITTED, all else kept: {event:?}"),
                )?;
            } else {
                check(!omitted && event.body.len() == 3_000, || {
                    format!("seq {} came as {:?}", event.seq, event.flags)
                })?;
            }
        }
    }
    Ok(())
}

/// Reads the user's whole conversation list, `limit` at a time.
async fn list_all(conn: &mut Conn, limit: u64) -> Result<Vec<Summary>, Failure> {
    let mut all = Vec::new();
    let mut cursor = Bytes::new();
    for request in 1..=100 {
        let list = Conversations {
            request,
            cursor: cursor.clone(),
            limit,
        };
        conn.send(list.into()).await?;
        let Frame::ConversationList(page) = conn.answer(request).await? else {
            return Err(Failure::new("expected CONVERSATION_LIST"));
        };
        check(page.conversations.len() as u64 <= limit, || {
            format!("{} entries for limit {limit}", page.conversations.len())
        })?;
        all.extend(page.conversations);
        if page.next_cursor.is_empty() {
            return Ok(all);
        }
        cursor = page.next_cursor;
    }
    Err(Failure::new("100 pages of conversations and still more"))
}

async fn conversation_list(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let alice = ctx.user("alice");
    let (bob, carol, dave) = (ctx.user("bob"), ctx.user("carol"), ctx.user("dave"));
    // dave writes first, then alice's group, then carol, then bob twice: newest first is
    // bob, carol, the group, dave.
    for user in [&dave, &carol] {
        let mut conn = connect(ctx, user, Features::NONE).await?;
        send(&mut conn, 1, &direct_conversation(&alice, user), "hi").await?;
        pause(20).await;
    }
    let mut me = connect(ctx, &alice, Features::NONE).await?;
    let group = create_group(&mut me, 1, "the group", &[&bob]).await?;
    pause(20).await;
    // carol writes again, later; alice reads carol's conversation up to its head.
    let mut carols = connect(ctx, &carol, Features::NONE).await?;
    let carol_head = send(
        &mut carols,
        2,
        &direct_conversation(&alice, &carol),
        "again",
    )
    .await?;
    let mark = Mark {
        request: 2,
        conversation: direct_conversation(&alice, &carol).into(),
        marker: Marker::READ,
        seq: carol_head,
    };
    me.send(mark.into()).await?;
    me.answer(2).await?;
    pause(20).await;
    let mut bobs = connect(ctx, &bob, Features::NONE).await?;
    send(&mut bobs, 1, &direct_conversation(&alice, &bob), "one").await?;
    send(&mut bobs, 2, &direct_conversation(&alice, &bob), "two").await?;
    // alice's own message is not unread for her.
    send(&mut me, 3, &direct_conversation(&alice, &bob), "mine").await?;
    let expected = [
        (
            direct_conversation(&alice, &bob),
            ConversationKind::DIRECT,
            "",
            2,
        ),
        (
            direct_conversation(&alice, &carol),
            ConversationKind::DIRECT,
            "",
            0,
        ),
        (
            group.conversation.to_string(),
            ConversationKind::GROUP,
            "the group",
            0,
        ),
        (
            direct_conversation(&alice, &dave),
            ConversationKind::DIRECT,
            "",
            1,
        ),
    ];
    let summary = |list: &[Summary]| -> Vec<(String, ConversationKind, String, u64)> {
        list.iter()
            .map(|s| {
                (
                    s.conversation.to_string(),
                    s.kind,
                    s.title.to_string(),
                    s.unread,
                )
            })
            .collect()
    };
    let expected: Vec<(String, ConversationKind, String, u64)> = expected
        .iter()
        .map(|(c, k, t, u)| (c.clone(), *k, (*t).to_owned(), *u))
        .collect();
    for limit in [10, 1] {
        let list = list_all(&mut me, limit).await?;
        check(summary(&list) == expected, || {
            format!(
                "CONVERSATIONS by {limit}: {:?}, expected {expected:?}",
                summary(&list)
            )
        })?;
        let carol_entry = &list[1];
        check(
            carol_entry.read_seq == carol_head && carol_entry.last_seq == carol_head,
            || format!("carol's entry: {carol_entry:?}"),
        )?;
    }
    Ok(())
}

async fn conversations_limits(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let alice = ctx.user("alice");
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    // Groups with long titles: their list does not fit 4 KiB in one frame.
    let title = "t".repeat(250);
    let mut groups = BTreeSet::new();
    for request in 10..30 {
        let info = create_group(&mut conn, request, &title, &[]).await?;
        groups.insert(info.conversation.to_string());
    }
    let list = Conversations {
        request: 3,
        cursor: Bytes::new(),
        limit: 500,
    };
    conn.send(list.into()).await?;
    let Frame::ConversationList(page) = conn.answer(3).await? else {
        return Err(Failure::new("expected CONVERSATION_LIST"));
    };
    check(page.conversations.len() == groups.len(), || {
        format!(
            "limit 500 (reduced to 200) gave {} of {} conversations",
            page.conversations.len(),
            groups.len()
        )
    })?;
    let mut small = connect_small(ctx, &alice, Features::NONE).await?;
    let all = list_all(&mut small, 200).await?;
    let listed: BTreeSet<String> = all.iter().map(|s| s.conversation.to_string()).collect();
    check(listed == groups && all.len() == groups.len(), || {
        format!(
            "paging in 4 KiB frames listed {} entries: {listed:?}",
            all.len()
        )
    })?;
    let refused = [
        (1, Bytes::new(), 0, "limit 0"),
        (
            2,
            Bytes::from_static(b"not a cursor of yours"),
            10,
            "a foreign cursor",
        ),
    ];
    for (request, cursor, limit, what) in refused {
        let list = Conversations {
            request,
            cursor,
            limit,
        };
        conn.send(list.into()).await?;
        conn.answer_error(request, ErrorCode::INVALID_REQUEST)
            .await
            .map_err(|f| f.context(what))?;
    }
    Ok(())
}
