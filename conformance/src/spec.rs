//! What the runner reads from the spec itself, at build time: the rule table of
//! PROTOCOL.md 13.2, and the test vectors whose bytes it sends.
//!
//! Reading them from the files (rather than copying lists) keeps the coverage figure honest:
//! a rule added to the spec counts against the runner until a scenario cites it.

/// spec/PROTOCOL.md, as built into the runner.
pub const PROTOCOL: &str = include_str!("../../spec/PROTOCOL.md");

/// spec/vectors/invalid.txt: malformed input, each with the decode error it must produce.
pub const INVALID_VECTORS: &str = include_str!("../../spec/vectors/invalid.txt");

/// spec/vectors/websocket.txt: WebSocket messages.
pub const WEBSOCKET_VECTORS: &str = include_str!("../../spec/vectors/websocket.txt");

/// Where a rule can be checked: the `observable` column of PROTOCOL.md 13.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observable {
    /// On a client connection to a server: the runner must have a scenario for it.
    Server,
    /// Only by playing the server towards a client.
    Client,
    /// Only on cluster links.
    Link,
    /// Not within one test run.
    None,
    /// On an MQTT connection (chapter 14): the repository's MQTT tests check it.
    Mqtt,
}

/// One row of the rule table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// `NWP-<section>-<n>`.
    pub id: &'static str,
    /// The `target` column: `C`, `S` and `N` for client, server and cluster node.
    pub target: &'static str,
    /// Where it can be checked.
    pub observable: Observable,
}

impl Rule {
    /// Whether the rule constrains a client (its target column names C), so that playing the
    /// server towards a client can check it, whatever its `observable` column says.
    pub fn binds_client(&self) -> bool {
        self.target.split_whitespace().any(|target| target == "C")
    }
}

/// Every rule of PROTOCOL.md 13.2, in the table's order. Panics on a row whose `observable`
/// cell is not one of the four values, which the codec's spec test also refuses.
pub fn rules() -> Vec<Rule> {
    PROTOCOL
        .lines()
        .filter(|line| line.starts_with("| NWP-"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let observable = match cells.get(2).copied() {
                Some("server") => Observable::Server,
                Some("client") => Observable::Client,
                Some("link") => Observable::Link,
                Some("none") => Observable::None,
                Some("mqtt") => Observable::Mqtt,
                other => panic!("PROTOCOL.md 13.2: {} has observable {other:?}", cells[0]),
            };
            Rule {
                id: cells[0],
                target: cells.get(1).copied().unwrap_or_default(),
                observable,
            }
        })
        .collect()
}

/// One vector of a vector file (format: spec/vectors/README.md), as far as the runner needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vector {
    /// Its name.
    pub name: &'static str,
    /// `stream`, `nested` or `message`.
    pub mode: &'static str,
    /// The receiver's maximum frame size the vector assumes.
    pub max_frame_size: u64,
    /// The input.
    pub bytes: Vec<u8>,
    /// `frame`, `incomplete` or an error name.
    pub expect: &'static str,
}

/// Parses a vector file.
pub fn vectors(text: &'static str) -> Vec<Vector> {
    text.split("\n=== ")
        .skip(1)
        .map(|block| {
            let mut lines = block.lines();
            let name = lines.next().unwrap_or_default().trim();
            let mut vector = Vector {
                name,
                mode: "stream",
                max_frame_size: natter_codec::DEFAULT_MAX_FRAME_SIZE,
                bytes: Vec::new(),
                expect: "",
            };
            for line in lines {
                if line.starts_with(' ') {
                    let hex = line.split('#').next().unwrap_or_default();
                    vector.bytes.extend(
                        hex.split_whitespace()
                            .filter_map(|byte| u8::from_str_radix(byte, 16).ok()),
                    );
                    continue;
                }
                match line.split_once(':') {
                    Some(("mode", value)) => vector.mode = value.trim(),
                    Some(("expect", value)) => vector.expect = value.trim(),
                    Some(("max_frame_size", value)) => {
                        vector.max_frame_size = value.trim().parse().unwrap_or(0);
                    }
                    _ => {}
                }
            }
            vector
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_table_parses() {
        let rules = rules();
        assert!(rules.len() > 100);
        assert!(rules.iter().any(|r| r.observable == Observable::Server));
        assert!(rules.iter().any(|r| r.observable == Observable::Link));
        let client = rules.iter().find(|r| r.id == "NWP-5.4-2");
        assert_eq!(
            client.map(|r| (r.target, r.observable, r.binds_client())),
            Some(("C", Observable::Client, true))
        );
        let server = rules.iter().find(|r| r.id == "NWP-5.2-2");
        assert_eq!(server.map(Rule::binds_client), Some(false));
    }

    #[test]
    fn the_vectors_parse() {
        let invalid = vectors(INVALID_VECTORS);
        let empty = invalid.iter().find(|v| v.name == "empty_frame");
        assert_eq!(
            empty.map(|v| (v.bytes.clone(), v.expect)),
            Some((vec![0], "empty_frame"))
        );
        assert!(
            vectors(WEBSOCKET_VECTORS)
                .iter()
                .all(|v| v.mode == "message")
        );
    }
}
