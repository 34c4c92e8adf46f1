//! Offline push: an inbox entry for a user with no session becomes a persisted notification,
//! coalesced per user and posted to the webhook with retries and backoff until it succeeds.

use std::collections::{BTreeMap, HashMap};

use natter_codec::Text;
use serde_json::json;

use super::{Held, Millis, Reject, Shard, Store};
use crate::keys;
use crate::records::Notification;
use crate::storage::StorageError;

/// Most webhook posts in flight at once.
const MAX_IN_FLIGHT: usize = 16;
/// The longest wait between retries.
const MAX_BACKOFF_MS: Millis = 5 * 60 * 1000;

/// A post in flight.
#[derive(Debug)]
struct Post {
    user: String,
    /// The newest inbox_seq and the entry count it covered.
    inbox_seq: u64,
    count: u64,
    failures: u32,
}

#[derive(Debug, Clone, Copy)]
struct Attempt {
    at: Millis,
    failures: u32,
}

/// Users with a notification to post, and the posts in flight.
#[derive(Debug, Default)]
pub(super) struct Notifier {
    due: BTreeMap<String, Attempt>,
    in_flight: HashMap<u64, Post>,
    next_id: u64,
}

impl Notifier {
    /// Schedules every notification a previous run left unposted.
    pub(super) fn load(store: &Store, now: Millis, enabled: bool) -> Result<Self, StorageError> {
        let mut notifier = Self::default();
        if !enabled {
            return Ok(notifier);
        }
        let (start, end) = keys::notifications();
        for (key, _) in store.range((&start, &end), false, usize::MAX)? {
            if let Some(user) = keys::notification_user(&key) {
                notifier.due.insert(
                    user.to_string(),
                    Attempt {
                        at: now,
                        failures: 0,
                    },
                );
            }
        }
        Ok(notifier)
    }

    fn is_pending(&self, user: &str) -> bool {
        self.due.contains_key(user) || self.in_flight.values().any(|post| post.user == user)
    }
}

impl Shard {
    /// Records a new inbox entry for a user with no session.
    pub(super) fn notify_offline(
        &mut self,
        user: &str,
        conversation: &Text,
        seq: u64,
        inbox_seq: u64,
    ) -> Result<(), Reject> {
        if !self.webhooks {
            return Ok(());
        }
        let key = keys::notification(user);
        let mut notification: Notification = self.store.record(&key)?.unwrap_or_default();
        notification.count += 1;
        notification.conversation = conversation.clone();
        notification.seq = seq;
        notification.inbox_seq = inbox_seq;
        self.store.put_record(key, &notification);
        if !self.notify.is_pending(user) {
            self.notify.due.insert(
                user.to_string(),
                Attempt {
                    at: self.now,
                    failures: 0,
                },
            );
        }
        Ok(())
    }

    /// Starts the posts that are due, up to the in-flight limit.
    pub(super) fn poll_webhooks(&mut self) {
        let now = self.now;
        let ready: Vec<(String, Attempt)> = self
            .notify
            .due
            .iter()
            .filter(|(_, attempt)| attempt.at <= now)
            .take(MAX_IN_FLIGHT.saturating_sub(self.notify.in_flight.len()))
            .map(|(user, attempt)| (user.clone(), *attempt))
            .collect();
        for (user, attempt) in ready {
            self.notify.due.remove(&user);
            let notification = match self
                .store
                .record::<Notification>(&keys::notification(&user))
            {
                Ok(Some(notification)) => notification,
                Ok(None) => continue,
                Err(error) => {
                    tracing::error!(?error, user, "notification unreadable");
                    continue;
                }
            };
            let body = json!({
                "user": user,
                "count": notification.count,
                "conversation": notification.conversation.to_string(),
                "seq": notification.seq,
                "inbox_seq": notification.inbox_seq,
            })
            .to_string();
            self.notify.next_id += 1;
            let id = self.notify.next_id;
            let post = Post {
                user,
                inbox_seq: notification.inbox_seq,
                count: notification.count,
                failures: attempt.failures,
            };
            self.notify.in_flight.insert(id, post);
            self.staged.push(Held::Webhook { id, body });
        }
    }

    /// A post finished: forget what it covered, or retry later.
    pub(super) fn webhook_done(&mut self, id: u64, delivered: bool) {
        let Some(Post {
            user,
            inbox_seq,
            count,
            failures,
        }) = self.notify.in_flight.remove(&id)
        else {
            return;
        };
        if !delivered {
            let backoff = (1_000u64 << failures.min(20)).min(MAX_BACKOFF_MS);
            let attempt = Attempt {
                at: self.now + backoff,
                failures: failures + 1,
            };
            self.notify.due.insert(user, attempt);
            return;
        }
        let key = keys::notification(&user);
        match self.store.record::<Notification>(&key) {
            Ok(Some(current)) if current.inbox_seq != inbox_seq => {
                // More entries arrived while posting: they get a post of their own.
                let rest = Notification {
                    count: current.count.saturating_sub(count),
                    ..current
                };
                self.store.put_record(key, &rest);
                self.notify.due.insert(
                    user,
                    Attempt {
                        at: self.now,
                        failures: 0,
                    },
                );
            }
            Ok(_) => self.store.delete(key),
            Err(error) => tracing::error!(?error, user, "notification unreadable"),
        }
    }
}
