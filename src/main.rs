//! The `natter` binary: wires the edge and the broker together.
//!
//! `serve` runs both in one process over an in-process link; `broker` and `edge` run them
//! apart, joined by the `[cluster]` table of a shared config file; `token` mints device
//! tokens; `config` prints the commented default configuration.

mod config;
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
    /// Where storage and the generated token secret live [default: ./natter-data].
    #[arg(long, env = "NATTER_DATA_DIR")]
    data_dir: Option<PathBuf>,
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
fn load(common: &CommonArgs) -> Result<Config, String> {
    let mut config = Config::load(common.config.as_deref())?;
    if let Some(dir) = &common.data_dir {
        config.data_dir = dir.clone();
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
    let mut config = load(&args.common)?;
    apply_listen(&mut config.edge, &args.listen);
    config.broker.backend = parse_backend(args.backend.as_deref(), config.broker.backend);
    config.resolve();
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
    let handle = edge.handle();
    let (tcp, tls, http) = (edge.tcp_addr(), edge.tls_addr(), edge.http_addr());
    info!(?tcp, ?tls, ?http, data_dir = %config.data_dir.display(), "natter serving");
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
        });
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    } else {
        print_welcome(tcp, http, &config);
    }
    let result = running.await.map_err(|e| format!("edge task: {e}"))?;
    broker.shutdown().await;
    info!("stopped");
    result.map_err(|e| format!("edge: {e}"))
}

fn print_welcome(tcp: Option<SocketAddr>, http: Option<SocketAddr>, config: &Config) {
    let data_dir = config.data_dir.display();
    eprintln!("natter is running.");
    if let Some(tcp) = tcp {
        eprintln!("  native protocol: {tcp}");
    }
    if let Some(http) = http {
        eprintln!("  web client and WebSocket: http://{http}/  (ws://{http}/ws)");
        if config.edge.dev {
            eprintln!("  dev tokens: http://{http}/dev");
        }
    }
    eprintln!("  get a token: natter token --data-dir {data_dir} --user alice --device laptop");
}

async fn broker(args: BrokerArgs) -> Result<(), String> {
    let mut config = load(&args.common)?;
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
    info!(node = config.broker.node, %listen, "broker serving links");
    natter_broker::run(config.broker, listener, shutdown_signal())
        .await
        .map_err(|e| format!("broker: {e}"))
}

async fn edge(args: EdgeArgs) -> Result<(), String> {
    let mut config = load(&args.common)?;
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
