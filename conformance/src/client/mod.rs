//! Client mode: the runner plays the server towards a client under test.
//!
//! The client is a command that follows the contract of `conformance/README.md` (connect,
//! resume, send `m1`..`mN`, print one JSON line per event). Each scenario listens on a
//! loopback port, starts the client with the contract's arguments, scripts the server frame
//! by frame ([`server::Harness`]), checks what the client sends and prints, citing the rules,
//! and bounds everything in time. Scenarios run in parallel, each with its own port, client
//! process and cursor file.
//!
//! Every rule whose `observable` column in PROTOCOL.md 13.2 is `client` has a scenario or a
//! reason in [`UNCOVERED`]; the crate's tests keep the two in step with the spec.

pub mod process;
mod scenarios;
pub mod server;

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use futures::StreamExt;

use crate::{Failure, Outcome, spec};

pub use scenarios::SCENARIOS;

/// The client under test.
#[derive(Debug, Clone)]
pub struct ClientTarget {
    /// A shell command; the contract's arguments are appended.
    pub cmd: String,
    /// Serve WebSocket (`ws://127.0.0.1:PORT/ws`) instead of TCP.
    pub ws: bool,
    /// The client claims only the minimal profile (spec 12): it may ignore GAP and never
    /// reads history.
    pub minimal: bool,
}

/// What a client scenario gets.
#[derive(Debug)]
pub struct Ctx<'a> {
    target: &'a ClientTarget,
    /// A directory of its own, for the cursor file.
    dir: PathBuf,
    /// The token the client is given; it must never print it.
    token: String,
}

type ScenarioFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send + 'a>>;

/// One client scenario.
#[derive(Debug)]
pub struct Scenario {
    /// A short name.
    pub name: &'static str,
    /// The spec rule ids it checks.
    pub rules: &'static [&'static str],
    /// The scenario.
    pub run: for<'a> fn(&'a Ctx<'a>) -> ScenarioFuture<'a>,
}

/// The client-observable rules without a scenario, each with the reason. The crate's tests
/// fail when a rule here gets a scenario or leaves the spec, and when a client-observable
/// rule has neither.
pub const UNCOVERED: &[(&str, &str)] = &[
    (
        "NWP-4.1-2",
        "what a client concludes from the flags of a DELIVERed event is its own state: \
         nothing it sends or must print depends on it",
    ),
    (
        "NWP-6.2.8-1",
        "when a typing indicator expires is presentation: no frame shows it, and the \
         contract's client shows no typing state",
    ),
];

/// How long one scenario may take in all before it fails.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(90);

/// How many scenarios run at once by default. They are mostly waiting, but several measure
/// time (heartbeats, backoff), so not too many share the machine.
pub const DEFAULT_JOBS: usize = 8;

/// Runs every client scenario whose name contains `filter`, `jobs` at a time, printing a TAP
/// line for each as it ends, then the coverage and a closing `N passed` line.
pub async fn run(target: &ClientTarget, filter: &str, jobs: usize) -> Vec<Outcome> {
    let selected: Vec<&'static Scenario> = SCENARIOS
        .iter()
        .copied()
        .filter(|s| s.name.contains(filter))
        .collect();
    println!("1..{}", selected.len());
    let mut outcomes = Vec::new();
    let mut results = futures::stream::iter(selected)
        .map(|scenario| run_one(target, scenario))
        .buffered(jobs.max(1));
    while let Some(outcome) = results.next().await {
        crate::report(outcomes.len() + 1, &outcome);
        outcomes.push(outcome);
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

async fn run_one(target: &ClientTarget, scenario: &'static Scenario) -> Outcome {
    let run = format!("{:08x}", rand::random::<u32>());
    let dir = std::env::temp_dir().join(format!(
        "natter-conformance-{}-{}-{run}",
        std::process::id(),
        scenario.name
    ));
    let start = std::time::Instant::now();
    let result = match std::fs::create_dir_all(&dir) {
        Ok(()) => {
            let ctx = Ctx {
                target,
                dir: dir.clone(),
                token: format!("tok-{run}-do-not-print-me"),
            };
            match tokio::time::timeout(SCENARIO_TIMEOUT, (scenario.run)(&ctx)).await {
                Ok(result) => result,
                Err(_) => Err(Failure::new(format!(
                    "the scenario did not end within {SCENARIO_TIMEOUT:?}"
                ))),
            }
        }
        Err(e) => Err(Failure::new(format!("creating {}: {e}", dir.display()))),
    };
    let _ = std::fs::remove_dir_all(&dir);
    Outcome {
        name: scenario.name,
        rules: scenario.rules,
        result,
        elapsed: start.elapsed(),
    }
}

/// Which client-observable rules of the spec have a client scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// Every rule whose `observable` column is `client`, in spec order.
    pub observable: Vec<&'static str>,
    /// Those no client scenario cites, with the reason [`UNCOVERED`] gives (or none).
    pub uncovered: Vec<(&'static str, Option<&'static str>)>,
}

impl std::fmt::Display for Coverage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "coverage: {} of {} client-observable rules have a scenario",
            self.observable.len() - self.uncovered.len(),
            self.observable.len()
        )?;
        for (id, reason) in &self.uncovered {
            write!(
                f,
                "\nuncovered: {id}: {}",
                reason.unwrap_or("no reason given")
            )?;
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
        .filter(|rule| rule.observable == spec::Observable::Client)
        .map(|rule| rule.id)
        .collect();
    let uncovered = observable
        .iter()
        .copied()
        .filter(|id| !cited.contains(id))
        .map(|id| {
            let reason = UNCOVERED
                .iter()
                .find(|(uncovered, _)| *uncovered == id)
                .map(|(_, reason)| *reason);
            (id, reason)
        })
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
    fn client_scenarios_cite_rules_that_bind_a_client() {
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
                assert!(
                    rule.is_some_and(
                        |rule| rule.binds_client() || rule.observable == spec::Observable::Client
                    ),
                    "{} cites {id}, which PROTOCOL.md 13.2 does not apply to a client",
                    scenario.name
                );
            }
        }
    }

    /// The allow-list is exactly the uncovered client-observable rules: a rule that gains a
    /// scenario leaves it, and a rule added to the spec (or a scenario removed) needs a
    /// scenario or a reason here, so coverage cannot regress silently.
    #[test]
    fn every_client_observable_rule_has_a_scenario_or_a_reason() {
        let coverage = coverage();
        let uncovered: Vec<&str> = coverage.uncovered.iter().map(|(id, _)| *id).collect();
        let allowed: Vec<&str> = UNCOVERED.iter().map(|(id, _)| *id).collect();
        assert_eq!(uncovered, allowed, "{coverage}");
        for (id, reason) in UNCOVERED {
            assert!(reason.len() > 20, "{id}: give a reason");
        }
    }
}
