//! The client under test, as a process: its arguments (the contract of README.md), the JSON
//! lines it prints, what it writes to stderr, and its exit.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::Failure;

/// What a run of the client is asked to do: the arguments of the contract.
#[derive(Debug, Clone, Default)]
pub struct Args {
    /// `--send N`: messages `m1` to `mN`.
    pub send: u32,
    /// `--big BYTES`: one message of that many `x`, before `m1`.
    pub big: Option<usize>,
    /// `--typing`: the user types for two seconds, then stops.
    pub typing: bool,
}

impl Args {
    /// A run that sends `n` messages.
    pub fn send(n: u32) -> Self {
        Self {
            send: n,
            ..Self::default()
        }
    }
}

/// One line the client printed, parsed.
#[derive(Debug, Clone)]
pub struct Line {
    /// When the runner read it.
    pub at: Instant,
    /// The JSON object.
    pub value: Value,
}

impl Line {
    /// The `event` field.
    pub fn event(&self) -> &str {
        self.value["event"].as_str().unwrap_or_default()
    }

    /// A string field, or "".
    pub fn str(&self, field: &str) -> &str {
        self.value[field].as_str().unwrap_or_default()
    }

    /// An integer field.
    pub fn u64(&self, field: &str) -> Option<u64> {
        self.value[field].as_u64()
    }
}

/// A running client.
#[derive(Debug)]
pub struct Proc {
    pid: Option<u32>,
    stdin: Option<ChildStdin>,
    lines_rx: mpsc::UnboundedReceiver<(Instant, String)>,
    /// Every JSON line so far, in order.
    pub lines: Vec<Line>,
    /// Lines of stdout that are not a JSON object with an `event` (a contract failure).
    pub bad_lines: Vec<String>,
    stdout_open: bool,
    stderr: Arc<Mutex<Vec<u8>>>,
    exit: watch::Receiver<Option<Option<i32>>>,
    token: String,
}

impl Proc {
    /// Starts `cmd` (a shell command) with the contract's arguments, in its own process group
    /// so that everything it starts can be stopped at the end.
    pub fn spawn(cmd: &str, arguments: &[String], token: &str) -> Result<Self, Failure> {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("{cmd} \"$@\""))
            .arg("natter-conformance-client")
            .args(arguments)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| Failure::new(format!("starting the client ({cmd}): {e}")))?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let (lines_tx, lines_rx) = mpsc::unbounded_channel();
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if lines_tx.send((Instant::now(), line)).is_err() {
                        break;
                    }
                }
            });
        }
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let stderr = stderr.clone();
            tokio::spawn(async move {
                let mut chunk = [0u8; 4096];
                while let Ok(read) = pipe.read(&mut chunk).await {
                    if read == 0 {
                        break;
                    }
                    if let Ok(mut stderr) = stderr.lock() {
                        stderr.extend_from_slice(&chunk[..read]);
                    }
                }
            });
        }
        let (exit_tx, exit) = watch::channel(None);
        tokio::spawn(async move {
            let status = child.wait().await.ok().and_then(|status| status.code());
            let _ = exit_tx.send(Some(status));
        });
        Ok(Self {
            pid,
            stdin,
            lines_rx,
            lines: Vec::new(),
            bad_lines: Vec::new(),
            stdout_open: true,
            stderr,
            exit,
            token: token.to_owned(),
        })
    }

    /// Takes the lines printed so far without waiting.
    pub fn poll(&mut self) {
        while let Ok((at, line)) = self.lines_rx.try_recv() {
            self.take(at, line);
        }
    }

    fn take(&mut self, at: Instant, line: String) {
        match serde_json::from_str::<Value>(&line) {
            Ok(value) if value["event"].is_string() => self.lines.push(Line { at, value }),
            _ if line.trim().is_empty() => {}
            _ => self.bad_lines.push(line),
        }
    }

    /// Waits for the next line, at most until `deadline`; false if none came (or stdout
    /// ended). Cancel-safe.
    pub async fn next_line(&mut self, deadline: Instant) -> bool {
        if !self.stdout_open {
            tokio::time::sleep_until(deadline).await;
            return false;
        }
        match tokio::time::timeout_at(deadline, self.lines_rx.recv()).await {
            Ok(Some((at, line))) => {
                self.take(at, line);
                true
            }
            Ok(None) => {
                self.stdout_open = false;
                false
            }
            Err(_) => false,
        }
    }

    /// The lines whose `event` is `event`.
    pub fn events<'a>(&'a self, event: &'a str) -> impl Iterator<Item = &'a Line> + 'a {
        self.lines.iter().filter(move |line| line.event() == event)
    }

    /// Whether the client printed the event `seq` of `conversation`.
    pub fn printed(&self, conversation: &str, seq: u64) -> bool {
        self.events("message")
            .any(|line| line.str("conversation") == conversation && line.u64("seq") == Some(seq))
    }

    /// The `sent` lines for `body`.
    pub fn sent(&self, body: &str) -> usize {
        self.events("sent")
            .filter(|line| line.str("body") == body)
            .count()
    }

    /// The `send_failed` line for `body`, if any.
    pub fn failed(&self, body: &str) -> Option<&Line> {
        self.events("send_failed")
            .find(|line| line.str("body") == body)
    }

    /// Closes the client's stdin: the contract's signal to acknowledge, save and exit.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The exit status once the process has ended: `Some(None)` if a signal ended it.
    pub fn exit_status(&self) -> Option<Option<i32>> {
        *self.exit.borrow()
    }

    /// Waits up to `wait` for the process to end; its status if it did.
    pub async fn wait_exit(&mut self, wait: Duration) -> Option<Option<i32>> {
        let mut exit = self.exit.clone();
        let ended = tokio::time::timeout(wait, exit.wait_for(Option::is_some)).await;
        self.poll();
        match ended {
            Ok(Ok(status)) => *status,
            _ => None,
        }
    }

    /// A future that resolves when the process ends.
    pub fn ended(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut exit = self.exit.clone();
        async move {
            let _ = exit.wait_for(Option::is_some).await;
        }
    }

    /// Everything written to stderr so far, lossily decoded.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .map(|stderr| String::from_utf8_lossy(&stderr).into_owned())
            .unwrap_or_default()
    }

    /// The last lines of stderr, as TAP comments, for a failure message.
    pub fn stderr_tail(&self) -> String {
        let stderr = self.stderr();
        let lines: Vec<&str> = stderr.lines().collect();
        let start = lines.len().saturating_sub(12);
        lines[start..]
            .iter()
            .map(|line| format!("\n#   {line}"))
            .collect()
    }

    /// Whether the token appears in anything the client printed ([NWP-8.1-2]).
    pub fn leaked_token(&self) -> bool {
        let printed = |text: &str| text.contains(&self.token);
        printed(&self.stderr())
            || self.bad_lines.iter().any(|line| printed(line))
            || self
                .lines
                .iter()
                .any(|line| printed(&line.value.to_string()))
    }

    /// Stops the client and everything it started (its process group).
    pub fn kill(&mut self) {
        self.stdin = None;
        // The shell may have ended while what it started runs on: stop the whole group.
        if let Some(pid) = self.pid.take() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
