//! The `natter` binary: wires the edge and the broker together.
//!
//! `serve` runs both in one process over an in-process link; `broker` and `edge` run them
//! apart, joined by the `[cluster]` table of a shared config file; `token` mints device
//! tokens; `config` prints the commented default configuration.

mod config;
mod process_metrics;
mod secret;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use natter_broker::tls::LinkTls;
use natter_broker::{Backend, Broker};
use natter_edge::{
    BoxedStream, ConnectFuture, Edge, EdgeConfig, TcpConnector, TokenKey, TokenKeys,
};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, DEFAULT_CONFIG, LogConfig};

/// natter: a chat broker that never loses or reorders a message.
#[derive(Debug, Parser)]
#[command(name = "natter", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an edge and a broker in one process, with embedded storage in the data directory.
    ///
    /// Clients connect over TCP (and TLS if configured) or a WebSocket at /ws on the HTTP
    /// listener. Without a token secret, one is generated once and kept in the data
    /// directory, where `natter token` finds it.
    Serve(ServeArgs),
    /// Run a broker alone; its peers and the ring come from the [cluster] table.
    Broker(BrokerArgs),
    /// Run an edge alone, routing to the brokers of the [cluster] table.
    Edge(EdgeArgs),
    /// Mint a token for a user's device and print it.
    Token(TokenArgs),
    /// Print the default configuration file, with comments.
    Config,
}

/// Options every server subcommand takes.
#[derive(Debug, Args)]
struct CommonArgs {
    /// The TOML config file (`natter config` prints one).
    #[arg(long, env = "NATTER_CONFIG")]
    config: Option<PathBuf>,
    /// Log one JSON object per line on stderr.
    #[arg(long, env = "NATTER_LOG_JSON")]
    log_json: bool,
}

/// Options of the edge listeners, shared by `serve` and `edge`.
#[derive(Debug, Args)]
struct ListenArgs {
    /// Native protocol over TCP; port 0 picks a free port [default: 127.0.0.1:7400].
    #[arg(long, env = "NATTER_TCP")]
    tcp: Option<SocketAddr>,
    /// Native protocol over TLS; needs --tls-cert and --tls-key [default: off].
    #[arg(long, env = "NATTER_TLS", requires_all = ["tls_cert", "tls_key"])]
    tls: Option<SocketAddr>,
    /// PEM certificate chain for --tls.
    #[arg(long, env = "NATTER_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls.
    #[arg(long, env = "NATTER_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// HTTP: health, metrics, WebSocket bridge, backend API, web client [default: 127.0.0.1:7480].
    #[arg(long, env = "NATTER_HTTP")]
    http: Option<SocketAddr>,
    /// MQTT 3.1.1 and 5 devices (spec chapter 14) [default: off].
    #[arg(long, env = "NATTER_MQTT")]
    mqtt: Option<SocketAddr>,
    /// Dev mode: a loopback-only page and endpoint that hand out tokens to anyone.
    #[arg(long, env = "NATTER_DEV")]
    dev: bool,
    /// The token signing secret (key id "k1"); overrides the config file.
    #[arg(long, env = "NATTER_TOKEN_SECRET")]
    token_secret: Option<String>,
    /// A bearer key for the backend HTTP API; repeat for several.
    #[arg(long = "api-key", env = "NATTER_API_KEY")]
    api_keys: Vec<String>,
    /// The web client's build, served at / [default: clients/web/dist if it exists].
    #[arg(long, env = "NATTER_WEB_DIR")]
    web_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Where storage and the generated token secret live [default: ./natter-data].
    #[arg(long, env = "NATTER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    listen: ListenArgs,
    /// Storage backend [default: redb].
    #[arg(long, env = "NATTER_BACKEND", value_parser = ["redb", "sled"])]
    backend: Option<String>,
    /// Print one JSON line on stdout once every listener is bound and the broker linked:
    /// {"event":"ready","tcp":..,"http":..,"tls":..}.
    #[arg(long)]
    print_ready: bool,
}

#[derive(Debug, Args)]
struct BrokerArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Where storage lives [default: ./natter-data].
    #[arg(long, env = "NATTER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (and /healthz) [default: off].
    #[arg(long, env = "NATTER_METRICS", value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// This broker's node id [default: broker.node, "b1"].
    #[arg(long, env = "NATTER_NODE")]
    node: Option<String>,
    /// Where to accept links [default: this node's address in [cluster], else 127.0.0.1:7600].
    #[arg(long, env = "NATTER_LISTEN")]
    listen: Option<SocketAddr>,
    /// Storage backend [default: redb].
    #[arg(long, env = "NATTER_BACKEND", value_parser = ["redb", "sled"])]
    backend: Option<String>,
}

#[derive(Debug, Args)]
struct EdgeArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    listen: ListenArgs,
    /// An edge keeps no data: accepted so that older command lines still start, and ignored.
    #[arg(long, hide = true)]
    data_dir: Option<PathBuf>,
    /// This edge's node id [default: edge.node_id, "edge-1"].
    #[arg(long, env = "NATTER_NODE")]
    node: Option<String>,
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// The signing secret [default: from the config file, else the data directory].
    #[arg(long, env = "NATTER_TOKEN_SECRET")]
    secret: Option<String>,
    /// The user id.
    #[arg(long)]
    user: String,
    /// The device id.
    #[arg(long, default_value = "cli")]
    device: String,
    /// Validity in seconds.
    #[arg(long, default_value_t = 86_400)]
    ttl_secs: u64,
    /// The TOML config file, to find the token keys or the data directory.
    #[arg(long, env = "NATTER_CONFIG")]
    config: Option<PathBuf>,
    /// The data directory holding a `serve`-generated secret [default: ./natter-data].
    #[arg(long, env = "NATTER_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Config => {
            print!("{DEFAULT_CONFIG}");
            Ok(())
        }
        Command::Token(args) => token(args),
        Command::Serve(args) => runtime().and_then(|rt| rt.block_on(serve(args))),
        Command::Broker(args) => runtime().and_then(|rt| rt.block_on(broker(args))),
        Command::Edge(args) => runtime().and_then(|rt| rt.block_on(edge(args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("natter: {message}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Runtime::new().map_err(|e| format!("starting the runtime: {e}"))
}

/// Loads the file and applies the common overrides.
fn load(common: &CommonArgs, data_dir: Option<&Path>) -> Result<Config, String> {
    let mut config = Config::load(common.config.as_deref())?;
    if let Some(dir) = data_dir {
        config.data_dir = dir.to_path_buf();
    }
    config.log.json |= common.log_json;
    init_logging(&config.log);
    Ok(config)
}

fn apply_listen(edge: &mut EdgeConfig, listen: &ListenArgs) {
    if let Some(tcp) = listen.tcp {
        edge.tcp = Some(tcp);
    }
    if let Some(http) = listen.http {
        edge.http = Some(http);
    }
    if let Some(mqtt) = listen.mqtt {
        edge.mqtt = Some(mqtt);
    }
    if listen.tls.is_some() {
        edge.tls = listen.tls;
        edge.tls_cert = listen.tls_cert.clone();
        edge.tls_key = listen.tls_key.clone();
    }
    edge.dev |= listen.dev;
    if let Some(secret) = &listen.token_secret {
        edge.token_keys = vec![TokenKey {
            id: "k1".into(),
            secret: secret.clone(),
        }];
    }
    edge.api_keys.extend(listen.api_keys.iter().cloned());
    if let Some(dir) = &listen.web_dir {
        edge.web_dir = Some(dir.clone());
    }
    let bundled = Path::new("clients/web/dist");
    if edge.web_dir.is_none() && bundled.is_dir() {
        edge.web_dir = Some(bundled.to_path_buf());
    }
    if edge.dev {
        warn!(
            "DEV MODE: anyone on this machine can get a token for any user at /dev; never use it in production"
        );
    }
}

fn parse_backend(name: Option<&str>, current: Backend) -> Backend {
    match name {
        Some("sled") => Backend::Sled,
        Some("redb") => Backend::Redb,
        _ => current,
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let mut config = load(&args.common, args.data_dir.as_deref())?;
    let from_file = !config.edge.token_keys.is_empty();
    apply_listen(&mut config.edge, &args.listen);
    config.broker.backend = parse_backend(args.backend.as_deref(), config.broker.backend);
    config.resolve();
    let secret_source = match (&args.listen.token_secret, &args.common.config) {
        (Some(secret), _) => SecretSource::Given(secret.clone()),
        (None, Some(file)) if from_file => SecretSource::ConfigFile(file.clone()),
        _ => SecretSource::DataDir,
    };
    if config.edge.token_keys.is_empty() {
        config.edge.token_keys = vec![secret::load_or_create(&config.data_dir)?];
    }
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("creating {}: {e}", config.data_dir.display()))?;
    let broker = Broker::open(config.broker.clone())
        .await
        .map_err(|e| format!("opening the broker: {e}"))?;
    let linked = broker.clone();
    // The edge's link to the broker is an in-process pipe carrying the same frames as TCP.
    let connector = move |_: &str| -> ConnectFuture {
        let broker = linked.clone();
        Box::pin(async move {
            let (edge_side, broker_side) = tokio::io::duplex(256 * 1024);
            tokio::spawn(async move {
                if let Err(error) = broker.serve_link(broker_side).await {
                    tracing::debug!(%error, "in-process link ended");
                }
            });
            Ok(Box::new(edge_side) as BoxedStream)
        })
    };
    let edge = Edge::bind(config.edge.clone(), connector)
        .await
        .map_err(|e| format!("binding listeners: {e}"))?;
    // One /metrics and one admin view for the edge, its broker and the process.
    let registry = edge.metrics().registry();
    broker
        .register_metrics(registry)
        .map_err(|e| format!("broker metrics: {e}"))?;
    register_process_metrics(registry)?;
    let status = broker.clone();
    edge.admin_section("broker", move || {
        serde_json::to_value(status.status()).unwrap_or_default()
    });
    let handle = edge.handle();
    let (tcp, tls, http) = (edge.tcp_addr(), edge.tls_addr(), edge.http_addr());
    let mqtt = edge.mqtt_addr();
    info!(?tcp, ?tls, ?http, ?mqtt, data_dir = %config.data_dir.display(), "natter serving");
    let running = tokio::spawn(edge.run(shutdown_signal()));
    if args.print_ready {
        if tokio::time::timeout(Duration::from_secs(30), handle.wait_ready())
            .await
            .is_err()
        {
            return Err("the broker link did not come up within 30 s".into());
        }
        let address = |addr: Option<SocketAddr>| addr.map(|a| a.to_string());
        let line = serde_json::json!({
            "event": "ready",
            "tcp": address(tcp),
            "http": address(http),
            "tls": address(tls),
            "mqtt": address(mqtt),
        });
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    } else {
        print_welcome(tcp, http, &config, &secret_source);
    }
    let result = running.await.map_err(|e| format!("edge task: {e}"))?;
    broker.shutdown().await;
    info!("stopped");
    result.map_err(|e| format!("edge: {e}"))
}

/// Where `serve` got its token signing key, which is where `natter token` must get it too.
#[derive(Debug)]
enum SecretSource {
    /// Generated into (or read from) the data directory.
    DataDir,
    /// `[edge].token_keys` of this config file.
    ConfigFile(PathBuf),
    /// `--token-secret` or `NATTER_TOKEN_SECRET`.
    Given(String),
}

fn print_welcome(
    tcp: Option<SocketAddr>,
    http: Option<SocketAddr>,
    config: &Config,
    secret: &SecretSource,
) {
    eprintln!("natter is running.");
    if let Some(tcp) = tcp {
        eprintln!("  native protocol: {tcp}");
    }
    if let Some(http) = http {
        eprintln!("  web client and WebSocket: http://{http}/  (ws://{http}/ws)");
        if config.edge.dev {
            eprintln!("  dev tokens: http://{http}/dev");
        }
        eprintln!("  metrics: http://{http}/metrics");
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    let exe = std::env::current_exe()
        .map(|exe| command_path(&exe, &cwd, std::env::var_os("PATH")))
        .unwrap_or_else(|_| "natter".into());
    eprintln!("  get a token: {}", token_command(&exe, config, secret));
}

/// How to name the running binary in a command typed in `cwd`: its bare name when `PATH` finds
/// this very file, `./relative/path` when it lies under `cwd`, else its absolute path.
fn command_path(exe: &Path, cwd: &Path, path: Option<std::ffi::OsString>) -> String {
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    let this = canonical(exe);
    if let (Some(name), Some(path)) = (exe.file_name(), path) {
        let found = std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file());
        if found.is_some_and(|found| this.is_some() && canonical(&found) == this) {
            return shell_word(&name.to_string_lossy());
        }
    }
    let exe = this.unwrap_or_else(|| exe.to_path_buf());
    let cwd = canonical(cwd).unwrap_or_else(|| cwd.to_path_buf());
    match exe.strip_prefix(&cwd) {
        Ok(relative) => shell_word(&format!("./{}", relative.display())),
        Err(_) => shell_word(&exe.display().to_string()),
    }
}

/// The `natter token` command that finds the secret `serve` signs with, as typed in the
/// directory `serve` was started from.
fn token_command(exe: &str, config: &Config, secret: &SecretSource) -> String {
    let source = match secret {
        SecretSource::DataDir => format!(
            "--data-dir {}",
            shell_word(&config.data_dir.display().to_string())
        ),
        SecretSource::ConfigFile(file) => {
            format!("--config {}", shell_word(&file.display().to_string()))
        }
        // From the environment, `natter token` reads the same variable; a secret given as a
        // flag is not repeated on the terminal.
        SecretSource::Given(given)
            if std::env::var("NATTER_TOKEN_SECRET").is_ok_and(|env| env == *given) =>
        {
            String::new()
        }
        SecretSource::Given(_) => "--secret <the --token-secret of this server>".into(),
    };
    let source = if source.is_empty() {
        source
    } else {
        format!("{source} ")
    };
    format!("{exe} token {source}--user alice --device laptop")
}

/// `word` quoted for a POSIX shell when it needs to be.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:=@%+,".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

fn register_process_metrics(registry: &prometheus::Registry) -> Result<(), String> {
    let process =
        process_metrics::ProcessCollector::new().map_err(|e| format!("process metrics: {e}"))?;
    registry
        .register(Box::new(process))
        .map_err(|e| format!("process metrics: {e}"))
}

/// Serves `registry` at `/metrics` (and `/healthz`) until the task is dropped: the metrics
/// listener of `natter broker`, which has no HTTP listener of its own.
async fn serve_metrics(listener: tokio::net::TcpListener, registry: prometheus::Registry) {
    use axum::http::header;
    use axum::routing::get;
    let render = move || {
        let registry = registry.clone();
        async move {
            let mut out = Vec::new();
            let encoded = prometheus::Encoder::encode(
                &prometheus::TextEncoder::new(),
                &registry.gather(),
                &mut out,
            );
            if let Err(error) = encoded {
                warn!(%error, "encoding metrics");
            }
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
        }
    };
    let app = axum::Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }));
    if let Err(error) = axum::serve(listener, app).await {
        error!(%error, "metrics listener failed");
    }
}

async fn broker(args: BrokerArgs) -> Result<(), String> {
    let mut config = load(&args.common, args.data_dir.as_deref())?;
    if let Some(node) = args.node {
        config.broker.node = node;
    }
    config.broker.backend = parse_backend(args.backend.as_deref(), config.broker.backend);
    config.resolve();
    let own = config
        .cluster
        .brokers
        .iter()
        .find(|b| b.id == config.broker.node)
        .map(|b| b.link);
    let listen = args
        .listen
        .or(own)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7600)));
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("creating {}: {e}", config.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("binding {listen}: {e}"))?;
    let metrics_listener = match args.metrics {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("binding the metrics listener {addr}: {e}"))?,
        ),
        None => None,
    };
    let node = config.broker.node.clone();
    let broker = Broker::open(config.broker)
        .await
        .map_err(|e| format!("opening the broker: {e}"))?;
    let metrics = match metrics_listener {
        Some(metrics_listener) => {
            let registry = prometheus::Registry::new();
            broker
                .register_metrics(&registry)
                .map_err(|e| format!("broker metrics: {e}"))?;
            register_process_metrics(&registry)?;
            let addr = metrics_listener.local_addr().ok();
            info!(node, ?addr, "broker metrics at /metrics");
            Some(tokio::spawn(serve_metrics(metrics_listener, registry)))
        }
        None => None,
    };
    info!(node, %listen, "broker serving links");
    let served = broker.serve(listener, shutdown_signal()).await;
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    served.map_err(|e| format!("broker: {e}"))
}

async fn edge(args: EdgeArgs) -> Result<(), String> {
    let mut config = load(&args.common, None)?;
    if let Some(dir) = &args.data_dir {
        warn!(dir = %dir.display(), "--data-dir is ignored: an edge keeps no data");
    }
    apply_listen(&mut config.edge, &args.listen);
    if let Some(node) = args.node {
        config.edge.node_id = node;
    }
    if config.cluster.brokers.is_empty() {
        return Err("`natter edge` needs the brokers in the [cluster] table of --config".into());
    }
    config.resolve();
    let mut connector = TcpConnector::new(
        config
            .cluster
            .brokers
            .iter()
            .map(|b| (b.id.clone(), b.link.to_string())),
    );
    if let Some(files) = &config.cluster.tls {
        let tls = LinkTls::load(files).map_err(|e| format!("link TLS: {e}"))?;
        connector = connector.with_tls(tls.connector());
    }
    let edge = Edge::bind(config.edge, connector)
        .await
        .map_err(|e| format!("binding listeners: {e}"))?;
    register_process_metrics(edge.metrics().registry())?;
    info!(tcp = ?edge.tcp_addr(), tls = ?edge.tls_addr(), http = ?edge.http_addr(), "edge serving");
    edge.run(shutdown_signal())
        .await
        .map_err(|e| format!("edge: {e}"))
}

fn token(args: TokenArgs) -> Result<(), String> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    let keys = match args.secret {
        Some(secret) => vec![TokenKey {
            id: "k1".into(),
            secret,
        }],
        None if !config.edge.token_keys.is_empty() => config.edge.token_keys,
        None => vec![secret::load(&config.data_dir)?],
    };
    if let Some(problem) = natter_codec::ids::user_id_problem(&args.user) {
        return Err(format!("{:?} is not a valid user id: {problem}", args.user));
    }
    if !natter_codec::ids::is_valid_device_id(&args.device) {
        return Err("a device id is 1 to 64 bytes, without white space or '/'".into());
    }
    let keys = TokenKeys::new(keys).ok_or("no token key")?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let expires_at = now_ms.saturating_add(args.ttl_secs.saturating_mul(1000));
    println!("{}", keys.mint(&args.user, &args.device, expires_at));
    Ok(())
}

fn init_logging(log: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = if log.json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if let Err(error) = installed {
        eprintln!("natter: logging not set up: {error}");
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            info!("signal received, draining");
            return;
        }
    }
    if tokio::signal::ctrl_c().await.is_err() {
        error!("cannot listen for Ctrl-C; stop with SIGKILL");
        std::future::pending::<()>().await;
    }
    info!("signal received, draining");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_binary_is_named_as_it_can_be_typed() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("target/release")).unwrap();
        let exe = root.join("target/release/natter");
        std::fs::write(&exe, "").unwrap();
        assert_eq!(command_path(&exe, &root, None), "./target/release/natter");
        let elsewhere = root.join("target");
        assert_eq!(command_path(&exe, &elsewhere, None), "./release/natter");
        let outside = tempfile::tempdir().unwrap();
        assert_eq!(
            command_path(&exe, outside.path(), None),
            exe.display().to_string()
        );
        let on_path = std::env::join_paths([root.join("target/release")]).unwrap();
        assert_eq!(command_path(&exe, outside.path(), Some(on_path)), "natter");
    }

    #[test]
    fn the_token_command_finds_the_secret_where_serve_found_it() {
        let mut config = Config::default();
        let command = |config: &Config, source| token_command("./natter", config, &source);
        assert_eq!(
            command(&config, SecretSource::DataDir),
            "./natter token --data-dir natter-data --user alice --device laptop"
        );
        config.data_dir = PathBuf::from("my data");
        assert_eq!(
            command(&config, SecretSource::DataDir),
            "./natter token --data-dir 'my data' --user alice --device laptop"
        );
        assert_eq!(
            command(&config, SecretSource::ConfigFile("natter.toml".into())),
            "./natter token --config natter.toml --user alice --device laptop"
        );
        assert!(
            !command(&config, SecretSource::Given("s3cret-42".into())).contains("s3cret-42"),
            "a secret given as a flag is not printed"
        );
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
