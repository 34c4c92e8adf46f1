//! `natter-conformance --addr HOST:PORT --token-cmd '...'`: checks a server against the spec.
//! `natter-conformance client --cmd '...'`: checks a client against it, playing the server.

use std::process::{Command, ExitCode};
use std::time::Duration;

use clap::{Parser, Subcommand};
use natter_conformance::client::ClientTarget;
use natter_conformance::{DEFAULT_JOBS, Failure, Outcome, Target, TokenSource, coverage, run_with};

#[derive(Parser)]
#[command(
    about = "Checks a natter server (or, with `client`, a client) against the spec, rule by rule"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// The server's native TCP address.
    #[arg(long)]
    addr: Option<String>,
    /// The server's WebSocket endpoint, `HOST:PORT/PATH` (the path defaults to /ws); the
    /// WebSocket scenarios are skipped without it.
    #[arg(long)]
    ws: Option<String>,
    /// A shell command that prints a token; `{user}`, `{device}` and `{ttl_secs}` (the token's
    /// validity in seconds) are replaced. Without `{ttl_secs}` the scenarios that need a
    /// short-lived token are skipped. For natter:
    /// `natter token --user {user} --device {device} --ttl-secs {ttl_secs}`.
    #[arg(long)]
    token_cmd: Option<String>,
    /// Run only the scenarios whose name contains this.
    #[arg(long, default_value = "")]
    filter: String,
    /// How many scenarios run at once.
    #[arg(long, default_value_t = DEFAULT_JOBS)]
    jobs: usize,
    /// Print which server-observable rules of the spec have a scenario, and exit.
    #[arg(long)]
    coverage: bool,
}

#[derive(Subcommand)]
enum Mode {
    /// Plays the server towards a client: runs the client command (the contract of
    /// conformance/README.md) once or more per scenario and checks what it sends and prints.
    Client {
        /// The client, as a shell command; the contract's arguments are appended.
        #[arg(long, required_unless_present = "coverage")]
        cmd: Option<String>,
        /// Serve WebSocket: the client gets `--url ws://127.0.0.1:PORT/ws`.
        #[arg(long)]
        ws: bool,
        /// The client claims only the minimal profile (spec 12): it may ignore GAP.
        #[arg(long)]
        minimal: bool,
        /// Run only the scenarios whose name contains this.
        #[arg(long, default_value = "")]
        filter: String,
        /// How many scenarios run at once.
        #[arg(long, default_value_t = natter_conformance::client::DEFAULT_JOBS)]
        jobs: usize,
        /// Print which client-observable rules of the spec have a scenario, and exit.
        #[arg(long)]
        coverage: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Mode::Client {
        cmd,
        ws,
        minimal,
        filter,
        jobs,
        coverage,
    }) = cli.mode
    {
        if coverage {
            println!("{}", natter_conformance::client::coverage());
            return ExitCode::SUCCESS;
        }
        let Some(cmd) = cmd else {
            return ExitCode::FAILURE;
        };
        let target = ClientTarget { cmd, ws, minimal };
        let outcomes = natter_conformance::client::run(&target, &filter, jobs).await;
        return exit_code(&outcomes);
    }
    if cli.coverage {
        println!("{}", coverage());
        return ExitCode::SUCCESS;
    }
    let (Some(addr), Some(template)) = (cli.addr, cli.token_cmd) else {
        eprintln!("natter-conformance: --addr and --token-cmd are required (or `client --cmd`)");
        return ExitCode::FAILURE;
    };
    let tokens = TokenSource(Box::new(
        move |user: &str, device: &str, validity: Duration| {
            if !template.contains("{ttl_secs}") && validity != natter_conformance::TOKEN_VALIDITY {
                return Err(Failure::skip(
                    "--token-cmd has no {ttl_secs}: cannot mint a short-lived token",
                ));
            }
            let command = template
                .replace("{user}", user)
                .replace("{device}", device)
                .replace("{ttl_secs}", &validity.as_secs().to_string());
            let output = Command::new("sh")
                .args(["-c", &command])
                .output()
                .map_err(|e| Failure::new(format!("token command: {e}")))?;
            if !output.status.success() {
                return Err(Failure::new(format!(
                    "token command failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                )));
            }
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
        },
    ));
    let target = Target {
        addr,
        ws: cli.ws,
        tokens,
    };
    let outcomes = run_with(&target, &cli.filter, cli.jobs).await;
    exit_code(&outcomes)
}

/// Success when nothing failed (skips are not failures).
fn exit_code(outcomes: &[Outcome]) -> ExitCode {
    if outcomes
        .iter()
        .all(|o| o.result.as_ref().is_ok() || o.result.as_ref().is_err_and(Failure::is_skip))
    {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
