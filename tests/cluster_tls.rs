//! Mutual TLS on cluster links, on real processes: two brokers and an edge whose certificates
//! one CA signed carry messages between brokers, while an edge whose certificate another CA
//! signed is refused by the brokers and so cannot serve anyone.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a failed step should panic"
)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Stdio};
use std::sync::mpsc;

use natter_client::{Client, Config, Error, ErrorCode, MemoryCursorStore};
use natter_codec::ring::{DEFAULT_VNODES, Ring};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use support::{
    PATIENCE, Processes, connect_when_linked, free_port, next_message, spawn_node, spread_users,
};

/// A certificate authority writing its certificate and the ones it signs into a directory.
struct Authority {
    cert: rcgen::Certificate,
    key: KeyPair,
    dir: PathBuf,
}

impl Authority {
    fn new(dir: &Path, name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} CA"));
        let cert = params.self_signed(&key).expect("CA certificate");
        std::fs::write(dir.join(format!("{name}-ca.pem")), cert.pem()).expect("write CA");
        Self {
            cert,
            key,
            dir: dir.to_path_buf(),
        }
    }

    /// Signs a certificate naming `node` and writes it with its key; returns both paths.
    fn issue(&self, node: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("node key");
        let cert = CertificateParams::new(vec![node.to_string()])
            .expect("node params")
            .signed_by(&key, &self.cert, &self.key)
            .expect("node certificate");
        let (cert_path, key_path) = (
            self.dir.join(format!("{node}.pem")),
            self.dir.join(format!("{node}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).expect("write certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }
}

/// Writes the config file of one node: the shared cluster, with this node's certificate.
fn node_config(brokers: &str, (cert, key): (PathBuf, PathBuf), ca: &Path) -> PathBuf {
    let path = cert.with_extension("toml");
    let text = format!(
        "[cluster]\nring_version = 3\nsecret = \"cluster secret\"\nbrokers = [{brokers}]\n\
         tls = {{ cert = {cert:?}, key = {key:?}, ca = {ca:?} }}\n\n\
         [edge]\ntoken_keys = [{{ id = \"k1\", secret = \"{}\" }}]\n",
        support::SECRET
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// Starts an edge on `tcp`; its data directory is named after `node`.
fn spawn_edge(dir: &Path, config: &Path, node: &str, tcp: &str, stderr: Stdio) -> Child {
    let http = format!("127.0.0.1:{}", free_port());
    let data = dir.join(node);
    let data = data.to_str().expect("UTF-8 path");
    let args = [
        "edge",
        "--node",
        node,
        "--tcp",
        tcp,
        "--http",
        &http,
        "--data-dir",
        data,
    ];
    spawn_node(config, &args, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_need_a_certificate_from_the_cluster_ca() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let cluster_ca = Authority::new(dir, "cluster");
    let rogue_ca = Authority::new(dir, "rogue");
    let ca = dir.join("cluster-ca.pem");
    let (link1, link2) = (free_port(), free_port());
    let brokers = format!(
        "{{ id = \"b1\", link = \"127.0.0.1:{link1}\" }}, \
         {{ id = \"b2\", link = \"127.0.0.1:{link2}\" }}"
    );

    let mut processes = Vec::new();
    for node in ["b1", "b2"] {
        let config = node_config(&brokers, cluster_ca.issue(node), &ca);
        let data = dir.join(format!("{node}-data"));
        let data = data.to_str().expect("UTF-8 path");
        let args = ["broker", "--node", node, "--data-dir", data];
        processes.push(spawn_node(&config, &args, Stdio::inherit()));
    }
    let edge = format!("127.0.0.1:{}", free_port());
    let config = node_config(&brokers, cluster_ca.issue("e0"), &ca);
    processes.push(spawn_edge(dir, &config, "e0", &edge, Stdio::inherit()));
    // The rogue edge trusts the cluster CA, so it accepts the brokers, but its own
    // certificate comes from another CA: the brokers must refuse it.
    let rogue = format!("127.0.0.1:{}", free_port());
    let config = node_config(&brokers, rogue_ca.issue("e9"), &ca);
    let mut rogue_edge = spawn_edge(dir, &config, "e9", &rogue, Stdio::piped());
    let mut rogue_log = log_lines(rogue_edge.stderr.take().expect("stderr is piped"));
    processes.push(rogue_edge);
    let _processes = Processes(processes);

    // Every message crosses a broker-to-broker link as well as the edge's links.
    let ring = Ring::new(3, ["b1".to_string(), "b2".to_string()], DEFAULT_VNODES);
    let (alice, bob) = spread_users(&ring);
    let (alice_client, _alice_events) =
        connect_when_linked(&edge, &alice, &MemoryCursorStore::default()).await;
    let (_bob_client, mut bob_events) =
        connect_when_linked(&edge, &bob, &MemoryCursorStore::default()).await;
    let chat = alice_client.direct_conversation(&bob);
    let sent = alice_client
        .send_text(&chat, "over TLS")
        .await
        .expect("send");
    assert_eq!(next_message(&mut bob_events).await, sent.seq);

    // Until the brokers listen its dials are merely refused; then their TLS alert shows.
    let refusal = tokio::task::spawn_blocking(move || {
        rogue_log.find(|line| line.contains("link dial failed") && line.contains("fatal alert"))
    })
    .await
    .expect("log reader");
    assert!(
        refusal.is_some(),
        "the brokers refuse the rogue edge's certificate with a TLS alert"
    );
    let config =
        Config::new(&format!("tcp://{rogue}"), support::token(&alice, "tablet")).expect("config");
    let Err(refused) = Client::connect(config).await else {
        panic!("an edge without a cluster certificate served a client");
    };
    // The edge closes with GOAWAY UNAVAILABLE, which the SDK reports as a transport error
    // during the handshake.
    let unavailable =
        matches!(&refused, Error::Server { code, .. } if *code == ErrorCode::UNAVAILABLE);
    assert!(
        unavailable || matches!(refused, Error::Transport(_)),
        "the rogue edge cannot reach a broker: {refused}"
    );

    let again = alice_client
        .send_text(&chat, "still here")
        .await
        .expect("send");
    assert_eq!(next_message(&mut bob_events).await, again.seq);
}

/// The lines of a child's `stderr`, as they come, echoed to ours; they end when the child
/// exits or after [`PATIENCE`] without a line.
fn log_lines(stderr: ChildStderr) -> impl Iterator<Item = String> {
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("rogue edge: {line}");
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    std::iter::from_fn(move || received.recv_timeout(PATIENCE).ok())
}
