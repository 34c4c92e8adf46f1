//! natter-conformance: drives a server through the scenarios of spec/PROTOCOL.md, each citing
//! the rules it checks, so a third-party server can prove what it implements.
//!
//! The runner needs a TCP address, optionally a WebSocket address, and a way to obtain tokens
//! (servers define their own token format, spec 8.1). Scenarios use fresh user ids for every
//! run, so they work against a server that already holds data. A scenario fails on a wrong
//! answer or on no answer within [`wire::ANSWER_TIMEOUT`]; it is skipped when the target
//! cannot give it what it needs (no WebSocket address, no short-lived tokens).
//!
//! Every rule whose `observable` column in PROTOCOL.md 13.2 is `server` has a scenario: the
//! runner prints its coverage, counted against the table it was built with.
//!
//! In client mode ([`client`]) the roles turn around: the runner plays the server towards a
//! client under test, for the rules a client must follow.

pub mod client;
mod scenarios;
pub mod spec;
pub mod wire;
pub mod ws;

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::StreamExt;

pub use scenarios::SCENARIOS;

/// Why a scenario failed, or why it could not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    message: String,
    skip: bool,
}

impl Failure {
    /// A failure with a message for people.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            skip: false,
        }
    }

    /// Not a failure: the target cannot give the scenario what it needs.
    pub fn skip(reason: impl Into<String>) -> Self {
        Self {
            message: reason.into(),
            skip: true,
        }
    }

    /// Whether the scenario was skipped rather than failed.
    pub fn is_skip(&self) -> bool {
        self.skip
    }

    /// Prefixes the message with what the scenario was doing.
    pub fn context(self, doing: &str) -> Self {
        Self {
            message: format!("{doing}: {}", self.message),
            skip: self.skip,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A function from (user, device, validity) to a token.
pub type MintToken = dyn Fn(&str, &str, Duration) -> Result<String, Failure> + Send + Sync;

/// Mints a token for (user, device), valid for a while, on the server under test.
pub struct TokenSource(pub Box<MintToken>);

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSource")
    }
}

/// How long the tokens of ordinary scenarios last.
pub const TOKEN_VALIDITY: Duration = Duration::from_secs(3600);

/// The server under test.
#[derive(Debug)]
pub struct Target {
    /// Its native TCP address.
    pub addr: String,
    /// Its WebSocket endpoint as `host:port/path`, if it has one.
    pub ws: Option<String>,
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
    /// A user id unique to this run (lower case, as user ids are: [NWP-2.3-5]).
    pub fn user(&self, name: &str) -> String {
        format!("{name}-{}", self.run)
    }

    /// A token for `user` (already made unique with [`Ctx::user`]) on `device`.
    pub fn token(&self, user: &str, device: &str) -> Result<String, Failure> {
        (self.target.tokens.0)(user, device, TOKEN_VALIDITY)
    }

    /// A token that expires after `validity`.
    pub fn token_valid_for(
        &self,
        user: &str,
        device: &str,
        validity: Duration,
    ) -> Result<String, Failure> {
        (self.target.tokens.0)(user, device, validity)
    }

    /// The server's address.
    pub fn addr(&self) -> &str {
        &self.target.addr
    }

    /// The WebSocket endpoint as (`host:port`, `path`), or a skip if the target has none.
    pub fn ws(&self) -> Result<(&str, &str), Failure> {
        let ws = self
            .target
            .ws
            .as_deref()
            .ok_or_else(|| Failure::skip("no WebSocket address given (--ws)"))?;
        Ok(match ws.find('/') {
            Some(slash) => (&ws[..slash], &ws[slash..]),
            None => (ws, "/ws"),
        })
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
    /// It loads the server enough to slow others down past their answer timeout (a flood,
    /// a very large group): it runs by itself, after the others.
    pub alone: bool,
}

/// The outcome of one scenario.
#[derive(Debug)]
pub struct Outcome {
    /// The scenario's name.
    pub name: &'static str,
    /// The rules it checks.
    pub rules: &'static [&'static str],
    /// `Err` with the reason if it failed or was skipped ([`Failure::is_skip`]).
    pub result: Result<(), Failure>,
    /// How long it took.
    pub elapsed: Duration,
}

/// How many scenarios run at once by default: they use their own users, so they do not
/// disturb each other, and the slow ones (timeouts, expiries) overlap.
pub const DEFAULT_JOBS: usize = 16;

/// Runs every scenario whose name contains `filter`, [`DEFAULT_JOBS`] at a time (those marked
/// [`Scenario::alone`] afterwards, one by one), printing a TAP line for each as it ends, then
/// the coverage and a closing `N passed, N failed, N skipped` line.
pub async fn run(target: &Target, filter: &str) -> Vec<Outcome> {
    run_with(target, filter, DEFAULT_JOBS).await
}

/// Like [`run`], with `jobs` scenarios at a time.
pub async fn run_with(target: &Target, filter: &str, jobs: usize) -> Vec<Outcome> {
    let selected: Vec<&Scenario> = SCENARIOS
        .iter()
        .copied()
        .filter(|s| s.name.contains(filter))
        .collect();
    println!("1..{}", selected.len());
    let (alone, together): (Vec<&Scenario>, Vec<&Scenario>) =
        selected.into_iter().partition(|s| s.alone);
    let mut outcomes = Vec::new();
    for (batch, jobs) in [(together, jobs.max(1)), (alone, 1)] {
        let mut results = futures::stream::iter(batch)
            .map(|scenario| run_one(target, scenario))
            .buffered(jobs);
        while let Some(outcome) = results.next().await {
            report(outcomes.len() + 1, &outcome);
            outcomes.push(outcome);
        }
    }
    println!("{}", coverage());
    let failed = outcomes
        .iter()
        .filter(|o| o.result.as_ref().is_err_and(|f| !f.is_skip()))
        .count();
    let skipped = outcomes
        .iter()
        .filter(|o| o.result.as_ref().is_err_and(Failure::is_skip))
        .count();
    println!(
        "{} passed, {failed} failed, {skipped} skipped",
        outcomes.len() - failed - skipped
    );
    outcomes
}

async fn run_one(target: &Target, scenario: &'static Scenario) -> Outcome {
    let ctx = Ctx {
        target,
        run: format!("{:08x}", rand::random::<u32>()),
    };
    let start = std::time::Instant::now();
    let result = (scenario.run)(&ctx).await;
    Outcome {
        name: scenario.name,
        rules: scenario.rules,
        result,
        elapsed: start.elapsed(),
    }
}

/// Prints one TAP line.
pub(crate) fn report(index: usize, outcome: &Outcome) {
    let rules = outcome.rules.join(" ");
    let took = format!("{:.1} s", outcome.elapsed.as_secs_f64());
    match &outcome.result {
        Ok(()) => println!("ok {index} - {} [{rules}] ({took})", outcome.name),
        Err(skip) if skip.is_skip() => {
            println!(
                "ok {index} - {} [{rules}] ({took}) # SKIP {skip}",
                outcome.name
            )
        }
        Err(failure) => {
            println!(
                "not ok {index} - {} [{rules}] ({took}): {failure}",
                outcome.name
            )
        }
    }
}

/// Which server-observable rules of the spec have a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// Every rule whose `observable` column is `server`, in spec order.
    pub observable: Vec<&'static str>,
    /// Those no scenario cites.
    pub uncovered: Vec<&'static str>,
}

impl std::fmt::Display for Coverage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "coverage: {} of {} server-observable rules have a scenario",
            self.observable.len() - self.uncovered.len(),
            self.observable.len()
        )?;
        if !self.uncovered.is_empty() {
            write!(f, "\nuncovered: {}", self.uncovered.join(" "))?;
        }
        Ok(())
    }
}

/// The coverage of [`SCENARIOS`] against the rule table of the spec the runner was built with.
pub fn coverage() -> Coverage {
    let cited: BTreeSet<&str> = SCENARIOS
        .iter()
        .flat_map(|s| s.rules.iter().copied())
        .collect();
    let observable: Vec<&'static str> = spec::rules()
        .into_iter()
        .filter(|rule| rule.observable == spec::Observable::Server)
        .map(|rule| rule.id)
        .collect();
    let uncovered = observable
        .iter()
        .copied()
        .filter(|id| !cited.contains(id))
        .collect();
    Coverage {
        observable,
        uncovered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_cite_server_observable_rules_of_the_spec() {
        let rules = spec::rules();
        let mut names = BTreeSet::new();
        for scenario in SCENARIOS.iter() {
            assert!(names.insert(scenario.name), "{} twice", scenario.name);
            assert!(
                !scenario.rules.is_empty(),
                "{} cites no rule",
                scenario.name
            );
            for id in scenario.rules {
                let rule = rules.iter().find(|rule| rule.id == *id);
                assert!(
                    rule.is_some(),
                    "{} cites {id}, not in PROTOCOL.md",
                    scenario.name
                );
                assert_eq!(
                    rule.map(|rule| rule.observable),
                    Some(spec::Observable::Server),
                    "{} cites {id}, which PROTOCOL.md 13.2 does not call server-observable",
                    scenario.name
                );
            }
        }
    }

    #[test]
    fn every_server_observable_rule_has_a_scenario() {
        let coverage = coverage();
        assert!(coverage.uncovered.is_empty(), "{coverage}");
    }
}
