//! natter-conformance: drives a server through the scenarios of spec/PROTOCOL.md, each citing
//! the rules it checks, so a third-party server can prove what it implements.
//!
//! The runner needs a TCP address and a way to obtain tokens (servers define their own token
//! format, spec 8.1). Scenarios use fresh user ids for every run, so they work against a
//! server that already holds data. A scenario fails on a wrong answer or on no answer within
//! [`wire::ANSWER_TIMEOUT`].

mod scenarios;
pub mod wire;

use std::future::Future;
use std::pin::Pin;

pub use scenarios::SCENARIOS;

/// Why a scenario failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(String);

impl Failure {
    /// A failure with a message for people.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// Prefixes the message with what the scenario was doing.
    pub fn context(self, doing: &str) -> Self {
        Self(format!("{doing}: {}", self.0))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A function from (user, device) to a token.
pub type MintToken = dyn Fn(&str, &str) -> Result<String, Failure> + Send + Sync;

/// Mints a token for (user, device) on the server under test.
pub struct TokenSource(pub Box<MintToken>);

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSource")
    }
}

/// The server under test.
#[derive(Debug)]
pub struct Target {
    /// Its native TCP address.
    pub addr: String,
    /// How to get tokens for it.
    pub tokens: TokenSource,
}

/// What a scenario gets: the target and a run id that keeps its user ids fresh.
#[derive(Debug)]
pub struct Ctx<'a> {
    target: &'a Target,
    run: String,
}

impl Ctx<'_> {
    /// A user id unique to this run.
    pub fn user(&self, name: &str) -> String {
        format!("{name}-{}", self.run)
    }

    /// A token for `user` (already made unique with [`Ctx::user`]) on `device`.
    pub fn token(&self, user: &str, device: &str) -> Result<String, Failure> {
        (self.target.tokens.0)(user, device)
    }

    /// The server's address.
    pub fn addr(&self) -> &str {
        &self.target.addr
    }
}

type ScenarioFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send + 'a>>;

/// One scenario: what it is called, which rules it checks, and how it runs.
#[derive(Debug)]
pub struct Scenario {
    /// A short name.
    pub name: &'static str,
    /// The spec rule ids it checks.
    pub rules: &'static [&'static str],
    /// The scenario.
    pub run: for<'a> fn(&'a Ctx<'a>) -> ScenarioFuture<'a>,
}

/// The outcome of one scenario.
#[derive(Debug)]
pub struct Outcome {
    /// The scenario's name.
    pub name: &'static str,
    /// The rules it checks.
    pub rules: &'static [&'static str],
    /// `Err` with the reason if it failed.
    pub result: Result<(), Failure>,
}

/// Runs every scenario whose name contains `filter`, one after another, printing a TAP-style
/// line for each and a closing `N passed, N failed` line.
pub async fn run(target: &Target, filter: &str) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let selected: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|s| s.name.contains(filter))
        .collect();
    println!("1..{}", selected.len());
    for (index, scenario) in selected.into_iter().enumerate() {
        let ctx = Ctx {
            target,
            run: format!("{:08x}", rand::random::<u32>()),
        };
        let result = (scenario.run)(&ctx).await;
        let rules = scenario.rules.join(" ");
        match &result {
            Ok(()) => println!("ok {} - {} [{rules}]", index + 1, scenario.name),
            Err(failure) => {
                println!(
                    "not ok {} - {} [{rules}]: {failure}",
                    index + 1,
                    scenario.name
                )
            }
        }
        outcomes.push(Outcome {
            name: scenario.name,
            rules: scenario.rules,
            result,
        });
    }
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    println!("{} passed, {} failed", outcomes.len() - failed, failed);
    outcomes
}
