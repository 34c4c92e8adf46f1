//! Keeps spec/PROTOCOL.md, spec/vectors and the codec in agreement.

// Test helpers: a missing file or a malformed vector should fail the test on the spot.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use natter_codec::frame::Origin;
use natter_codec::{ErrorCode, FrameType};

fn manifest_path(relative: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn protocol() -> String {
    std::fs::read_to_string(manifest_path("../spec/PROTOCOL.md")).unwrap()
}

/// The rule ids in `text`: every `[NWP-<section>-<n>]`.
fn rule_ids(text: &str) -> BTreeSet<String> {
    text.match_indices("[NWP-")
        .filter_map(|(start, _)| {
            let rest = &text[start + 1..];
            let end = rest.find(']')?;
            let id = &rest[..end];
            id[4..]
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
                .then(|| id.to_owned())
        })
        .collect()
}

/// The rules PROTOCOL.md defines: paragraphs that start with their id.
fn defined_rules(doc: &str) -> Vec<String> {
    doc.split("\n\n")
        .filter(|paragraph| paragraph.starts_with("[NWP-"))
        .map(|paragraph| paragraph[1..paragraph.find(']').unwrap()].to_owned())
        .collect()
}

/// The rows of the markdown table whose first cell satisfies `first`.
fn table_rows(doc: &str, first: impl Fn(&str) -> bool) -> Vec<Vec<String>> {
    doc.lines()
        .filter(|line| line.starts_with("| "))
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|cells| first(&cells[0]))
        .collect()
}

/// The Rust sources of the workspace that cite rules: every `.rs` file under these
/// directories, relative to the repository root.
const CITING_SOURCES: [&str; 7] = [
    "codec/src",
    "edge/src",
    "broker/src",
    "src",
    "conformance/src",
    "clients/rust/src",
    "tests",
];

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn every_rule_cited_in_the_code_exists() {
    let defined: BTreeSet<String> = defined_rules(&protocol()).into_iter().collect();
    let mut files = Vec::new();
    for dir in CITING_SOURCES {
        rust_files(&manifest_path(&format!("../{dir}")), &mut files);
    }
    assert!(files.len() > 20, "only {} source files found", files.len());
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for id in rule_ids(&text) {
            assert!(
                defined.contains(&id),
                "{path:?} cites {id}, not in PROTOCOL.md"
            );
        }
    }
}

#[test]
fn every_listed_rule_says_where_it_is_observable() {
    // Section 13.2: rule | target | observable | section | about. natter-conformance counts
    // its coverage against the `server` rows, so the column must be right for every rule.
    let rows = table_rows(&protocol(), |cell| cell.starts_with("NWP-"));
    assert!(rows.len() > 100, "only {} rules listed", rows.len());
    for row in rows {
        assert_eq!(row.len(), 5, "{row:?}");
        let (id, target, observable) = (&row[0], &row[1], &row[2]);
        let targets: Vec<&str> = target.split_whitespace().collect();
        assert!(
            !targets.is_empty() && targets.iter().all(|t| ["C", "S", "N"].contains(t)),
            "{id}: target {target:?}"
        );
        let consistent = match observable.as_str() {
            "server" => targets.contains(&"S"),
            "client" => targets.contains(&"C"),
            "link" => targets.contains(&"N"),
            "none" => true,
            // Chapter 14: checked by the MQTT tests, not by natter-conformance.
            "mqtt" => targets.contains(&"S"),
            other => panic!("{id}: observable {other:?} is not server, client, link, mqtt or none"),
        };
        assert!(
            consistent,
            "{id}: observable {observable} but target {target}"
        );
        let section = id[4..].rsplit_once('-').unwrap().0;
        assert!(
            row[3].starts_with(&format!("{section} ")),
            "{id} is listed under section {:?}",
            row[3]
        );
    }
}

#[test]
fn rules_are_unique_referenced_rules_exist_and_all_are_listed() {
    let doc = protocol();
    let defined = defined_rules(&doc);
    let unique: BTreeSet<String> = defined.iter().cloned().collect();
    assert_eq!(unique.len(), defined.len(), "a rule id is defined twice");
    for id in rule_ids(&doc) {
        assert!(unique.contains(&id), "{id} is referenced but not defined");
    }
    let listed: BTreeSet<String> = table_rows(&doc, |cell| cell.starts_with("NWP-"))
        .into_iter()
        .map(|row| row[0].clone())
        .collect();
    assert_eq!(
        listed, unique,
        "section 13.2 does not list exactly the rules"
    );
}

#[test]
fn frame_table_matches_the_catalog() {
    let rows = table_rows(&protocol(), |cell| cell.starts_with("0x"));
    let table: BTreeMap<u64, (String, String)> = rows
        .iter()
        .filter(|row| row.len() == 5 && ["C", "S", "C/S", "L"].contains(&row[2].as_str()))
        .map(|row| {
            let code = u64::from_str_radix(&row[0][2..], 16).unwrap();
            (code, (row[1].clone(), row[2].clone()))
        })
        .collect();
    assert_eq!(table.len(), FrameType::KNOWN.len());
    for frame_type in FrameType::KNOWN {
        let (name, sender) = &table[&frame_type.0];
        assert_eq!(Some(name.as_str()), frame_type.name());
        let expected = match frame_type.origin().unwrap() {
            Origin::Client => "C",
            Origin::Server => "S",
            Origin::Either => "C/S",
            Origin::Link => "L",
        };
        assert_eq!(sender, expected, "{name}");
    }
}

#[test]
fn error_table_matches_the_catalog() {
    let rows = table_rows(&protocol(), |cell| cell.starts_with("0x"));
    let table: BTreeMap<u64, Vec<String>> = rows
        .into_iter()
        .filter(|row| row.len() == 5 && (row[3] == "yes" || row[3] == "no"))
        .map(|row| (u64::from_str_radix(&row[0][2..], 16).unwrap(), row))
        .collect();
    assert_eq!(table.len(), ErrorCode::KNOWN.len());
    for code in ErrorCode::KNOWN {
        let row = &table[&code.0];
        assert_eq!(Some(row[1].as_str()), code.name());
        assert_eq!(row[3] == "yes", code.closes_connection(), "{code}");
        assert_eq!(row[4] == "yes", code.is_retryable(), "{code}");
    }
}
