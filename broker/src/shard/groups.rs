//! Groups: creation at the creator's home broker, membership changes as log events, roles.

use bytes::Bytes;
use natter_codec::frame::{GroupCreate, GroupGet, GroupInfo, GroupUpdate};
use natter_codec::ids::{self, ConversationId, GROUP_PREFIX};
use natter_codec::types::{
    ConversationKind, Event, EventFlags, EventKind, GroupOp, Member, MemberChange, Role,
};
use natter_codec::{ErrorCode, Text};

use super::conversation::Conversation;
use super::{Client, Reject, Shard};
use crate::keys;
use crate::records::{self, ConvMeta, MemberRecord};

/// Attempts at a random group name this shard owns before giving up.
const NAME_ATTEMPTS: usize = 256;

impl Shard {
    /// Every member of a group with its record, former members included, or the two users
    /// of a direct conversation.
    pub(super) fn members(
        &self,
        conv: &Conversation,
    ) -> Result<Vec<(String, MemberRecord)>, Reject> {
        if let Some(ConversationId::Direct(low, high)) = ConversationId::parse(&conv.id) {
            let member = MemberRecord {
                role: Role::MEMBER,
                joined: 1,
                left: 0,
            };
            let mut users = vec![(low.to_string(), member.clone())];
            if high != low {
                users.push((high.to_string(), member));
            }
            return Ok(users);
        }
        let (start, end) = keys::members(&conv.id);
        // Former members stay listed; a group keeps at most a few times its limit of them.
        let rows = self
            .store
            .range((&start, &end), false, self.limits.group_members * 4 + 1)?;
        rows.into_iter()
            .map(|(key, value)| {
                let user = keys::member_user(&key).ok_or(records::Corrupt)?;
                Ok((user.to_string(), records::decode(value)?))
            })
            .collect()
    }

    /// The user ids of the current members.
    pub(super) fn member_ids(&self, conv: &Conversation) -> Result<Vec<String>, Reject> {
        Ok(self
            .members(conv)?
            .into_iter()
            .filter(|(_, member)| member.left == 0)
            .map(|(user, _)| user)
            .collect())
    }

    /// GROUP_CREATE at the creator's home broker: picks a name this broker owns and writes
    /// GROUP_CREATED and one MEMBER_ADDED per member.
    pub(super) fn group_create(
        &mut self,
        client: &Client,
        create: GroupCreate,
    ) -> Result<(), Reject> {
        self.check_home(&client.user)?;
        if create.title.len() > self.limits.title {
            return Err(Reject::new(ErrorCode::PAYLOAD_TOO_LARGE, "title too long"));
        }
        if create.title.contains('\0') {
            return Err(Reject::new(
                ErrorCode::INVALID_REQUEST,
                "title contains U+0000 (NWP-2.2-7)",
            ));
        }
        let mut members: Vec<Text> = vec![client.user.clone()];
        for user in create.members {
            if !ids::is_valid_user_id(&user) {
                return Err(Reject::new(ErrorCode::INVALID_REQUEST, "invalid member id"));
            }
            if !members.contains(&user) {
                members.push(user);
            }
        }
        if members.len() > self.limits.group_members {
            return Err(Reject::new(ErrorCode::LIMIT_EXCEEDED, "too many members"));
        }
        let id = self.group_name()?;
        let mut conv = Conversation {
            id,
            meta: ConvMeta {
                kind: ConversationKind::GROUP,
                head: 0,
                title: create.title.clone(),
                members: members.len() as u64,
            },
            role: Some(Role::OWNER),
        };
        let mut events = vec![self.append(
            &mut conv,
            self.server_event(
                client,
                EventKind::GROUP_CREATED,
                create.title.clone().into_bytes(),
            ),
        )];
        let mut info = Vec::with_capacity(members.len());
        for (index, user) in members.into_iter().enumerate() {
            let role = if index == 0 {
                Role::OWNER
            } else {
                Role::MEMBER
            };
            self.store.put_record(
                keys::member(&conv.id, &user),
                &MemberRecord {
                    role,
                    joined: 1,
                    left: 0,
                },
            );
            let change = MemberChange {
                user: user.clone(),
                role,
            };
            let event = self.server_event(client, EventKind::MEMBER_ADDED, body(&change)?);
            events.push(self.append(&mut conv, event));
            info.push(Member { user, role });
        }
        self.store
            .put_record(keys::conversation(&conv.id), &conv.meta);
        let answer = GroupInfo {
            request: create.request,
            conversation: conv.id.clone().into(),
            title: create.title,
            members: info,
        };
        self.answer(client, answer.into());
        for event in &events {
            self.fan_out(&conv, event)?;
        }
        Ok(())
    }

    /// A fresh `g/<random>` name that this shard owns and nobody uses yet.
    fn group_name(&mut self) -> Result<String, Reject> {
        for _ in 0..NAME_ATTEMPTS {
            let id = format!("{GROUP_PREFIX}{:016x}", self.random());
            if self.is_mine(self.ring.conversation_owner(&id))
                && self.store.get(&keys::conversation(&id))?.is_none()
            {
                return Ok(id);
            }
        }
        Err(Reject::new(
            ErrorCode::INTERNAL_ERROR,
            "no group name found",
        ))
    }

    /// An event the server writes on behalf of `client`.
    fn server_event(&self, client: &Client, kind: EventKind, body: Bytes) -> Event {
        Event {
            seq: 0,
            kind,
            target: 0,
            flags: EventFlags::NONE,
            timestamp: self.now,
            sender: client.user.clone(),
            // Server-made events name no device (`[NWP-4.1-3]`).
            device: "".into(),
            client_msg_id: 0,
            content_type: "".into(),
            body,
        }
    }

    /// GROUP_UPDATE: ADD and REMOVE by admins and owners (or oneself leaving), SET_ROLE by the
    /// owner; answered with the SEND_ACK of the membership event.
    pub(super) fn group_update(
        &mut self,
        client: &Client,
        update: GroupUpdate,
    ) -> Result<(), Reject> {
        let mut conv = self.access(&update.conversation, &client.user)?;
        if conv.meta.kind != ConversationKind::GROUP {
            return Err(Reject::new(ErrorCode::INVALID_REQUEST, "not a group"));
        }
        if !ids::is_valid_user_id(&update.user) {
            return Err(Reject::new(ErrorCode::INVALID_REQUEST, "invalid user id"));
        }
        let actor = conv.role.unwrap_or(Role::MEMBER);
        let manager = matches!(actor, Role::ADMIN | Role::OWNER);
        let member_key = keys::member(&conv.id, &update.user);
        let record: Option<MemberRecord> = self.store.record(&member_key)?;
        let current = record.clone().filter(|m| m.left == 0);
        let (kind, role) = match update.op {
            GroupOp::ADD => {
                if !manager {
                    return Err(Reject::new(ErrorCode::FORBIDDEN, "only admins add members"));
                }
                if !matches!(update.role, Role::MEMBER | Role::ADMIN) {
                    return Err(Reject::new(
                        ErrorCode::INVALID_REQUEST,
                        "members join as MEMBER or ADMIN",
                    ));
                }
                if current.is_some() {
                    return Err(Reject::new(ErrorCode::CONFLICT, "already a member"));
                }
                if conv.meta.members as usize >= self.limits.group_members {
                    return Err(Reject::new(ErrorCode::LIMIT_EXCEEDED, "group is full"));
                }
                conv.meta.members += 1;
                (EventKind::MEMBER_ADDED, update.role)
            }
            GroupOp::REMOVE => {
                let target =
                    current.ok_or_else(|| Reject::new(ErrorCode::CONFLICT, "not a member"))?;
                if target.role == Role::OWNER {
                    return Err(Reject::new(
                        ErrorCode::FORBIDDEN,
                        "nobody removes the owner",
                    ));
                }
                if !manager && update.user != client.user {
                    return Err(Reject::new(
                        ErrorCode::FORBIDDEN,
                        "only admins remove others",
                    ));
                }
                conv.meta.members = conv.meta.members.saturating_sub(1);
                (EventKind::MEMBER_REMOVED, target.role)
            }
            GroupOp::SET_ROLE => {
                let target =
                    current.ok_or_else(|| Reject::new(ErrorCode::CONFLICT, "not a member"))?;
                if actor != Role::OWNER {
                    return Err(Reject::new(
                        ErrorCode::FORBIDDEN,
                        "only the owner sets roles",
                    ));
                }
                if target.role == Role::OWNER || !matches!(update.role, Role::MEMBER | Role::ADMIN)
                {
                    return Err(Reject::new(
                        ErrorCode::INVALID_REQUEST,
                        "roles are MEMBER or ADMIN",
                    ));
                }
                (EventKind::ROLE_CHANGED, update.role)
            }
            _ => return Err(Reject::new(ErrorCode::INVALID_REQUEST, "unknown group op")),
        };
        let change = MemberChange {
            user: update.user.clone(),
            role,
        };
        let event = self.server_event(client, kind, body(&change)?);
        let event = self.append(&mut conv, event);
        let joined = match (kind, &record) {
            (EventKind::MEMBER_ADDED, _) | (_, None) => event.seq,
            (_, Some(record)) => record.joined,
        };
        let left = if kind == EventKind::MEMBER_REMOVED {
            let members = self.member_ids(&conv)?;
            self.membership_ended(&conv.id, &update.user, members);
            event.seq
        } else {
            0
        };
        self.store
            .put_record(member_key, &MemberRecord { role, joined, left });
        self.appended(client, update.request, &conv, &event)
    }

    /// GROUP_GET: title and members, for members.
    pub(super) fn group_get(&mut self, client: &Client, get: GroupGet) -> Result<(), Reject> {
        let conv = self.access(&get.conversation, &client.user)?;
        if conv.meta.kind != ConversationKind::GROUP {
            return Err(Reject::new(ErrorCode::INVALID_REQUEST, "not a group"));
        }
        let members = self
            .members(&conv)?
            .into_iter()
            .filter(|(_, record)| record.left == 0)
            .map(|(user, record)| Member {
                user: user.into(),
                role: record.role,
            })
            .collect();
        let info = GroupInfo {
            request: get.request,
            conversation: get.conversation,
            title: conv.meta.title.clone(),
            members,
        };
        self.answer(client, info.into());
        Ok(())
    }
}

fn body(change: &MemberChange) -> Result<Bytes, Reject> {
    change
        .to_body()
        .map_err(|_| Reject::new(ErrorCode::INTERNAL_ERROR, "unencodable member change"))
}
