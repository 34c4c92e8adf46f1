//! Groups: spec 6.4 and 7.7, and what membership allows (7.5-4, 8.2-1).

use std::collections::BTreeSet;

use natter_codec::frame::{GroupCreate, GroupGet};
use natter_codec::ids::{ConversationId, direct_conversation};
use natter_codec::types::{Direction, EventKind, Features, GroupOp, MemberChange, Role};
use natter_codec::{ErrorCode, Frame};

use super::{
    check, connect, connect_small, create_group, delivered, history, live, message, refuse_update,
    scenarios, send, update_group,
};
use crate::{Ctx, Failure};

scenarios! {
    "groups" ["NWP-7.7-1", "NWP-7.7-2", "NWP-7.5-4"] => groups,
    "group-rule-errors" ["NWP-7.7-4"] => group_rule_errors,
    "removed-member-loses-access" ["NWP-7.5-4", "NWP-8.2-1"] => removed_member,
    "group-ids-unguessable" ["NWP-7.7-5"] => group_ids,
    "group-member-limit" ["NWP-7.7-3"] => member_limit,
    "group-info-too-large" ["NWP-7.12-3"] => group_info_too_large,
}

async fn groups(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob, carol, dave) = (
        ctx.user("alice"),
        ctx.user("bob"),
        ctx.user("carol"),
        ctx.user("dave"),
    );
    let mut owner = connect(ctx, &alice, Features::NONE).await?;
    let info = create_group(&mut owner, 1, "crew", &[&bob, &bob, &alice]).await?;
    let role = |user: &str| {
        info.members
            .iter()
            .find(|m| *m.user == *user)
            .map(|m| m.role)
    };
    check(
        info.members.len() == 2
            && role(&alice) == Some(Role::OWNER)
            && role(&bob) == Some(Role::MEMBER)
            && *info.title == *"crew",
        || format!("GROUP_INFO after creation: {info:?}"),
    )?;
    let group = info.conversation.to_string();
    // The log starts with GROUP_CREATED, then the owner, then the members.
    let page = history(&mut owner, 2, &group, 0, Direction::FORWARD, 10).await?;
    type Change = (u64, EventKind, Option<(String, Role)>);
    let changes: Vec<Change> = page
        .events
        .iter()
        .map(|e| {
            let change = MemberChange::from_body(e.body.clone())
                .ok()
                .map(|c| (c.user.to_string(), c.role));
            (
                e.seq,
                e.kind,
                change.filter(|_| e.kind != EventKind::GROUP_CREATED),
            )
        })
        .collect();
    let expected = vec![
        (1, EventKind::GROUP_CREATED, None),
        (
            2,
            EventKind::MEMBER_ADDED,
            Some((alice.clone(), Role::OWNER)),
        ),
        (
            3,
            EventKind::MEMBER_ADDED,
            Some((bob.clone(), Role::MEMBER)),
        ),
    ];
    check(changes == expected, || {
        format!("the group's log starts {changes:?}, expected {expected:?}")
    })?;
    check(page.events[0].body == b"crew"[..], || {
        format!("GROUP_CREATED body {:?}", page.events[0].body)
    })?;
    // A MEMBER cannot add; the OWNER can, and can make an ADMIN, who can add and remove.
    let mut member = connect(ctx, &bob, Features::NONE).await?;
    refuse_update(
        &mut member,
        1,
        (&group, GroupOp::ADD, &carol, Role::MEMBER),
        ErrorCode::FORBIDDEN,
    )
    .await?;
    update_group(&mut owner, 3, &group, GroupOp::ADD, &carol, Role::MEMBER).await?;
    update_group(&mut owner, 4, &group, GroupOp::SET_ROLE, &bob, Role::ADMIN).await?;
    update_group(&mut member, 2, &group, GroupOp::ADD, &dave, Role::MEMBER).await?;
    update_group(&mut member, 3, &group, GroupOp::REMOVE, &dave, Role::MEMBER).await?;
    // A new member reads the whole history, from before it joined, and writes.
    let mut newcomer = connect(ctx, &carol, Features::NONE).await?;
    send(&mut newcomer, 1, &group, "thanks").await?;
    let page = history(&mut newcomer, 2, &group, 0, Direction::FORWARD, 1).await?;
    check(
        page.events.first().map(|e| (e.seq, e.kind)) == Some((1, EventKind::GROUP_CREATED)),
        || format!("a new member's first event {:?}", page.events.first()),
    )?;
    // A member leaves by removing itself.
    update_group(
        &mut newcomer,
        3,
        &group,
        GroupOp::REMOVE,
        &carol,
        Role::MEMBER,
    )
    .await?;
    owner
        .send(
            GroupGet {
                request: 5,
                conversation: group.as_str().into(),
            }
            .into(),
        )
        .await?;
    let Frame::GroupInfo(info) = owner.answer(5).await? else {
        return Err(Failure::new("expected GROUP_INFO"));
    };
    let members: Vec<(String, Role)> = info
        .members
        .iter()
        .map(|m| (m.user.to_string(), m.role))
        .collect();
    check(
        members.len() == 2
            && members.contains(&(alice.clone(), Role::OWNER))
            && members.contains(&(bob.clone(), Role::ADMIN)),
        || format!("members at the end: {members:?}"),
    )
}

async fn group_rule_errors(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob, carol, dave) = (
        ctx.user("alice"),
        ctx.user("bob"),
        ctx.user("carol"),
        ctx.user("dave"),
    );
    let mut owner = connect(ctx, &alice, Features::NONE).await?;
    let group = create_group(&mut owner, 1, "rules", &[&bob, &carol])
        .await?
        .conversation
        .to_string();
    update_group(&mut owner, 2, &group, GroupOp::SET_ROLE, &bob, Role::ADMIN).await?;
    let admin = connect(ctx, &bob, Features::NONE).await?;
    let member = connect(ctx, &carol, Features::NONE).await?;
    let outsider = connect(ctx, &dave, Features::NONE).await?;
    let mut conns = [owner, admin, member, outsider];
    let (owner, admin, member, outsider) = (0, 1, 2, 3);
    let direct = direct_conversation(&alice, &bob);
    let g = group.as_str();
    let cases = [
        (
            owner,
            (g, GroupOp::SET_ROLE, bob.as_str(), Role::OWNER),
            ErrorCode::INVALID_REQUEST,
        ),
        (
            owner,
            (g, GroupOp::REMOVE, alice.as_str(), Role::MEMBER),
            ErrorCode::FORBIDDEN,
        ),
        (
            owner,
            (g, GroupOp(9), dave.as_str(), Role::MEMBER),
            ErrorCode::INVALID_REQUEST,
        ),
        (
            owner,
            (g, GroupOp::ADD, dave.as_str(), Role(9)),
            ErrorCode::INVALID_REQUEST,
        ),
        (
            owner,
            (g, GroupOp::ADD, bob.as_str(), Role::MEMBER),
            ErrorCode::CONFLICT,
        ),
        (
            owner,
            (g, GroupOp::REMOVE, dave.as_str(), Role::MEMBER),
            ErrorCode::CONFLICT,
        ),
        (
            owner,
            (direct.as_str(), GroupOp::ADD, dave.as_str(), Role::MEMBER),
            ErrorCode::INVALID_REQUEST,
        ),
        (
            admin,
            (g, GroupOp::REMOVE, alice.as_str(), Role::MEMBER),
            ErrorCode::FORBIDDEN,
        ),
        (
            admin,
            (g, GroupOp::SET_ROLE, carol.as_str(), Role::ADMIN),
            ErrorCode::FORBIDDEN,
        ),
        (
            member,
            (g, GroupOp::ADD, dave.as_str(), Role::MEMBER),
            ErrorCode::FORBIDDEN,
        ),
        (
            member,
            (g, GroupOp::REMOVE, bob.as_str(), Role::MEMBER),
            ErrorCode::FORBIDDEN,
        ),
        (
            member,
            (g, GroupOp::SET_ROLE, carol.as_str(), Role::ADMIN),
            ErrorCode::FORBIDDEN,
        ),
        (
            outsider,
            (g, GroupOp::ADD, dave.as_str(), Role::MEMBER),
            ErrorCode::NOT_FOUND,
        ),
    ];
    let mut request = 100;
    for (who, update, code) in cases {
        request += 1;
        refuse_update(&mut conns[who], request, update, code).await?;
    }
    // What the rules allow still works: an admin adds and removes a member.
    update_group(&mut conns[admin], 200, g, GroupOp::ADD, &dave, Role::MEMBER).await?;
    update_group(
        &mut conns[admin],
        201,
        g,
        GroupOp::REMOVE,
        &dave,
        Role::MEMBER,
    )
    .await
    .map(drop)
}

async fn removed_member(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let mut owner = connect(ctx, &alice, Features::NONE).await?;
    let group = create_group(&mut owner, 1, "crew", &[&bob])
        .await?
        .conversation
        .to_string();
    send(&mut owner, 2, &group, "before").await?;
    let mut member = live(ctx, &bob, Features::NONE).await?;
    let removed = update_group(&mut owner, 3, &group, GroupOp::REMOVE, &bob, Role::MEMBER).await?;
    // The removed member is told, like every member.
    delivered(&mut member, &group, removed).await?;
    let history = natter_codec::frame::History {
        request: 1,
        conversation: group.as_str().into(),
        anchor: 0,
        direction: Direction::BACKWARD,
        limit: 10,
    };
    member.send(history.into()).await?;
    member
        .answer_error(1, ErrorCode::NOT_FOUND)
        .await
        .map_err(|f| f.context("HISTORY by a removed member"))?;
    member.send(message(2, &group, 2, b"still here?")).await?;
    member
        .answer_error(2, ErrorCode::NOT_FOUND)
        .await
        .map_err(|f| f.context("SEND by a removed member"))?;
    member
        .send(
            GroupGet {
                request: 3,
                conversation: group.as_str().into(),
            }
            .into(),
        )
        .await?;
    member
        .answer_error(3, ErrorCode::NOT_FOUND)
        .await
        .map_err(|f| f.context("GROUP_GET by a removed member"))
        .map(drop)
}

async fn group_ids(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut conn = connect(ctx, &ctx.user("alice"), Features::NONE).await?;
    let mut names = Vec::new();
    for request in 1..=4 {
        let info = create_group(&mut conn, request, "id check", &[]).await?;
        let id = info.conversation.to_string();
        let Some(ConversationId::Group(name)) = ConversationId::parse(&id) else {
            return Err(Failure::new(format!("{id:?} is not a group id")));
        };
        // An upper bound on the entropy of a name, from the alphabet it could be drawn from.
        let bits_per_char = if name.bytes().all(|b| b.is_ascii_hexdigit()) {
            4.0
        } else if name.bytes().all(|b| b.is_ascii_alphanumeric()) {
            62f64.log2()
        } else {
            64f64.log2()
        };
        let bits = bits_per_char * name.len() as f64;
        check(bits >= 64.0, || {
            format!("group id {id:?} can carry at most {bits:.0} bits, not 64")
        })?;
        names.push(name.to_owned());
    }
    let distinct: BTreeSet<&String> = names.iter().collect();
    check(distinct.len() == names.len(), || {
        format!("group ids repeat: {names:?}")
    })?;
    // Consecutive numbers are guessable whatever their length.
    let numbers: Vec<Option<u128>> = names
        .iter()
        .map(|n| u128::from_str_radix(n, 16).ok())
        .collect();
    let sequential = numbers
        .windows(2)
        .all(|w| matches!(w, [Some(a), Some(b)] if b.abs_diff(*a) < 1_000));
    check(!sequential, || {
        format!("group ids follow each other: {names:?}")
    })
}

async fn member_limit(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut conn = connect(ctx, &ctx.user("alice"), Features::NONE).await?;
    let members: Vec<String> = (0..5_001).map(|i| format!("u{i}")).collect();
    let create = GroupCreate {
        request: 1,
        title: "too many".into(),
        members: members.iter().map(|m| m.as_str().into()).collect(),
    };
    conn.send(create.into()).await?;
    conn.answer_error(1, ErrorCode::LIMIT_EXCEEDED)
        .await
        .map(drop)
}

async fn group_info_too_large(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let alice = ctx.user("alice");
    let mut owner = connect(ctx, &alice, Features::NONE).await?;
    // 75 members with ids of 59 bytes: about 4.6 KB of GROUP_INFO.
    let members: Vec<String> = (0..75)
        .map(|i| {
            ctx.user(&format!(
                "member-with-a-long-name-for-a-large-group-info-{i:03}"
            ))
        })
        .collect();
    let names: Vec<&str> = members.iter().map(String::as_str).collect();
    let group = create_group(&mut owner, 1, "big", &names)
        .await?
        .conversation
        .to_string();
    let mut small = connect_small(ctx, &alice, Features::NONE).await?;
    small
        .send(
            GroupGet {
                request: 1,
                conversation: group.as_str().into(),
            }
            .into(),
        )
        .await?;
    small
        .answer_error(1, ErrorCode::LIMIT_EXCEEDED)
        .await
        .map_err(|f| f.context("GROUP_GET of a group whose GROUP_INFO exceeds 4 KiB"))?;
    // Small answers still come.
    send(&mut small, 2, &group, "hi").await.map(drop)
}
