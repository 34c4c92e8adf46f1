//! The resume cursor: how far this device has read, kept across restarts by the application.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// How far a device has processed its inbox and each conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The last inbox_seq processed; `None` for a new device, which starts at the server's
    /// inbox head instead of replaying the whole inbox.
    pub inbox: Option<u64>,
    /// The last contiguous seq delivered per conversation, the start of a history repair.
    pub conversations: BTreeMap<String, u64>,
}

/// Where the client keeps its [`Cursor`] between runs.
///
/// `save` is called from the connection task after each coalesced ACK, so it should be
/// quick (a small file write, a database row). An implementation that fails to save simply
/// resumes from an older cursor next time; the session deduplicates what it sees again.
pub trait CursorStore: Send + Sync + 'static {
    /// The cursor saved last, or the default for a new device.
    fn load(&self) -> Cursor;
    /// Saves the cursor.
    fn save(&self, cursor: &Cursor);
}

/// A [`CursorStore`] in memory: the cursor survives reconnects but not the process.
///
/// Clones share the same cursor, so a test or an application can read what was saved.
#[derive(Debug, Clone, Default)]
pub struct MemoryCursorStore {
    cursor: Arc<Mutex<Cursor>>,
}

impl MemoryCursorStore {
    /// A store that starts from `cursor`.
    pub fn new(cursor: Cursor) -> Self {
        Self {
            cursor: Arc::new(Mutex::new(cursor)),
        }
    }
}

impl CursorStore for MemoryCursorStore {
    fn load(&self) -> Cursor {
        self.cursor
            .lock()
            .map(|cursor| cursor.clone())
            .unwrap_or_default()
    }

    fn save(&self, cursor: &Cursor) {
        if let Ok(mut saved) = self.cursor.lock() {
            saved.clone_from(cursor);
        }
    }
}
