//! A real `natter serve` process for system tests: free ports, a fresh data directory, and
//! tokens from `natter token`, exactly as an operator would run it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a failed step should panic"
)]
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The token secret every test server shares.
pub const SECRET: &str = "system-test-secret";

/// The `natter` binary under test.
pub fn natter() -> &'static str {
    env!("CARGO_BIN_EXE_natter")
}

/// A running `natter serve`; killed when dropped.
pub struct Server {
    child: Child,
    /// The data directory (kept across restarts).
    pub data_dir: PathBuf,
    /// The native TCP address.
    pub tcp: String,
    /// The HTTP and WebSocket address.
    pub http: String,
    /// The TLS address, when the server was started with `--tls`.
    pub tls: Option<String>,
    extra: Vec<String>,
    /// The file-descriptor limit the server runs under, when the test sets one.
    nofile: Option<u64>,
    /// Starts so far; each run logs to its own file beside the data directory.
    runs: u32,
}

impl Server {
    /// Starts a server on free loopback ports with a data directory under `dir`.
    pub fn start(dir: &Path, extra: &[&str]) -> Self {
        Self::launch(dir, extra, None)
    }

    /// Starts a server whose file-descriptor limit (soft and hard) is `nofile`.
    pub fn start_with_nofile(dir: &Path, nofile: u64) -> Self {
        Self::launch(dir, &[], Some(nofile))
    }

    fn launch(dir: &Path, extra: &[&str], nofile: Option<u64>) -> Self {
        let data_dir = dir.join("data");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, ready) = spawn(&data_dir, "127.0.0.1:0", "127.0.0.1:0", &extra, nofile, 0);
        let address = |key: &str| ready[key].as_str().map(str::to_string);
        Self {
            child,
            data_dir,
            tcp: address("tcp").expect("a TCP address"),
            http: address("http").expect("an HTTP address"),
            tls: address("tls"),
            extra,
            nofile,
            runs: 1,
        }
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server with SIGKILL: no drain, no flush, as in a crash.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL natter");
        self.child.wait().expect("reap natter");
    }

    /// The native TCP address as a client URL.
    pub fn url(&self) -> String {
        format!("tcp://{}", self.tcp)
    }

    /// Sends SIGTERM: the server drains (GOAWAY to clients) and exits.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Drains the server with SIGTERM, checks it exited cleanly, and starts it again on the
    /// same ports and data directory.
    pub fn drain_and_restart(&mut self) {
        self.terminate();
        self.wait_exit_success();
        self.restart();
    }

    /// Waits for the server to exit on its own and checks it exited with success.
    pub fn wait_exit_success(&mut self) {
        let status = self.child.wait().expect("wait for natter");
        assert!(status.success(), "natter exited with {status}");
    }

    /// Starts the server again on the same ports and data directory.
    pub fn restart(&mut self) {
        let (child, ready) = spawn(
            &self.data_dir,
            &self.tcp,
            &self.http,
            &self.extra,
            self.nofile,
            self.runs,
        );
        assert_eq!(ready["tcp"].as_str(), Some(self.tcp.as_str()));
        self.child = child;
        self.runs += 1;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token for `user` on `device`, minted by `natter token` as an operator would.
pub fn token(user: &str, device: &str) -> String {
    let output = Command::new(natter())
        .args([
            "token", "--secret", SECRET, "--user", user, "--device", device,
        ])
        .output()
        .expect("run natter token");
    assert!(
        output.status.success(),
        "natter token: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("token is UTF-8")
        .trim()
        .to_string()
}

/// Starts `natter serve` and waits for its ready line, which it returns. The server's log goes
/// to `data.log.<run>` beside the data directory: a pipe nobody reads could fill and block it.
fn spawn(
    data_dir: &Path,
    tcp: &str,
    http: &str,
    extra: &[String],
    nofile: Option<u64>,
    run: u32,
) -> (Child, serde_json::Value) {
    let log_path = data_dir.with_extension(format!("log.{run}"));
    let log = std::fs::File::create(&log_path).expect("create the server log");
    // A descriptor limit is set by a shell around the server: the workspace forbids the
    // unsafe code setrlimit in pre_exec would need.
    let mut command = match nofile {
        None => Command::new(natter()),
        Some(limit) => {
            let mut shell = Command::new("sh");
            shell
                .arg("-c")
                .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                .arg(natter());
            shell
        }
    };
    let mut child = command
        .args([
            "serve",
            "--print-ready",
            "--token-secret",
            SECRET,
            "--tcp",
            tcp,
            "--http",
            http,
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start natter serve");
    // Read the ready line on a thread, so a server that hangs before it fails the test
    // instead of hanging it.
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(PATIENCE).unwrap_or_default();
    if line.is_empty() {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        panic!("natter serve printed no ready line; its log:\n{log}");
    }
    let ready: serde_json::Value = serde_json::from_str(&line).expect("the ready line is JSON");
    assert_eq!(ready["event"], "ready");
    (child, ready)
}

/// How long cluster tests wait for a step before failing.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// A free loopback port.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// Starts `natter <args[0]> --config <config> <args[1..]>` (a broker or an edge), with its
/// log going to `stderr`.
pub fn spawn_node(config: &Path, args: &[&str], stderr: Stdio) -> Child {
    Command::new(natter())
        .arg(args[0])
        .arg("--config")
        .arg(config)
        .args(&args[1..])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start natter")
}

/// Child processes, killed when dropped.
pub struct Processes(pub Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Two users whose home brokers differ, and whose conversation the first one's home does
/// not own, so a message travels edge -> owner -> the other home broker.
pub fn spread_users(ring: &natter_codec::ring::Ring) -> (String, String) {
    for a in 0..100 {
        for b in 0..100 {
            let (alice, bob) = (format!("alice{a}"), format!("bob{b}"));
            let conversation = natter_codec::ids::direct_conversation(&alice, &bob);
            let (home_a, home_b) = (ring.home(&alice), ring.home(&bob));
            if home_a != home_b && ring.conversation_owner(&conversation) == home_b {
                return (alice, bob);
            }
        }
    }
    panic!("no spread of users found");
}

/// Connects `user` to the edge at `edge`, retrying while the edge may still be dialing the
/// brokers.
pub async fn connect_when_linked(
    edge: &str,
    user: &str,
    store: &natter_client::MemoryCursorStore,
) -> (natter_client::Client, natter_client::Events) {
    let config = natter_client::Config::new(&format!("tcp://{edge}"), token(user, "phone"))
        .expect("config")
        .with_cursor_store(store.clone());
    tokio::time::timeout(PATIENCE, async {
        loop {
            match natter_client::Client::connect(config.clone()).await {
                Ok(connected) => return connected,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .expect("the edge serves")
}

/// The seq of the next message among `events`.
pub async fn next_message(events: &mut natter_client::Events) -> u64 {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match events.next().await {
                Some(natter_client::Event::Message(message)) => return message.seq,
                Some(_) => {}
                None => panic!("events ended"),
            }
        }
    })
    .await
    .expect("a message")
}
