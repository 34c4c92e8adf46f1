//! Which broker gets each request: the ring placement of its conversation or its user.

use natter_codec::ring::Ring;

/// The ring key a request is routed by (see the routing table in docs/ARCHITECTURE.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The owner of `conv:<id>`.
    Conversation(String),
    /// The home broker of the session's user.
    Home,
}

/// The edge's view of the ring; brokers are named by their index in the cluster file.
#[derive(Debug)]
pub struct Router {
    ring: Ring,
}

impl Router {
    /// A router over `brokers` (cluster-file order) with `vnodes` points each.
    pub fn new(version: u64, brokers: Vec<String>, vnodes: usize) -> Self {
        Self {
            ring: Ring::new(version, brokers, vnodes),
        }
    }

    /// The ring version sent in LINK_HELLO.
    pub fn version(&self) -> u64 {
        self.ring.version()
    }

    /// The broker ids, in cluster-file order; a broker's index is its position here.
    pub fn brokers(&self) -> &[String] {
        self.ring.brokers()
    }

    /// The index of the broker that owns `destination` for `user`'s session.
    pub fn broker_for(&self, destination: &Destination, user: &str) -> Option<usize> {
        let owner = match destination {
            Destination::Conversation(conversation) => self.ring.conversation_owner(conversation),
            Destination::Home => self.ring.home(user),
        }?;
        self.index(owner)
    }

    /// The index of a user's home broker.
    pub fn home(&self, user: &str) -> Option<usize> {
        self.broker_for(&Destination::Home, user)
    }

    fn index(&self, broker: &str) -> Option<usize> {
        self.ring.brokers().iter().position(|id| id == broker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversations_and_users_follow_the_codec_ring() {
        let brokers = ["b1", "b2", "b3"].map(String::from).to_vec();
        let ring = Ring::new(1, brokers.clone(), 128);
        let router = Router::new(1, brokers, 128);
        for user in ["alice", "bob", "carol", "dave"] {
            let expected = ring.home(user).unwrap();
            assert_eq!(router.brokers()[router.home(user).unwrap()], expected);
            let conversation = natter_codec::ids::direct_conversation(user, "zed");
            let expected = ring.conversation_owner(&conversation).unwrap();
            let index = router
                .broker_for(&Destination::Conversation(conversation), user)
                .unwrap();
            assert_eq!(router.brokers()[index], expected);
        }
    }
}
