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

#[test]
fn every_rule_cited_in_the_codec_exists() {
    let defined: BTreeSet<String> = defined_rules(&protocol()).into_iter().collect();
    let src = manifest_path("src");
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
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
