//! Receipts at the conversation owner: delivered and read pointers per (conversation, user),
//! monotonic, pushed to every member's sessions.

use natter_codec::frame::{Done, Mark, Receipt};
use natter_codec::types::Marker;
use natter_codec::{ErrorCode, Frame};

use super::conversation::Conversation;
use super::{Client, Reject, Shard};
use crate::keys;
use crate::records::ReceiptRecord;

impl Shard {
    /// MARK from a client: move a pointer, answer DONE.
    pub(super) fn mark(&mut self, client: &Client, mark: Mark) -> Result<(), Reject> {
        self.apply_mark(&client.user, &mark.conversation, mark.marker, mark.seq)?;
        self.answer(
            client,
            Done {
                request: mark.request,
            }
            .into(),
        );
        Ok(())
    }

    /// Moves `user`'s pointer forward (a lower seq changes nothing; read implies delivered)
    /// and pushes the RECEIPT to every member when it moved.
    pub(super) fn apply_mark(
        &mut self,
        user: &str,
        conversation: &str,
        marker: Marker,
        seq: u64,
    ) -> Result<(), Reject> {
        if !matches!(marker, Marker::DELIVERED | Marker::READ) {
            return Err(Reject::new(ErrorCode::INVALID_REQUEST, "unknown marker"));
        }
        let conv = self.access(conversation, user)?;
        let seq = seq.min(conv.meta.head);
        let key = keys::receipt(&conv.id, user);
        let old: ReceiptRecord = self.store.record(&key)?.unwrap_or_default();
        let mut new = old.clone();
        if marker == Marker::READ {
            new.read = new.read.max(seq);
        }
        new.delivered = new.delivered.max(seq);
        if new == old {
            return Ok(());
        }
        self.store.put_record(key, &new);
        let receipt: Frame = Receipt {
            conversation: conversation.into(),
            user: user.into(),
            delivered: new.delivered,
            read: new.read,
        }
        .into();
        let members = self.member_ids(&conv)?;
        self.push_to_members(members, &receipt);
        Ok(())
    }

    /// Sends `client` every member's stored pointers, for a client opening a conversation
    /// ([NWP-7.4-4]): without them, ticks on a freshly loaded page would wait for the next
    /// change. Groups too large to fan out on write get none, which bounds the frames sent.
    pub(super) fn send_receipts(
        &mut self,
        client: &Client,
        conv: &Conversation,
    ) -> Result<(), Reject> {
        let members = self.member_ids(conv)?;
        if members.len() > self.limits.fanout_threshold {
            return Ok(());
        }
        for user in members {
            let stored: Option<ReceiptRecord> =
                self.store.record(&keys::receipt(&conv.id, &user))?;
            if let Some(stored) = stored {
                let receipt = Receipt {
                    conversation: conv.id.as_str().into(),
                    user: user.into(),
                    delivered: stored.delivered,
                    read: stored.read,
                };
                self.answer(client, receipt.into());
            }
        }
        Ok(())
    }
}
