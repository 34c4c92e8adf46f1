//! The storage test suite, run against every backend, and the group committer's tests.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tempfile::TempDir;

use super::*;

/// What the suite needs from a backend besides [`Storage`].
trait TestBackend: Storage + Sized {
    fn open(dir: &Path) -> Self;
    /// The store as a restarted process finds it.
    fn reopen(self, dir: &Path) -> Self;
    /// Writes `record` without sealing it.
    fn put_raw(&self, key: &[u8], record: &[u8]);
}

impl TestBackend for MemoryStorage {
    fn open(_: &Path) -> Self {
        MemoryStorage::new()
    }
    fn reopen(self, _: &Path) -> Self {
        self.crash_copy()
    }
    fn put_raw(&self, key: &[u8], record: &[u8]) {
        MemoryStorage::put_raw(self, key, record);
    }
}

impl TestBackend for SledStorage {
    fn open(dir: &Path) -> Self {
        SledStorage::open(dir).expect("open sled")
    }
    fn reopen(self, dir: &Path) -> Self {
        drop(self);
        // sled's flusher thread lets go of the database's file lock a moment after the last
        // handle drops; on a loaded machine the reopen can come first.
        for _ in 0..100 {
            match SledStorage::open(dir) {
                Ok(storage) => return storage,
                Err(error) if error.to_string().contains("could not acquire lock") => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(error) => panic!("open sled: {error}"),
            }
        }
        <Self as TestBackend>::open(dir)
    }
    fn put_raw(&self, key: &[u8], record: &[u8]) {
        SledStorage::put_raw(self, key, record).expect("raw put");
    }
}

impl TestBackend for RedbStorage {
    fn open(dir: &Path) -> Self {
        RedbStorage::open(dir).expect("open redb")
    }
    fn reopen(self, dir: &Path) -> Self {
        drop(self);
        <Self as TestBackend>::open(dir)
    }
    fn put_raw(&self, key: &[u8], record: &[u8]) {
        RedbStorage::put_raw(self, key, record).expect("raw put");
    }
}

fn batch(ops: &[(&[u8], Option<&[u8]>)]) -> Batch {
    let mut batch = Batch::default();
    for (key, value) in ops {
        match value {
            Some(value) => batch.put(*key, *value),
            None => batch.delete(*key),
        }
    }
    batch
}

fn get<S: Storage>(storage: &S, key: &[u8]) -> Option<Vec<u8>> {
    storage.get(key).expect("get").map(|value| value.to_vec())
}

fn entries(found: Vec<(Bytes, Bytes)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    found
        .into_iter()
        .map(|(key, value)| (key.to_vec(), value.to_vec()))
        .collect()
}

fn put_get_delete<S: TestBackend>() {
    let dir = TempDir::new().expect("tempdir");
    let storage = S::open(dir.path());
    assert_eq!(get(&storage, b"a"), None);
    storage.commit(&[]).expect("empty commit");
    storage.commit(&[Batch::default()]).expect("empty batch");
    storage
        .commit(&[batch(&[(b"a", Some(b"1")), (b"b", Some(b""))])])
        .expect("commit");
    assert_eq!(get(&storage, b"a"), Some(b"1".to_vec()));
    assert_eq!(get(&storage, b"b"), Some(Vec::new()));
    storage
        .commit(&[batch(&[
            (b"a", Some(b"2")),
            (b"b", None),
            (b"absent", None),
        ])])
        .expect("commit");
    assert_eq!(get(&storage, b"a"), Some(b"2".to_vec()));
    assert_eq!(get(&storage, b"b"), None);
}

fn batches_apply_in_order<S: TestBackend>() {
    let dir = TempDir::new().expect("tempdir");
    let storage = S::open(dir.path());
    storage
        .commit(&[
            batch(&[
                (b"k", Some(b"1")),
                (b"k", Some(b"2")),
                (b"gone", Some(b"x")),
                (b"gone", None),
            ]),
            batch(&[(b"k", Some(b"3")), (b"back", None), (b"back", Some(b"y"))]),
        ])
        .expect("commit");
    assert_eq!(get(&storage, b"k"), Some(b"3".to_vec()));
    assert_eq!(get(&storage, b"gone"), None);
    assert_eq!(get(&storage, b"back"), Some(b"y".to_vec()));
}

fn ranges_are_ordered_and_bounded<S: TestBackend>() {
    let dir = TempDir::new().expect("tempdir");
    let storage = S::open(dir.path());
    let mut writes = Batch::default();
    writes.put(*b"a", *b"before");
    for i in 0..20u8 {
        writes.put([b'k', i], [i]);
    }
    writes.put(*b"l", *b"after");
    storage.commit(&[writes]).expect("commit");
    let range = |start: &[u8], end: &[u8], reverse, limit| {
        let found = storage.range(start, end, reverse, limit).expect("range");
        found
            .iter()
            .map(|(key, value)| (key[1], value[0]))
            .collect::<Vec<_>>()
    };
    let all: Vec<_> = (0..20).map(|i| (i, i)).collect();
    assert_eq!(range(b"k", b"l", false, usize::MAX), all);
    assert_eq!(range(b"k", b"l", false, 5), all[..5]);
    let descending: Vec<_> = all.iter().rev().copied().collect();
    assert_eq!(range(b"k", b"l", true, usize::MAX), descending);
    assert_eq!(range(b"k", b"l", true, 3), descending[..3]);
    // `start` is included, `end` excluded, in both directions.
    assert_eq!(
        range(&[b'k', 5], &[b'k', 8], false, 10),
        [(5, 5), (6, 6), (7, 7)]
    );
    assert_eq!(range(&[b'k', 5], &[b'k', 8], true, 2), [(7, 7), (6, 6)]);
    // Bounds need not be stored keys.
    assert_eq!(
        range(&[b'k', 4, 0], &[b'k', 6, 0], false, 10),
        [(5, 5), (6, 6)]
    );
    assert!(range(b"k", b"l", false, 0).is_empty());
    assert!(range(&[b'k', 5], &[b'k', 5], false, 10).is_empty());
    assert!(range(&[b'k', 9], &[b'k', 5], true, 10).is_empty());
    assert!(range(b"m", b"z", false, 10).is_empty());
    let outside = storage.range(b"", b"k", false, 10).expect("range");
    assert_eq!(entries(outside), [(b"a".to_vec(), b"before".to_vec())]);
}

fn reopen_keeps_committed_data<S: TestBackend>() {
    let dir = TempDir::new().expect("tempdir");
    let storage = S::open(dir.path());
    storage
        .commit(&[batch(&[(b"a", Some(b"1")), (b"b", Some(b"2"))])])
        .expect("commit");
    storage
        .commit(&[batch(&[(b"b", None), (b"c", Some(b"3"))])])
        .expect("commit");
    let storage = storage.reopen(dir.path());
    let found = storage.range(b"", b"z", false, 10).expect("range");
    assert_eq!(
        entries(found),
        [
            (b"a".to_vec(), b"1".to_vec()),
            (b"c".to_vec(), b"3".to_vec())
        ]
    );
    storage
        .commit(&[batch(&[(b"d", Some(b"4"))])])
        .expect("commit after reopen");
    let storage = storage.reopen(dir.path());
    assert_eq!(get(&storage, b"d"), Some(b"4".to_vec()));
}

fn corrupt_records_are_reported<S: TestBackend>() {
    let flipped = {
        let mut record = checksum::seal(b"b", b"value");
        record[1] ^= 0x40;
        record
    };
    let bad_records = [
        flipped,
        checksum::seal(b"other key", b"value"),
        b"ab".to_vec(),
    ];
    for record in bad_records {
        let dir = TempDir::new().expect("tempdir");
        let storage = S::open(dir.path());
        storage
            .commit(&[batch(&[
                (b"a", Some(b"1")),
                (b"b", Some(b"2")),
                (b"c", Some(b"3")),
            ])])
            .expect("commit");
        storage.put_raw(b"b", &record);
        let corrupt = StorageError::Corrupt { key: b"b".to_vec() };
        assert_eq!(storage.get(b"b"), Err(corrupt.clone()));
        assert_eq!(storage.range(b"a", b"z", false, 10), Err(corrupt.clone()));
        assert_eq!(storage.range(b"a", b"z", true, 10), Err(corrupt));
        // Nothing else is affected.
        assert_eq!(get(&storage, b"a"), Some(b"1".to_vec()));
        let around = storage.range(b"c", b"z", false, 10).expect("range");
        assert_eq!(entries(around), [(b"c".to_vec(), b"3".to_vec())]);
        assert_eq!(
            storage.range(b"a", b"z", false, 1).map(entries),
            Ok(vec![(b"a".to_vec(), b"1".to_vec())])
        );
    }
}

#[derive(Debug, Clone)]
enum Action {
    Commit(Vec<Batch>),
    Get(Vec<u8>),
    Range(Vec<u8>, Vec<u8>, bool, usize),
    Reopen,
}

fn action() -> impl Strategy<Value = Action> {
    // Short keys over a tiny alphabet, so prefixes, collisions and empty keys are common.
    let key = || prop::collection::vec(0u8..3, 0..3);
    let value = prop::collection::vec(any::<u8>(), 0..6);
    let op = prop_oneof![
        (key(), value).prop_map(|(key, value)| Op::Put(key, value)),
        key().prop_map(Op::Delete),
    ];
    let batch = prop::collection::vec(op, 0..4).prop_map(|ops| Batch { ops });
    let batches = prop::collection::vec(batch, 0..3);
    prop_oneof![
        8 => batches.prop_map(Action::Commit),
        4 => key().prop_map(Action::Get),
        7 => (key(), key(), any::<bool>(), 0usize..6).prop_map(|(s, e, r, l)| Action::Range(s, e, r, l)),
        1 => Just(Action::Reopen),
    ]
}

/// Random commits, reads and reopens agree with a `BTreeMap`.
fn matches_a_model<S: TestBackend>() {
    let mut runner = TestRunner::new(Config {
        cases: 16,
        ..Config::default()
    });
    let result = runner.run(&prop::collection::vec(action(), 1..30), |actions| {
        let dir = TempDir::new().expect("tempdir");
        let mut storage = S::open(dir.path());
        let mut model = std::collections::BTreeMap::<Vec<u8>, Vec<u8>>::new();
        for action in actions {
            match action {
                Action::Commit(batches) => {
                    storage.commit(&batches).expect("commit");
                    for op in batches.into_iter().flat_map(|batch| batch.ops) {
                        match op {
                            Op::Put(key, value) => model.insert(key, value),
                            Op::Delete(key) => model.remove(&key),
                        };
                    }
                }
                Action::Get(key) => prop_assert_eq!(get(&storage, &key), model.get(&key).cloned()),
                Action::Range(start, end, reverse, limit) => {
                    let found =
                        entries(storage.range(&start, &end, reverse, limit).expect("range"));
                    let expected: Vec<_> = if start >= end {
                        Vec::new()
                    } else if reverse {
                        model
                            .range(start..end)
                            .rev()
                            .take(limit)
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect()
                    } else {
                        model
                            .range(start..end)
                            .take(limit)
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect()
                    };
                    prop_assert_eq!(found, expected);
                }
                Action::Reopen => storage = storage.reopen(dir.path()),
            }
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

/// Wraps a backend so a test can hold a commit in flight and make commits fail.
struct Gated<S> {
    inner: S,
    gated: AtomicBool,
    failing: AtomicBool,
    commits: AtomicU64,
    entered: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

/// The test's side of a [`Gated`] store.
struct Gate {
    entered: mpsc::Receiver<()>,
    release: mpsc::Sender<()>,
}

impl<S: Storage> Gated<S> {
    fn new(inner: S) -> (Arc<Self>, Gate) {
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let gated = Gated {
            inner,
            gated: AtomicBool::new(true),
            failing: AtomicBool::new(false),
            commits: AtomicU64::new(0),
            entered: Mutex::new(entered_tx),
            release: Mutex::new(release_rx),
        };
        (Arc::new(gated), Gate { entered, release })
    }
}

impl Gate {
    /// Waits until a commit is held at the gate.
    fn wait_entered(&self) {
        self.entered.recv().expect("commit entered");
    }

    /// Lets the held commit go on.
    fn open(&self) {
        self.release.send(()).expect("release");
    }
}

impl<S: Storage> Storage for Gated<S> {
    fn commit(&self, batches: &[Batch]) -> Result<(), StorageError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        if self.gated.swap(false, Ordering::SeqCst) {
            self.entered.lock().expect("lock").send(()).expect("signal");
            self.release.lock().expect("lock").recv().expect("released");
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(StorageError::Backend("injected".into()));
        }
        self.inner.commit(batches)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        self.inner.get(key)
    }

    fn range(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        self.inner.range(start, end, reverse, limit)
    }
}

fn numbered(i: u32) -> Batch {
    let mut batch = Batch::default();
    batch.put(
        [b"log/".as_slice(), &i.to_be_bytes()].concat(),
        i.to_be_bytes(),
    );
    batch.put(*b"last", i.to_be_bytes());
    batch
}

/// Holds the first commit while 99 more batches queue up: they must share flushes, at most
/// `max_batches` per flush, and complete in order.
async fn committer_groups_waiting_batches<S: TestBackend>() {
    let dir = TempDir::new().expect("tempdir");
    let (storage, gate) = Gated::new(S::open(dir.path()));
    let config = CommitterConfig {
        max_batches: 40,
        ..CommitterConfig::default()
    };
    let committer = GroupCommitter::start(storage.clone(), config).expect("start");
    let mut durables = vec![committer.enqueue(numbered(0)).await.expect("enqueue")];
    gate.wait_entered();
    for i in 1..100 {
        durables.push(committer.enqueue(numbered(i)).await.expect("enqueue"));
    }
    gate.open();
    for durable in durables {
        durable.await.expect("durable");
    }
    // One flush for the first batch, then 99 queued batches in groups of at most 40.
    assert_eq!(storage.commits.load(Ordering::SeqCst), 4);
    assert_eq!(committer.stats().commits(), 4);
    assert_eq!(committer.stats().batches(), 100);
    let log = storage
        .range(b"log/", b"log0", false, usize::MAX)
        .expect("range");
    assert_eq!(log.len(), 100);
    assert_eq!(
        get(&storage.inner, b"last"),
        Some(99u32.to_be_bytes().to_vec())
    );
}

/// A failed flush fails every batch in it, and the committer keeps working afterwards.
async fn committer_errors_reach_every_waiter<S: TestBackend>() {
    let dir = TempDir::new().expect("tempdir");
    let (storage, gate) = Gated::new(S::open(dir.path()));
    let committer =
        GroupCommitter::start(storage.clone(), CommitterConfig::default()).expect("start");
    let mut durables = vec![committer.enqueue(numbered(0)).await.expect("enqueue")];
    gate.wait_entered();
    for i in 1..20 {
        durables.push(committer.enqueue(numbered(i)).await.expect("enqueue"));
    }
    storage.failing.store(true, Ordering::SeqCst);
    gate.open();
    for durable in durables {
        assert_eq!(durable.await, Err(StorageError::Backend("injected".into())));
    }
    assert_eq!(
        (committer.stats().commits(), committer.stats().failures()),
        (2, 2)
    );
    storage.failing.store(false, Ordering::SeqCst);
    committer
        .submit(numbered(20))
        .await
        .expect("commit after failure");
    let log = storage
        .range(b"log/", b"log0", false, usize::MAX)
        .expect("range");
    assert_eq!(
        entries(log),
        [(
            [b"log/".as_slice(), &20u32.to_be_bytes()].concat(),
            20u32.to_be_bytes().to_vec()
        )]
    );
}

/// Shutdown commits what is queued, then refuses new batches.
async fn committer_shutdown_drains<S: TestBackend>() {
    let dir = TempDir::new().expect("tempdir");
    let (storage, gate) = Gated::new(S::open(dir.path()));
    let committer =
        GroupCommitter::start(storage.clone(), CommitterConfig::default()).expect("start");
    let mut durables = vec![committer.enqueue(numbered(0)).await.expect("enqueue")];
    gate.wait_entered();
    for i in 1..10 {
        durables.push(committer.enqueue(numbered(i)).await.expect("enqueue"));
    }
    let shutdown = tokio::spawn({
        let committer = committer.clone();
        async move { committer.shutdown().await }
    });
    gate.open();
    shutdown.await.expect("shutdown");
    for durable in durables {
        durable.await.expect("durable");
    }
    assert!(committer.enqueue(numbered(10)).await.is_err());
    let log = storage
        .range(b"log/", b"log0", false, usize::MAX)
        .expect("range");
    assert_eq!(log.len(), 10);
    committer.shutdown().await;
}

macro_rules! storage_suite {
    ($($backend:ident: $storage:ty,)*) => {$(
        mod $backend {
            use super::*;

            #[test]
            fn put_get_delete() {
                super::put_get_delete::<$storage>();
            }

            #[test]
            fn batches_apply_in_order() {
                super::batches_apply_in_order::<$storage>();
            }

            #[test]
            fn ranges_are_ordered_and_bounded() {
                super::ranges_are_ordered_and_bounded::<$storage>();
            }

            #[test]
            fn reopen_keeps_committed_data() {
                super::reopen_keeps_committed_data::<$storage>();
            }

            #[test]
            fn corrupt_records_are_reported() {
                super::corrupt_records_are_reported::<$storage>();
            }

            #[test]
            fn matches_a_model() {
                super::matches_a_model::<$storage>();
            }

            #[tokio::test]
            async fn committer_groups_waiting_batches() {
                super::committer_groups_waiting_batches::<$storage>().await;
            }

            #[tokio::test]
            async fn committer_errors_reach_every_waiter() {
                super::committer_errors_reach_every_waiter::<$storage>().await;
            }

            #[tokio::test]
            async fn committer_shutdown_drains() {
                super::committer_shutdown_drains::<$storage>().await;
            }
        }
    )*};
}

storage_suite! {
    memory: MemoryStorage,
    sled: SledStorage,
    redb: RedbStorage,
}

#[test]
fn memory_crash_copy_is_independent_and_failed_commits_write_nothing() {
    let storage = MemoryStorage::new();
    storage.commit(&[numbered(1)]).expect("commit");
    storage.fail_commits(true);
    assert!(storage.commit(&[numbered(2)]).is_err());
    let copy = storage.crash_copy();
    storage.fail_commits(false);
    storage.commit(&[numbered(3)]).expect("commit");
    assert_eq!((storage.commit_count(), copy.commit_count()), (2, 0));
    assert_eq!(get(&copy, b"last"), Some(1u32.to_be_bytes().to_vec()));
    assert!(storage.corrupt(b"last"));
    assert!(!storage.corrupt(b"absent"));
    assert_eq!(
        storage.get(b"last"),
        Err(StorageError::Corrupt {
            key: b"last".to_vec()
        })
    );
    assert!(copy.get(b"last").is_ok());
}

/// A group stops growing once it reaches `max_bytes`: with a one-byte cap every batch gets its
/// own flush even when several are waiting.
#[tokio::test]
async fn committer_caps_group_bytes() {
    let (storage, gate) = Gated::new(MemoryStorage::new());
    let config = CommitterConfig {
        max_bytes: 1,
        ..CommitterConfig::default()
    };
    let committer = GroupCommitter::start(storage.clone(), config).expect("start");
    let mut durables = vec![committer.enqueue(numbered(0)).await.expect("enqueue")];
    gate.wait_entered();
    for i in 1..5 {
        durables.push(committer.enqueue(numbered(i)).await.expect("enqueue"));
    }
    gate.open();
    for durable in durables {
        durable.await.expect("durable");
    }
    assert_eq!(storage.commits.load(Ordering::SeqCst), 5);
}
