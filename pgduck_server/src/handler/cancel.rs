//! Cancel requests: they interrupt the session's running DuckDB statement.

use async_trait::async_trait;
use pgwire::api::cancel::CancelHandler;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;
use tracing::info;

use super::Backend;

#[async_trait]
impl CancelHandler for Backend {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let secret = match request.secret_key {
            SecretKey::I32(s) => s,
            SecretKey::Bytes(b) if b.len() == 4 => i32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            SecretKey::Bytes(_) => return,
        };
        let hit = self.engine.cancel(request.pid, secret);
        info!(pid = request.pid, matched = hit, "cancel request");
    }
}
