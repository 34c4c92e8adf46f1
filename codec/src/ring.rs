//! The consistent-hash ring that maps conversations and users to brokers (spec 9.1).
//!
//! Every node builds the same ring from the same cluster file, so placement must depend only
//! on the broker ids and the key bytes: points come from SipHash-1-3 with fixed keys over the
//! raw UTF-8 bytes, never from std's `Hash` impls, which may change between Rust versions.

use std::hash::{BuildHasher, Hash, Hasher};

use hashring::HashRing;
use siphasher::sip::SipHasher13;

/// Virtual nodes per broker unless the cluster file says otherwise.
pub const DEFAULT_VNODES: usize = 128;

/// Builds SipHash-1-3 hashers with natter's fixed keys ("natter-1", "ring-v01").
#[derive(Debug, Clone, Copy, Default)]
struct StableHasher;

impl BuildHasher for StableHasher {
    type Hasher = SipHasher13;

    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(0x6e61_7474_6572_2d31, 0x7269_6e67_2d76_3031)
    }
}

/// A ring point: virtual node `replica` of broker `index`, hashed as `"<id>#<replica>"`.
#[derive(Debug, Clone)]
struct Point {
    index: usize,
    label: String,
}

impl Hash for Point {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.label.as_bytes());
    }
}

/// A key to place, hashed as its raw bytes.
struct Key<'a>(&'a str);

impl Hash for Key<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.0.as_bytes());
    }
}

/// The ring of brokers at one version.
#[derive(Debug)]
pub struct Ring {
    version: u64,
    brokers: Vec<String>,
    ring: HashRing<Point, StableHasher>,
}

impl Ring {
    /// A ring of `brokers` (ids from the cluster file) with `vnodes` points each.
    pub fn new(version: u64, brokers: impl IntoIterator<Item = String>, vnodes: usize) -> Self {
        let brokers: Vec<String> = brokers.into_iter().collect();
        let mut ring = HashRing::with_hasher(StableHasher);
        for (index, id) in brokers.iter().enumerate() {
            for replica in 0..vnodes.max(1) {
                ring.add(Point {
                    index,
                    label: format!("{id}#{replica}"),
                });
            }
        }
        Self {
            version,
            brokers,
            ring,
        }
    }

    /// The version both sides of a link compare at handshake (`[NWP-9.2-3]`).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The broker ids, in cluster-file order.
    pub fn brokers(&self) -> &[String] {
        &self.brokers
    }

    /// The broker that owns a ring key; `None` only for an empty ring.
    pub fn owner(&self, key: &str) -> Option<&str> {
        let point = self.ring.get(&Key(key))?;
        self.brokers.get(point.index).map(String::as_str)
    }

    /// The broker that owns a conversation's log.
    pub fn conversation_owner(&self, conversation: &str) -> Option<&str> {
        self.owner(&crate::ids::conversation_key(conversation))
    }

    /// A user's home broker: inbox, sessions and presence.
    pub fn home(&self, user: &str) -> Option<&str> {
        self.owner(&crate::ids::user_key(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Ring {
        Ring::new(1, ["b1", "b2", "b3"].map(String::from), DEFAULT_VNODES)
    }

    /// Placement is part of the cluster's on-disk contract: if this changes, every broker
    /// would disagree with its own data. Update it only with a ring version bump.
    #[test]
    fn placement_is_stable() {
        let ring = ring();
        let placed: Vec<&str> = ["conv:d/alice/bob", "user:alice", "user:bob", "conv:g/x"]
            .map(|k| ring.owner(k).unwrap())
            .to_vec();
        assert_eq!(placed, GOLDEN);
    }

    const GOLDEN: [&str; 4] = ["b1", "b1", "b2", "b3"];

    #[test]
    fn load_is_spread() {
        let ring = ring();
        let mut counts = [0usize; 3];
        for i in 0..30_000 {
            let owner = ring.owner(&format!("user:{i}")).unwrap();
            counts[ring.brokers().iter().position(|b| b == owner).unwrap()] += 1;
        }
        for count in counts {
            assert!((7_000..13_000).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn a_single_broker_owns_everything() {
        let ring = Ring::new(1, ["solo".to_string()], 4);
        assert_eq!(ring.owner("conv:anything"), Some("solo"));
        assert_eq!(Ring::new(1, Vec::<String>::new(), 4).owner("x"), None);
    }
}
