//! Conversation summaries at the home broker: what CONVERSATIONS lists, kept up to date by
//! FANOUT (last seq, unread) and by the user's own RECEIPTs (read pointer).

use bytes::{BufMut, Bytes, BytesMut};
use natter_codec::frame::{ConversationList, Conversations};
use natter_codec::ids::ConversationId;
use natter_codec::types::{ConversationKind, Event, EventKind, Summary};
use natter_codec::{ErrorCode, Text};

use super::{Client, Reject, Shard};
use crate::keys;
use crate::records;

/// Most conversations of one user that CONVERSATIONS sorts.
const MAX_CONVERSATIONS: usize = 10_000;
/// Most entries in one CONVERSATION_LIST.
const MAX_PAGE: u64 = 200;

impl Shard {
    /// Folds a new event into a user's summary of its conversation.
    pub(super) fn summarize(
        &mut self,
        user: &str,
        conversation: &Text,
        event: &Event,
    ) -> Result<(), Reject> {
        let key = keys::summary(user, conversation);
        let mut summary: Summary = self.store.record(&key)?.unwrap_or_else(|| Summary {
            conversation: conversation.clone(),
            kind: match ConversationId::parse(conversation) {
                Some(ConversationId::Group(_)) => ConversationKind::GROUP,
                _ => ConversationKind::DIRECT,
            },
            ..Summary::default()
        });
        if event.kind == EventKind::GROUP_CREATED {
            summary.title = Text::try_from(event.body.clone()).unwrap_or_default();
        }
        summary.last_seq = summary.last_seq.max(event.seq);
        summary.last_timestamp = summary.last_timestamp.max(event.timestamp);
        if event.kind == EventKind::MESSAGE
            && *event.sender != *user
            && event.seq > summary.read_seq
        {
            summary.unread += 1;
        }
        self.store.put_record(key, &summary);
        Ok(())
    }

    /// The user read up to `read`: unread shrinks by what lies before it.
    pub(super) fn summary_read(
        &mut self,
        user: &str,
        conversation: &Text,
        read: u64,
    ) -> Result<(), Reject> {
        let key = keys::summary(user, conversation);
        let Some(mut summary) = self.store.record::<Summary>(&key)? else {
            return Ok(());
        };
        if read <= summary.read_seq {
            return Ok(());
        }
        summary.read_seq = read;
        // Only the count is kept, not which seqs are unread: every message after the read
        // pointer may be unread, so the count is capped by that distance.
        summary.unread = summary.unread.min(summary.last_seq.saturating_sub(read));
        self.store.put_record(key, &summary);
        Ok(())
    }

    /// CONVERSATIONS: the user's summaries, most recently active first, paged by cursor.
    pub(super) fn conversations(
        &mut self,
        client: &Client,
        list: Conversations,
    ) -> Result<(), Reject> {
        self.check_home(&client.user)?;
        if list.limit == 0 {
            return Err(Reject::new(
                ErrorCode::INVALID_REQUEST,
                "limit must not be 0",
            ));
        }
        if !list.cursor.is_empty() && !is_cursor(&list.cursor) {
            // [NWP-6.3.3-1]
            return Err(Reject::new(
                ErrorCode::INVALID_REQUEST,
                "not a cursor this server made",
            ));
        }
        let (start, end) = keys::summaries(&client.user);
        let mut summaries = self
            .store
            .range((&start, &end), false, MAX_CONVERSATIONS)?
            .into_iter()
            .map(|(_, value)| records::decode::<Summary>(value))
            .collect::<Result<Vec<_>, _>>()?;
        summaries.sort_by(|a, b| order(b).cmp(&order(a)));
        let after = (!list.cursor.is_empty()).then(|| list.cursor.clone());
        let limit = list.limit.min(MAX_PAGE) as usize;
        let page: Vec<Summary> = summaries
            .into_iter()
            .filter(|s| after.as_ref().is_none_or(|cursor| cursor_of(s) < *cursor))
            .take(limit + 1)
            .collect();
        let next_cursor = if page.len() > limit {
            cursor_of(&page[limit - 1])
        } else {
            Bytes::new()
        };
        let conversations = page.into_iter().take(limit).collect();
        let answer = ConversationList {
            request: list.request,
            next_cursor,
            conversations,
        };
        self.answer(client, answer.into());
        Ok(())
    }
}

/// The sort key: newest first means descending timestamp, then descending id for ties.
fn order(summary: &Summary) -> (u64, &[u8]) {
    (summary.last_timestamp, summary.conversation.as_bytes())
}

/// Whether `cursor` has the shape [`cursor_of`] gives: a timestamp, then a conversation id.
fn is_cursor(cursor: &[u8]) -> bool {
    cursor.len() > 8
        && std::str::from_utf8(&cursor[8..])
            .is_ok_and(|id| natter_codec::ids::ConversationId::parse(id).is_some())
}

/// A cursor that sorts like [`order`]: big-endian timestamp, then the id.
fn cursor_of(summary: &Summary) -> Bytes {
    let mut cursor = BytesMut::with_capacity(8 + summary.conversation.len());
    cursor.put_u64(summary.last_timestamp);
    cursor.put_slice(summary.conversation.as_bytes());
    cursor.freeze()
}
