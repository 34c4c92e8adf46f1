//! A minimal HTTP/1.1 client for the offline-push webhook: one JSON POST per connection to
//! an `http://` URL. TLS endpoints belong behind a local relay; this keeps the broker free of
//! an HTTP stack it would use for one request type.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one POST may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The most of the response read: the status line is all that matters.
const MAX_RESPONSE: usize = 4096;

/// Where to POST, parsed from an `http://host[:port][/path]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    authority: String,
    path: String,
}

impl Endpoint {
    /// Parses a URL; `None` unless it is `http://` with a host.
    pub(crate) fn parse(url: &str) -> Option<Self> {
        let rest = url.strip_prefix("http://")?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return None;
        }
        let authority = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Some(Self {
            authority,
            path: path.to_string(),
        })
    }

    /// POSTs `body` as JSON; `true` for a 2xx answer.
    pub(crate) async fn post(&self, body: &str) -> bool {
        match tokio::time::timeout(TIMEOUT, self.exchange(body)).await {
            Ok(Ok(status)) => (200..300).contains(&status),
            Ok(Err(error)) => {
                tracing::warn!(%error, endpoint = self.authority, "webhook failed");
                false
            }
            Err(_) => {
                tracing::warn!(endpoint = self.authority, "webhook timed out");
                false
            }
        }
    }

    async fn exchange(&self, body: &str) -> std::io::Result<u16> {
        let mut stream = TcpStream::connect(&self.authority).await?;
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.path,
            self.authority,
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::with_capacity(256);
        let mut chunk = [0u8; 512];
        while !response.windows(2).any(|w| w == b"\r\n") && response.len() < MAX_RESPONSE {
            let read = stream.read(&mut chunk).await?;
            if read == 0 {
                break;
            }
            response.extend_from_slice(&chunk[..read]);
        }
        let status = std::str::from_utf8(&response)
            .ok()
            .and_then(|text| text.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok());
        status.ok_or_else(|| std::io::Error::other("no HTTP status line"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn urls_parse() {
        let endpoint = Endpoint::parse("http://hooks.local:8080/push").unwrap();
        assert_eq!(endpoint.authority, "hooks.local:8080");
        assert_eq!(endpoint.path, "/push");
        assert_eq!(Endpoint::parse("http://h").unwrap().authority, "h:80");
        assert_eq!(Endpoint::parse("https://h/x"), None);
        assert_eq!(Endpoint::parse("http:///x"), None);
    }

    #[tokio::test]
    async fn posts_json_and_reads_the_status() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 4096];
            let mut len = 0;
            while !String::from_utf8_lossy(&request[..len]).contains("{\"a\":1}") {
                len += socket.read(&mut request[len..]).await.unwrap();
            }
            socket
                .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8_lossy(&request[..len]).to_string()
        });
        assert!(Endpoint::parse(&url).unwrap().post("{\"a\":1}").await);
        let request = server.await.unwrap();
        assert!(request.starts_with("POST /hook HTTP/1.1\r\n"));
        assert!(request.contains("Content-Type: application/json"));
    }
}
