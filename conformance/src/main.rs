//! `natter-conformance --addr HOST:PORT --token-cmd '...'`: checks a server against the spec.

use std::process::{Command, ExitCode};

use clap::Parser;
use natter_conformance::{Failure, Target, TokenSource, run};

#[derive(Parser)]
#[command(about = "Drives a natter server through the spec's scenarios, rule by rule")]
struct Cli {
    /// The server's native TCP address.
    #[arg(long)]
    addr: String,
    /// A shell command that prints a token; `{user}` and `{device}` are replaced.
    /// For natter: `natter token --user {user} --device {device}`.
    #[arg(long)]
    token_cmd: String,
    /// Run only the scenarios whose name contains this.
    #[arg(long, default_value = "")]
    filter: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let template = cli.token_cmd;
    let tokens = TokenSource(Box::new(move |user: &str, device: &str| {
        let command = template.replace("{user}", user).replace("{device}", device);
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
    }));
    let outcomes = run(
        &Target {
            addr: cli.addr,
            tokens,
        },
        &cli.filter,
    )
    .await;
    if outcomes.iter().all(|o| o.result.is_ok()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
