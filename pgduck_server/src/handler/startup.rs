//! Start-up: protocol negotiation, the MD5 password on TCP, the session and its
//! parameter statuses.

use std::fmt::Debug;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
    DefaultServerParameterProvider, StartupHandler,
};
use pgwire::api::{ClientInfo, PgWireConnectionState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, SecretKey};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tracing::debug;

use super::{fatal, Backend, SessionSlot};

/// MD5 salt sent to a TCP client, kept until its password arrives.
struct Md5Salt([u8; 4]);

fn server_parameters() -> DefaultServerParameterProvider {
    let mut p = DefaultServerParameterProvider::default();
    p.server_version = format!("15.0 (pgduck_server {})", env!("CARGO_PKG_VERSION"));
    p.date_style = "ISO, MDY".into();
    p.time_zone = "UTC".into();
    p.interval_style = "postgres".into();
    p
}

#[async_trait]
impl StartupHandler for Backend {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(startup) => {
                protocol_negotiation(client, &startup).await?;
                save_startup_parameters_to_metadata(client, &startup);
                if self.password.is_some() {
                    let salt: [u8; 4] = rand::random();
                    client.session_extensions().insert(Md5Salt(salt));
                    client.set_state(PgWireConnectionState::AuthenticationInProgress);
                    client
                        .send(PgWireBackendMessage::Authentication(
                            Authentication::MD5Password(salt.to_vec()),
                        ))
                        .await?;
                    Ok(())
                } else {
                    self.start_session(client).await
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(pw) => {
                let given = pw.into_password()?.password;
                let user = client.metadata().get("user").cloned().unwrap_or_default();
                let salt = client
                    .session_extensions()
                    .get::<Md5Salt>()
                    .map(|s| s.0)
                    .unwrap_or_default();
                let expected = self
                    .password
                    .as_deref()
                    .map(|p| md5_password(p, &user, &salt));
                if expected.as_deref() != Some(given.as_str()) {
                    return Err(fatal(
                        "28P01",
                        &format!("password authentication failed for user \"{user}\""),
                    ));
                }
                self.start_session(client).await
            }
            _ => Err(fatal("08P01", "unexpected message during start-up")),
        }
    }
}

/// `md5` + md5(md5(password + user) + salt), as libpq computes it.
fn md5_password(password: &str, user: &str, salt: &[u8; 4]) -> String {
    let inner = format!("{:x}", md5::compute(format!("{password}{user}")));
    let mut outer = inner.into_bytes();
    outer.extend_from_slice(salt);
    format!("md5{:x}", md5::compute(outer))
}

impl Backend {
    async fn start_session<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self
            .engine
            .open_session()
            .map_err(|e| fatal(e.code, &e.message))?;
        client.set_pid_and_secret_key(session.pid, SecretKey::I32(session.secret));
        debug!(pid = session.pid, "session started");
        client.session_extensions().insert(SessionSlot(session));
        finish_authentication(client, &server_parameters()).await
    }
}
