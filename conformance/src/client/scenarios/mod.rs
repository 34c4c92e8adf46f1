//! The client scenarios, by subject. Each names the rules it checks; the crate's tests refuse a
//! cited id the spec does not apply to a client, and a client-observable rule with neither a
//! scenario nor a reason in [`super::UNCOVERED`].

use std::sync::LazyLock;
use std::time::Duration;

use natter_codec::frame::Send;

use super::server::{Harness, World};
use crate::Failure;

mod connection;
mod framing;
mod inbox;
mod messaging;

/// Declares a module's client scenarios: `"name" [rule ids] => async fn`.
macro_rules! client_scenarios {
    ($( $name:literal [$($rule:literal),* $(,)?] => $run:ident, )*) => {
        /// This module's scenarios.
        pub(super) static SCENARIOS: &[crate::client::Scenario] = &[
            $( crate::client::Scenario {
                name: $name,
                rules: &[$($rule),*],
                run: |ctx| Box::pin($run(ctx)),
            }, )*
        ];
    };
}
pub(crate) use client_scenarios;

/// Every client scenario.
pub static SCENARIOS: LazyLock<Vec<&'static crate::client::Scenario>> = LazyLock::new(|| {
    [
        connection::SCENARIOS,
        messaging::SCENARIOS,
        inbox::SCENARIOS,
        framing::SCENARIOS,
    ]
    .into_iter()
    .flatten()
    .collect()
});

/// The body of the n-th message of `--send`.
fn m(n: u32) -> String {
    format!("m{n}")
}

/// Whether the client reported each of `m1`..`mN` sent.
fn all_sent(h: &Harness, n: u32) -> bool {
    (1..=n).all(|i| h.client.sent(&m(i)) == 1)
}

fn check(condition: bool, message: impl FnOnce() -> String) -> Result<(), Failure> {
    if condition {
        Ok(())
    } else {
        Err(Failure::new(message()))
    }
}

/// Every SEND of `body` repeats the first one: same client_msg_id, kind, target, content type
/// and body ([NWP-6.2.1-1]).
fn same_retries(world: &World, body: &str) -> Result<(), Failure> {
    let sends: Vec<&Send> = world.sends_of(body).map(|record| &record.send).collect();
    let Some(first) = sends.first() else {
        return Ok(());
    };
    fn same(send: &Send) -> (&str, u64, u64, u64, &str, &[u8]) {
        (
            &send.conversation,
            send.client_msg_id,
            send.kind.0,
            send.target,
            &send.content_type,
            &send.body,
        )
    }
    for send in &sends[1..] {
        check(same(send) == same(first), || {
            format!(
                "{body:?} was sent again as {send:?}, not as it was first sent, {first:?} \
                 (NWP-6.2.1-1)"
            )
        })?;
    }
    Ok(())
}

/// Milliseconds, for messages.
fn ms(duration: Duration) -> u128 {
    duration.as_millis()
}
