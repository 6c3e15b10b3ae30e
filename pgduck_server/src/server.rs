//! Process lifecycle: claiming the socket, accepting clients, and shutting down
//! cleanly on SIGTERM/SIGINT (running queries interrupted, socket and pidfile removed).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::{Config, PASSWORD_ENV};
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

pub async fn run(config: Config) -> Result<(), ServerError> {
    let socket_path = config.socket_path();
    let lock_path = PathBuf::from(format!("{}.lock", socket_path.display()));
    claim_socket(&socket_path, &lock_path).await?;

    let engine = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || Engine::open(&config))
            .await
            .map_err(|e| ServerError::Startup(e.to_string()))??
    };

    crate::gcp::start_token_renewal(&engine)?;

    let unix = UnixListener::bind(&socket_path)
        .map_err(|e| ServerError::io(format!("binding {}", socket_path.display()), e))?;
    let mut owned = OwnedFiles(vec![socket_path.clone(), lock_path.clone()]);
    // Like Postgres' default unix_socket_permissions: access is governed by the directory.
    std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o777))
        .map_err(|e| ServerError::io("setting socket permissions", e))?;
    let pid = std::process::id().to_string();
    std::fs::write(&lock_path, &pid)
        .map_err(|e| ServerError::io(format!("writing {}", lock_path.display()), e))?;
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
    let local = Backend::new(engine.clone(), spool_dir.clone(), None, config.verbose);
    let remote = Backend::new(
        engine.clone(),
        spool_dir,
        std::env::var(PASSWORD_ENV).ok(),
        config.verbose,
    );
    info!(socket = %socket_path.display(), "pgduck_server ready");

    let mut sigterm = signal(SignalKind::terminate())
        .map_err(|e| ServerError::io("installing SIGTERM handler", e))?;
    let mut sigint = signal(SignalKind::interrupt())
        .map_err(|e| ServerError::io("installing SIGINT handler", e))?;
    let mut clients = JoinSet::new();
    loop {
        tokio::select! {
            accepted = unix.accept() => match accepted {
                Ok((stream, _)) => {
                    let backend = local.clone();
                    clients.spawn(async move {
                        if let Err(e) = pgwire::tokio::process_socket_unix(stream, backend).await {
                            tracing::debug!("unix client ended: {e}");
                        }
                    });
                }
                Err(e) => warn!("accept on unix socket failed: {e}"),
            },
            accepted = accept_tcp(tcp.as_ref()) => match accepted {
                Ok(stream) => {
                    let backend = remote.clone();
                    clients.spawn(async move {
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

async fn accept_tcp(listener: Option<&TcpListener>) -> std::io::Result<tokio::net::TcpStream> {
    match listener {
        Some(l) => l.accept().await.map(|(s, _)| s),
        None => std::future::pending().await,
    }
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
