//! Leader election with a `coordination.k8s.io` Lease, as client-go does it:
//! a replica takes a lease that is free or expired and renews it; writes go
//! through the lease's resourceVersion, so two replicas never both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub duration: Duration,
    /// How long the holder keeps trying to renew before it stops leading. Shorter
    /// than `duration`, so it has stopped before another replica may take the lease.
    pub renew_deadline: Duration,
    /// How often the holder renews, and a candidate retries.
    pub retry: Duration,
}

impl LeaseConfig {
    /// client-go's proportions: a 15 s lease is renewed every 2 s and given up
    /// 10 s after the last renewal.
    pub fn new(namespace: String, name: String, identity: String, duration: Duration) -> Self {
        Self {
            namespace,
            name,
            identity,
            duration,
            renew_deadline: duration * 2 / 3,
            retry: duration * 2 / 15,
        }
    }
}

pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_conflict())
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    fn spec(&self, acquired: Timestamp, now: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.config.duration.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Takes the lease if it is free or expired, renews it if held; `Ok(true)`
    /// when this replica holds it afterwards.
    pub async fn try_acquire(&self) -> Result<bool> {
        let now = Timestamp::now();
        let Some(current) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().unwrap_or("");
        let mine = holder == self.config.identity;
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(renewed), Some(secs)) => renewed
                .0
                .checked_add(SignedDuration::from_secs(secs.into()))
                .is_ok_and(|until| until < now),
            _ => true,
        };
        if !(mine || holder.is_empty() || expired) {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let acquired = match (&spec.acquire_time, mine) {
            (Some(t), true) => t.0,
            _ => now,
        };
        // The resourceVersion in `metadata` makes this a compare-and-swap.
        let lease = Lease {
            metadata: current.metadata,
            spec: Some(self.spec(acquired, now, transitions)),
        };
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Hands the lease back so another replica takes over at once.
    pub async fn release(&self) -> Result<()> {
        let Some(current) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let mut spec = current.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        let lease = Lease {
            metadata: current.metadata,
            spec: Some(spec),
        };
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until this replica leads; `false` if `shutdown` came first.
    pub async fn acquire(&self, shutdown: &CancellationToken) -> bool {
        loop {
            match self.try_acquire().await {
                Ok(true) => {
                    info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
                    return true;
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, "could not take the leader lease"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(self.config.retry) => {}
            }
        }
    }

    /// Renews the lease until `shutdown`. If no renewal succeeds within the renew
    /// deadline (a renewal still in flight then is abandoned), it stops leading
    /// before the lease can expire and another replica take it: cancels `shutdown`
    /// and fails.
    pub async fn keep(&self, shutdown: &CancellationToken) -> Result<()> {
        let mut deadline = tokio::time::Instant::now() + self.config.renew_deadline;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(self.config.retry) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            match tokio::time::timeout_at(deadline, self.try_acquire()).await {
                Ok(Ok(true)) => deadline = tokio::time::Instant::now() + self.config.renew_deadline,
                Ok(Ok(false)) => break,
                Ok(Err(e)) => warn!(error = %e, "could not renew the leader lease"),
                Err(_) => warn!("renewing the leader lease timed out"),
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        warn!(lease = %self.config.name, "lost the leader lease: stopping");
        shutdown.cancel();
        Err(Error::LeaseLost(self.config.name.clone()))
    }
}

#[cfg(test)]
mod tests {
    use http::{Method, StatusCode};
    use serde_json::json;

    use super::*;
    use crate::fixtures::{finish, mock_client, path, Exchange, NS};

    const LEASE: &str = "lake-operator-leader";

    fn elector(client: Client) -> LeaderElector {
        LeaderElector::new(
            client,
            LeaseConfig::new(
                NS.into(),
                LEASE.into(),
                "me".into(),
                Duration::from_secs(15),
            ),
        )
    }

    fn lease_path() -> String {
        path::group("coordination.k8s.io/v1", "leases", LEASE)
    }

    fn held_by(holder: &str, renewed: Timestamp) -> serde_json::Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": LEASE, "namespace": NS, "resourceVersion": "7"},
            "spec": {
                "holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": 2,
                "acquireTime": renewed.to_string(), "renewTime": renewed.to_string(),
            },
        })
    }

    #[tokio::test]
    async fn takes_a_free_lease() {
        let (client, server) = mock_client();
        let mock = server.run(vec![
            Exchange::get(lease_path()).not_found(),
            Exchange::new(
                Method::POST,
                format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"),
            )
            .echo()
            .check(|body| {
                assert_eq!(body["metadata"]["name"], LEASE);
                assert_eq!(body["spec"]["holderIdentity"], "me");
                assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
                assert_eq!(body["spec"]["leaseTransitions"], 0);
            }),
        ]);
        assert!(elector(client).try_acquire().await.unwrap());
        finish(mock).await;
    }

    #[tokio::test]
    async fn leaves_a_live_lease_to_its_holder() {
        let (client, server) = mock_client();
        let mock = server.run(vec![
            Exchange::get(lease_path()).reply(held_by("other", Timestamp::now()))
        ]);
        assert!(!elector(client).try_acquire().await.unwrap());
        finish(mock).await;
    }

    #[tokio::test]
    async fn takes_over_an_expired_lease_with_compare_and_swap() {
        let (client, server) = mock_client();
        let an_hour_ago = Timestamp::now()
            .checked_sub(SignedDuration::from_hours(1))
            .unwrap();
        let mock = server.run(vec![
            Exchange::get(lease_path()).reply(held_by("other", an_hour_ago)),
            Exchange::new(Method::PUT, lease_path())
                .echo()
                .check(|body| {
                    assert_eq!(body["metadata"]["resourceVersion"], "7");
                    assert_eq!(body["spec"]["holderIdentity"], "me");
                    assert_eq!(body["spec"]["leaseTransitions"], 3);
                }),
        ]);
        assert!(elector(client).try_acquire().await.unwrap());
        finish(mock).await;
    }

    #[tokio::test]
    async fn a_lost_race_is_not_leadership() {
        let (client, server) = mock_client();
        let mock = server.run(vec![
            Exchange::get(lease_path()).reply(held_by("", Timestamp::now())),
            Exchange::new(Method::PUT, lease_path()).fails(StatusCode::CONFLICT, "Conflict"),
        ]);
        assert!(!elector(client).try_acquire().await.unwrap());
        finish(mock).await;
    }

    #[test]
    fn the_holder_gives_up_before_the_lease_expires() {
        let config = LeaseConfig::new(
            NS.into(),
            LEASE.into(),
            "me".into(),
            Duration::from_secs(15),
        );
        assert_eq!(config.renew_deadline, Duration::from_secs(10));
        assert_eq!(config.retry, Duration::from_secs(2));
    }

    /// Renewals fail (the API server is unreachable, say): the holder stops leading
    /// at the renew deadline, 10 s after its last renewal, not after the 15 s lease,
    /// when another replica may already have taken it.
    #[tokio::test(start_paused = true)]
    async fn failed_renewals_stop_leading_at_the_renew_deadline() {
        let (client, server) = mock_client();
        // Tries at 2, 4, 6 and 8 s fail; at 10 s the deadline has come.
        let failing = || {
            Exchange::get(lease_path()).fails(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable")
        };
        let mock = server.run(vec![failing(), failing(), failing(), failing()]);
        let elector = elector(client);
        let shutdown = CancellationToken::new();
        let start = tokio::time::Instant::now();
        let err = elector.keep(&shutdown).await.expect_err("leadership lost");
        assert!(matches!(err, Error::LeaseLost(_)), "{err}");
        assert!(shutdown.is_cancelled(), "the controllers are told to stop");
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        drop(elector);
        finish(mock).await;
    }

    /// A renewal that hangs is abandoned at the deadline too.
    #[tokio::test(start_paused = true)]
    async fn a_hanging_renewal_is_abandoned_at_the_renew_deadline() {
        let (client, _server) = mock_client();
        let elector = elector(client);
        let shutdown = CancellationToken::new();
        let start = tokio::time::Instant::now();
        elector.keep(&shutdown).await.expect_err("leadership lost");
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        assert!(shutdown.is_cancelled());
    }

    #[tokio::test]
    async fn release_hands_the_lease_back() {
        let (client, server) = mock_client();
        let mock = server.run(vec![
            Exchange::get(lease_path()).reply(held_by("me", Timestamp::now())),
            Exchange::new(Method::PUT, lease_path())
                .echo()
                .check(|body| {
                    assert!(body["spec"].get("holderIdentity").is_none(), "{body}");
                    assert_eq!(body["spec"]["leaseDurationSeconds"], 1);
                }),
        ]);
        elector(client).release().await.unwrap();
        finish(mock).await;
    }
}
