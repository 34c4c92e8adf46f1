//! A reader for the vector files of `spec/vectors` (format: spec/vectors/README.md).

// Test helpers: a missing file or a malformed vector should fail the test on the spot.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use serde_json::Value;

/// How a vector's input is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bytes read from a connection: the stream decoder with a maximum frame size.
    Stream,
    /// The value of a nested-frame field: exactly one frame.
    Nested,
    /// One WebSocket message: exactly one frame, length prefix included (`[NWP-5.6-2]`).
    Message,
}

/// What decoding a vector's input must give.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// One frame, in the JSON form of the vectors.
    Frame(Value),
    /// Nothing yet, and no error.
    Incomplete,
    /// The decode error with this name.
    Error(String),
}

/// One test vector.
#[derive(Debug, Clone)]
pub struct Vector {
    pub file: String,
    pub name: String,
    pub mode: Mode,
    pub max_frame_size: u64,
    pub roundtrip: bool,
    pub bytes: Vec<u8>,
    pub trailing: usize,
    pub expect: Expect,
}

impl Vector {
    /// The bytes of the frame itself, without the bytes that follow it.
    pub fn frame_bytes(&self) -> &[u8] {
        &self.bytes[..self.bytes.len() - self.trailing]
    }

    /// `file:name`, for assertion messages.
    pub fn id(&self) -> String {
        format!("{}:{}", self.file, self.name)
    }
}

pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors")
}

/// Every vector of every `.txt` file in spec/vectors.
pub fn load_all() -> Vec<Vector> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(vectors_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no vector files in {:?}", vectors_dir());
    files
        .iter()
        .flat_map(|path| {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            parse(&file, &std::fs::read_to_string(path).unwrap())
        })
        .collect()
}

/// Parses one vector file.
pub fn parse(file: &str, text: &str) -> Vec<Vector> {
    let mut vectors = Vec::new();
    let text = format!("\n{text}");
    for block in text.split("\n=== ").skip(1) {
        let mut lines = block.lines();
        let name = lines.next().unwrap().trim().to_owned();
        let mut mode = Mode::Stream;
        let mut max_frame_size = natter_codec::DEFAULT_MAX_FRAME_SIZE;
        let mut roundtrip = true;
        let mut bytes = Vec::new();
        let mut trailing = 0;
        let mut expect = None;
        let mut decoded = None;
        for line in lines {
            if line.starts_with(' ') {
                let hex: String = line.split('#').next().unwrap().split_whitespace().collect();
                bytes.extend(hex::decode(&hex).unwrap_or_else(|e| panic!("{name}: {e}: {line}")));
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("{name}: {line}"));
            let value = value.trim();
            match key {
                "mode" => {
                    mode = match value {
                        "stream" => Mode::Stream,
                        "nested" => Mode::Nested,
                        "message" => Mode::Message,
                        _ => panic!("{name}: mode {value}"),
                    }
                }
                "max_frame_size" => max_frame_size = value.parse().unwrap(),
                "roundtrip" => roundtrip = value == "yes",
                "bytes" => assert!(value.is_empty(), "{name}: bytes on the key line"),
                "trailing" => trailing = value.parse().unwrap(),
                "expect" => expect = Some(value.to_owned()),
                "decoded" => decoded = Some(serde_json::from_str::<Value>(value).unwrap()),
                _ => panic!("{name}: unknown key {key}"),
            }
        }
        let expect = match expect.as_deref() {
            Some("frame") => Expect::Frame(decoded.unwrap_or_else(|| panic!("{name}: no decoded"))),
            Some("incomplete") => Expect::Incomplete,
            Some(error) => Expect::Error(error.to_owned()),
            None => panic!("{name}: no expect"),
        };
        assert!(trailing <= bytes.len(), "{name}: trailing");
        vectors.push(Vector {
            file: file.to_owned(),
            name,
            mode,
            max_frame_size,
            roundtrip,
            bytes,
            trailing,
            expect,
        });
    }
    vectors
}
