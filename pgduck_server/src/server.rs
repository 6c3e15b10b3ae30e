//! Process lifecycle: claiming the socket, accepting clients, and shutting down
//! cleanly on SIGTERM/SIGINT (running queries interrupted, socket and pidfile removed).

use std::mem::MaybeUninit;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::{Config, PASSWORD_ENV};
use crate::credentials::StorageEnv;
use crate::engine::Engine;
use crate::error::ServerError;
use crate::handler::Backend;

/// Files this process owns while it runs; removed on drop.
struct OwnedFiles(Vec<PathBuf>);

impl Drop for OwnedFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Serves until SIGTERM/SIGINT; `storage` is the object-storage environment, read
/// before any thread started (see `main`).
pub async fn run(config: Config, storage: StorageEnv) -> Result<(), ServerError> {
    let socket_path = config.socket_path();
    let lock_path = PathBuf::from(format!("{}.lock", socket_path.display()));
    let abstract_name = config.abstract_socket();
    if abstract_name.is_none() {
        claim_socket(&socket_path, &lock_path).await?;
    }

    let engine = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || Engine::open(&config, &storage))
            .await
            .map_err(|e| ServerError::Startup(e.to_string()))??
    };

    crate::gcp::start_token_renewal(&engine)?;

    let pid = std::process::id().to_string();
    let (unix, mut owned) = match &abstract_name {
        // An abstract socket has no file: nothing to claim, chmod or remove; a live
        // server holding the name makes the bind fail.
        Some(name) => (bind_abstract(name)?, OwnedFiles(Vec::new())),
        None => {
            let unix = UnixListener::bind(&socket_path)
                .map_err(|e| ServerError::io(format!("binding {}", socket_path.display()), e))?;
            let owned = OwnedFiles(vec![socket_path.clone(), lock_path.clone()]);
            // Like Postgres' default unix_socket_permissions: access is governed by the
            // directory.
            std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| ServerError::io("setting socket permissions", e))?;
            std::fs::write(&lock_path, &pid)
                .map_err(|e| ServerError::io(format!("writing {}", lock_path.display()), e))?;
            (unix, owned)
        }
    };
    if let Some(pidfile) = &config.pidfile {
        std::fs::write(pidfile, format!("{pid}\n"))
            .map_err(|e| ServerError::io(format!("writing --pidfile {}", pidfile.display()), e))?;
        owned.0.push(pidfile.clone());
    }

    let tcp = match &config.listen_address {
        Some(addr) => {
            let l = TcpListener::bind((addr.as_str(), config.port))
                .await
                .map_err(|e| ServerError::io(format!("binding {addr}:{}", config.port), e))?;
            info!(address = %addr, port = config.port, "listening on TCP (password required)");
            Some(l)
        }
        None => None,
    };
    // COPY FROM STDIN data is spooled next to DuckDB's own spill files.
    let spool_dir = config.cache_dir.clone().unwrap_or_else(std::env::temp_dir);
    // COPY TO STDOUT's files: <cache_dir>/tmp, or a directory of this process's own.
    let copy_out_dir = match &config.cache_dir {
        Some(dir) => dir.join("tmp"),
        None => std::env::temp_dir().join(format!("pgduck_server-{pid}-tmp")),
    };
    crate::copy_out::remove_stale(&copy_out_dir);
    let local = Backend::new(
        engine.clone(),
        spool_dir.clone(),
        copy_out_dir.clone(),
        None,
        // Both log each statement (redacted), as the original's --debug does.
        config.verbose || config.debug,
    );
    let remote = Backend::new(
        engine.clone(),
        spool_dir,
        copy_out_dir,
        std::env::var(PASSWORD_ENV).ok(),
        // Both log each statement (redacted), as the original's --debug does.
        config.verbose || config.debug,
    );
    match &abstract_name {
        Some(name) => info!(socket = %format!("@{name}"), "pgduck_server ready (abstract socket)"),
        None => info!(socket = %socket_path.display(), "pgduck_server ready"),
    }

    let mut sigterm = signal(SignalKind::terminate())
        .map_err(|e| ServerError::io("installing SIGTERM handler", e))?;
    let mut sigint = signal(SignalKind::interrupt())
        .map_err(|e| ServerError::io("installing SIGINT handler", e))?;
    let mut clients = JoinSet::new();
    loop {
        tokio::select! {
            accepted = unix.accept() => match accepted {
                Ok((mut stream, _)) => {
                    let backend = local.clone();
                    clients.spawn(async move {
                        let refused = tokio::time::timeout(
                            NEGOTIATION_TIMEOUT,
                            refuse_encryption(&mut stream),
                        );
                        match refused.await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => return tracing::debug!("unix client ended: {e}"),
                            Err(_) => return tracing::debug!("unix client sent no start-up packet"),
                        }
                        if let Err(e) = pgwire::tokio::process_socket_unix(stream, backend).await {
                            tracing::debug!("unix client ended: {e}");
                        }
                    });
                }
                Err(e) => warn!("accept on unix socket failed: {e}"),
            },
            accepted = accept_tcp(tcp.as_ref()) => match accepted {
                Ok(mut stream) => {
                    let backend = remote.clone();
                    clients.spawn(async move {
                        let mut head = [0u8; 8];
                        let peeked = tokio::time::timeout(NEGOTIATION_TIMEOUT, stream.peek(&mut head));
                        match peeked.await {
                            Ok(Ok(n)) => {
                                // SSLRequest and GSSENCRequest (8 bytes) are pgwire's on TCP.
                                if n < 4 || head[..4] != 8u32.to_be_bytes() {
                                    if let Err(e) = refuse_protocol(&mut stream, &head[..n]).await {
                                        return tracing::debug!("tcp client ended: {e}");
                                    }
                                }
                            }
                            Ok(Err(e)) => return tracing::debug!("tcp client ended: {e}"),
                            Err(_) => return tracing::debug!("tcp client sent no start-up packet"),
                        }
                        if let Err(e) = pgwire::tokio::process_socket(stream, None, backend).await {
                            tracing::debug!("tcp client ended: {e}");
                        }
                    });
                }
                Err(e) => warn!("accept on TCP failed: {e}"),
            },
            Some(_) = clients.join_next(), if !clients.is_empty() => {}
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = sigint.recv() => { info!("SIGINT: shutting down"); break; }
        }
    }

    drop(unix);
    engine.cancel_all();
    // Give interrupted queries a moment to report their error, then close every session.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while engine.active_sessions() > 0 && !clients.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if clients.try_join_next().is_none() && engine.active_sessions() == 0 {
                break;
            }
        }
    })
    .await;
    clients.abort_all();
    while clients.join_next().await.is_some() {}
    drop(owned);
    info!("pgduck_server stopped");
    Ok(())
}

/// How long a new unix client may take to send its first packet, as pgwire allows
/// for the whole start-up.
const NEGOTIATION_TIMEOUT: Duration = Duration::from_secs(60);
/// The codes of SSLRequest and GSSENCRequest, the only 8-byte start-up packets.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

/// Answers `N` to SSLRequest and GSSENCRequest (each at most once, in either
/// order) on a new unix connection, as Postgres does and as pgwire does on TCP only,
/// and leaves the start-up packet that follows unread for pgwire.
async fn refuse_encryption(stream: &mut UnixStream) -> std::io::Result<()> {
    let (mut ssl_refused, mut gss_refused) = (false, false);
    loop {
        let head = peek_up_to(stream, 8).await?;
        // Start-up packets are longer than 8 bytes; cancel requests are 16.
        if head.len() < 4 || head[..4] != 8u32.to_be_bytes() {
            return refuse_protocol(stream, &head).await;
        }
        let mut request = [0u8; 8];
        stream.read_exact(&mut request).await?;
        let code = u32::from_be_bytes([request[4], request[5], request[6], request[7]]);
        match code {
            SSL_REQUEST if !ssl_refused => ssl_refused = true,
            GSSENC_REQUEST if !gss_refused => gss_refused = true,
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("unsupported 8-byte start-up request {code}"),
                ))
            }
        }
        stream.write_all(b"N").await?;
    }
}

/// The cancel request's code, which takes a start-up packet's place.
const CANCEL_REQUEST: u32 = 80_877_102;

/// Answers a start-up packet of a protocol other than 3.x (pgwire closes without a
/// word) with Postgres' FATAL 0A000, and ends the connection; `head` is the packet's
/// first 8 bytes.
async fn refuse_protocol<S: tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    head: &[u8],
) -> std::io::Result<()> {
    let Some(code) = head.get(4..8) else {
        return Ok(());
    };
    let code = u32::from_be_bytes([code[0], code[1], code[2], code[3]]);
    let (major, minor) = (code >> 16, code & 0xffff);
    if major == 3 || code == CANCEL_REQUEST {
        return Ok(());
    }
    let message =
        format!("unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.2");
    let mut fields = Vec::new();
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "0A000"),
        (b'M', &message),
    ] {
        fields.push(tag);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut response = vec![b'E'];
    response.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    response.extend_from_slice(&fields);
    stream.write_all(&response).await?;
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        message,
    ))
}

/// The first bytes waiting on `stream`, without consuming them: `want` of them,
/// fewer if the client closed its side first.
async fn peek_up_to(stream: &UnixStream, want: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = [MaybeUninit::new(0u8); 8];
    let want = want.min(buf.len());
    let mut closed = false;
    loop {
        stream.readable().await?;
        // Through try_io, a WouldBlock clears the readiness the wait above saw.
        let peeked = stream.try_io(Interest::READABLE, || {
            socket2::SockRef::from(stream).peek(&mut buf[..want])
        });
        match peeked {
            Ok(n) if n == want || n == 0 || closed => {
                // SAFETY: every element was initialised when `buf` was created.
                return Ok(buf[..n]
                    .iter()
                    .map(|b| unsafe { b.assume_init() })
                    .collect());
            }
            // Part of the packet: the socket stays readable, so poll until the rest
            // arrives or the client goes.
            Ok(_) => {
                closed = stream.ready(Interest::READABLE).await?.is_read_closed();
                if !closed {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

async fn accept_tcp(listener: Option<&TcpListener>) -> std::io::Result<tokio::net::TcpStream> {
    match listener {
        Some(l) => l.accept().await.map(|(s, _)| s),
        None => std::future::pending().await,
    }
}

/// Listens on Linux abstract socket `name` (no file in any directory).
fn bind_abstract(name: &str) -> Result<UnixListener, ServerError> {
    use std::os::linux::net::SocketAddrExt;
    let fail = |e| ServerError::io(format!("binding abstract socket @{name}"), e);
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).map_err(fail)?;
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr).map_err(fail)?;
    listener.set_nonblocking(true).map_err(fail)?;
    UnixListener::from_std(listener).map_err(fail)
}

/// Refuses to start when a live server answers on the socket; removes a stale one.
async fn claim_socket(socket: &Path, lock: &Path) -> Result<(), ServerError> {
    if !socket.exists() {
        let _ = std::fs::remove_file(lock);
        return Ok(());
    }
    if tokio::net::UnixStream::connect(socket).await.is_ok() {
        let pid = std::fs::read_to_string(lock)
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        return Err(ServerError::AlreadyRunning {
            pid,
            socket: socket.display().to_string(),
        });
    }
    warn!(socket = %socket.display(), "removing stale socket left by a server that is gone");
    std::fs::remove_file(socket)
        .map_err(|e| ServerError::io(format!("removing stale {}", socket.display()), e))?;
    let _ = std::fs::remove_file(lock);
    Ok(())
}
