//! The token secret `serve` generates on first start and `natter token` reads back, so a local
//! server needs no configuration: `natter token --user alice` just works.

use std::io::Write;
use std::path::{Path, PathBuf};

use natter_edge::TokenKey;

/// The key id of the generated secret.
const KEY_ID: &str = "k1";

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("token-secret")
}

/// Reads the generated secret of `data_dir`.
pub fn load(data_dir: &Path) -> Result<TokenKey, String> {
    let path = path(data_dir);
    let secret = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "no token secret at {} ({e}); start `natter serve` once, or pass --secret",
            path.display()
        )
    })?;
    Ok(TokenKey {
        id: KEY_ID.into(),
        secret: secret.trim().to_string(),
    })
}

/// Reads the generated secret of `data_dir`, creating it (readable by the owner only) first
/// if there is none.
pub fn load_or_create(data_dir: &Path) -> Result<TokenKey, String> {
    let path = path(data_dir);
    if path.exists() {
        return load(data_dir);
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
    let secret: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    writeln!(file, "{secret}").map_err(|e| format!("writing {}: {e}", path.display()))?;
    tracing::info!(path = %path.display(), "generated a token secret");
    Ok(TokenKey {
        id: KEY_ID.into(),
        secret,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_secret_is_generated_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).is_err());
        let created = load_or_create(dir.path()).unwrap();
        assert_eq!(created.secret.len(), 64);
        assert_eq!(load_or_create(dir.path()).unwrap(), created);
        assert_eq!(load(dir.path()).unwrap(), created);
    }
}
