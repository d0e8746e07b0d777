//! The smallest HTTP the metrics endpoint needs: answer `GET /metrics` with a text
//! body, and fetch one for `vportd top`. Sockets live in `host/`, like every other
//! kernel interface.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Errors from the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The listening socket could not be opened.
    #[error(
        "cannot listen on {addr} for metrics: {source} (another vportd running? choose another address with --metrics ADDR, or --metrics off)"
    )]
    Bind { addr: SocketAddr, source: io::Error },
    /// Fetching from an endpoint failed.
    #[error(
        "cannot fetch http://{addr}{path}: {source} (is `vportd daemon` running with its metrics on {addr}?)"
    )]
    Fetch {
        addr: SocketAddr,
        path: String,
        source: io::Error,
    },
}

/// Opens the listening socket (so that a busy port fails at start, not later).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, HttpError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

/// Serves `GET /metrics` with `body()` until the task is dropped. Anything else is
/// 404; a client that sends nothing for 5 s is dropped.
pub async fn serve<F>(listener: TcpListener, body: F)
where
    F: Fn() -> String + Clone + Send + 'static,
{
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let body = body.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut got = 0;
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while got < buf.len() {
                    let n = sock.read(&mut buf[got..]).await?;
                    if n == 0 {
                        break;
                    }
                    got += n;
                    if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Ok::<_, io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..got]);
            let ok = head.starts_with("GET /metrics ") || head.starts_with("GET /metrics?");
            let (status, text) = if ok {
                ("200 OK", body())
            } else {
                ("404 Not Found", "only /metrics is here\n".to_string())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

/// Fetches `path` from `addr` (blocking, 2 s timeouts) and returns the body.
pub fn get(addr: SocketAddr, path: &str) -> Result<String, HttpError> {
    let fail = |source| HttpError::Fetch {
        addr,
        path: path.to_string(),
        source,
    };
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(fail)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(fail)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(fail)?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(fail)?;
    Ok(match out.split_once("\r\n\r\n") {
        Some((_, body)) => body.to_string(),
        None => String::new(),
    })
}
