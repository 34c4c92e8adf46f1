//! `scripts/serve` on a throwaway web project with a stand-in `npm` that logs what it is asked
//! and can be told to be offline or to fail: the server starts whatever npm does, npm runs
//! only when the page is out of date, and a failed build leaves the last good page served.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a failed step should panic"
)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use support::PATIENCE;

/// Stands in for npm: `ci` wipes node_modules first like the real one, then installs unless
/// `FAKE_NPM_OFFLINE` is set; `run build` empties dist/ first like build.mjs, then writes the
/// page unless `FAKE_BUILD_FAIL` is set.
const FAKE_NPM: &str = r#"#!/usr/bin/env bash
echo "$*" >> "$FAKE_NPM_LOG"
case "$1" in
  ci)
    rm -rf node_modules
    if [[ -n ${FAKE_NPM_OFFLINE:-} ]]; then
      echo "npm error code ENOTCACHED (registry $npm_config_registry)" >&2
      exit 1
    fi
    mkdir -p node_modules && echo '{}' > node_modules/.package-lock.json ;;
  run)
    rm -rf dist
    if [[ -n ${FAKE_BUILD_FAIL:-} ]]; then echo "build failed" >&2; exit 1; fi
    mkdir -p dist && cp index.html dist/index.html ;;
esac
"#;

struct Project {
    _dir: tempfile::TempDir,
    root: PathBuf,
    web: PathBuf,
    bin: PathBuf,
    log: PathBuf,
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let web = root.join("web");
        std::fs::create_dir_all(web.join("src")).unwrap();
        std::fs::write(web.join("package.json"), "{}\n").unwrap();
        std::fs::write(web.join("package-lock.json"), "{}\n").unwrap();
        std::fs::write(web.join("src/app.ts"), "export {};\n").unwrap();
        std::fs::write(web.join("index.html"), "page v1\n").unwrap();
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let npm = bin.join("npm");
        std::fs::write(&npm, FAKE_NPM).unwrap();
        let status = Command::new("chmod").arg("+x").arg(&npm).status().unwrap();
        assert!(status.success());
        let log = root.join("npm.log");
        std::fs::write(&log, "").unwrap();
        Self {
            _dir: dir,
            root,
            web,
            bin,
            log,
        }
    }

    /// What npm was asked since the last call.
    fn npm_calls(&self) -> Vec<String> {
        let calls = std::fs::read_to_string(&self.log).unwrap();
        std::fs::write(&self.log, "").unwrap();
        calls
            .lines()
            .map(|line| {
                line.split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    /// Changes files of the project well after the last install and build: every source is
    /// dated before the install and build marks, which are dated before now, so that a file
    /// system with coarse timestamps cannot blur the order.
    fn change(&self, files: &[(&str, &str)]) {
        let now = SystemTime::now();
        for source in [
            "package.json",
            "package-lock.json",
            "index.html",
            "src/app.ts",
        ] {
            set_modified(&self.web.join(source), now - Duration::from_secs(20));
        }
        for mark in [".package-lock.json", ".natter-serve-build"] {
            set_modified(
                &self.web.join("node_modules").join(mark),
                now - Duration::from_secs(10),
            );
        }
        for (file, contents) in files {
            std::fs::write(self.web.join(file), contents).unwrap();
        }
    }

    /// Runs scripts/serve; returns the server (killed on drop), its HTTP address and what
    /// the script said on stderr before the server was ready.
    fn serve(&self, env: &[(&str, &str)]) -> Served {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/serve");
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let stderr_path = self.root.join("serve.err");
        let mut child = Command::new(script)
            .args([
                "--print-ready",
                "--tcp",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(self.root.join("data"))
            .env("PATH", path)
            .env("NATTER_BIN", support::natter())
            .env("NATTER_WEB_PROJECT", &self.web)
            .env("FAKE_NPM_LOG", &self.log)
            // Nothing answers there: a registry that cannot be reached.
            .env("npm_config_registry", "http://127.0.0.1:9/")
            .env("RUST_LOG", "error")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(PATIENCE).unwrap_or_default();
        let said = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        assert!(
            !line.is_empty(),
            "the server did not start; the script said:\n{said}"
        );
        let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
        Served {
            child,
            http: ready["http"].as_str().unwrap().to_string(),
            said,
        }
    }
}

/// Dates a file, if it exists.
fn set_modified(path: &Path, time: SystemTime) {
    if let Ok(file) = std::fs::File::options().write(true).open(path) {
        file.set_modified(time).unwrap();
    }
}

struct Served {
    child: Child,
    http: String,
    said: String,
}

impl Served {
    /// GET / as a browser would: the status and the body.
    fn page(&self) -> (u16, String) {
        let mut stream = std::net::TcpStream::connect(&self.http).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: natter\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response.split_once("\r\n\r\n").unwrap().1.to_string();
        (status, body)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_server_starts_whatever_npm_does() {
    let project = Project::new();

    // First start: install, build, serve the page.
    let served = project.serve(&[]);
    assert_eq!(
        project.npm_calls(),
        ["ci --offline", "run --silent"],
        "{}",
        served.said
    );
    assert_eq!(served.page(), (200, "page v1\n".into()));
    drop(served);

    // Nothing changed: npm is not even started.
    let served = project.serve(&[]);
    assert_eq!(project.npm_calls(), Vec::<String>::new(), "{}", served.said);
    assert_eq!(served.page(), (200, "page v1\n".into()));
    drop(served);

    // A source changed: rebuilt, nothing reinstalled.
    project.change(&[("index.html", "page v2\n")]);
    let served = project.serve(&[]);
    assert_eq!(project.npm_calls(), ["run --silent"], "{}", served.said);
    assert_eq!(served.page(), (200, "page v2\n".into()));
    drop(served);

    // The packages changed while offline: the install fails, the packages it had put aside
    // come back, and the changed page is built with them.
    project.change(&[
        ("package-lock.json", "{\"v\": 2}\n"),
        ("index.html", "page v3\n"),
    ]);
    let offline = [("FAKE_NPM_OFFLINE", "1")];
    let served = project.serve(&offline);
    assert_eq!(
        project.npm_calls(),
        ["ci --offline", "ci --prefer-offline", "run --silent"],
        "{}",
        served.said
    );
    assert!(
        served.said.contains("building with those installed"),
        "{}",
        served.said
    );
    assert!(project.web.join("node_modules/.package-lock.json").exists());
    assert_eq!(served.page(), (200, "page v3\n".into()));
    drop(served);

    // Still offline, and no packages at all: the last page is served.
    std::fs::remove_dir_all(project.web.join("node_modules")).unwrap();
    let served = project.serve(&offline);
    assert_eq!(
        project.npm_calls(),
        ["ci --offline", "ci --prefer-offline"],
        "{}",
        served.said
    );
    assert!(
        served.said.contains("serving the last web page built"),
        "{}",
        served.said
    );
    assert_eq!(served.page(), (200, "page v3\n".into()));
    drop(served);

    // Online again but the build breaks after emptying dist/: the last page comes back.
    let served = project.serve(&[("FAKE_BUILD_FAIL", "1")]);
    assert_eq!(
        project.npm_calls(),
        ["ci --offline", "run --silent"],
        "{}",
        served.said
    );
    assert!(
        served.said.contains("building the web page failed"),
        "{}",
        served.said
    );
    assert_eq!(served.page(), (200, "page v3\n".into()));
    drop(served);

    // The build works again: the new page, and the next start is quiet.
    project.change(&[("index.html", "page v4\n")]);
    let served = project.serve(&[]);
    assert_eq!(project.npm_calls(), ["run --silent"], "{}", served.said);
    assert_eq!(served.page(), (200, "page v4\n".into()));
    drop(served);
    let served = project.serve(&[]);
    assert_eq!(project.npm_calls(), Vec::<String>::new(), "{}", served.said);
    drop(served);

    // No build at all and no registry: the server starts anyway, without a page.
    std::fs::remove_dir_all(project.web.join("dist")).unwrap();
    std::fs::remove_dir_all(project.web.join("node_modules")).unwrap();
    let served = project.serve(&offline);
    assert!(
        served.said.contains("starting without the web page"),
        "{}",
        served.said
    );
    assert!(
        !served.page().1.contains("page v"),
        "no page of this project"
    );
}
