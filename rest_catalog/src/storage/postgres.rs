//! [`CatalogStore`] on the cluster's Postgres database, in the tables defined by
//! [`pg_lake_common::catalog`] (shared with the pg_lake extension).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use pg_lake_common::catalog::{self as schema, decode_namespace, encode_namespace};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

use super::{
    CatalogStore, EntityKind, MetadataSwap, Page, PropertyChanges, Reservation, StoredResponse,
};
use crate::error::{Error, Result};
use crate::model::{Namespace, Properties, TableIdentifier};

/// Longest wait for a pooled connection, or for a new one to be established.
const POOL_TIMEOUT: Duration = Duration::from_secs(10);

/// `status_code` of an Idempotency-Key reserved by a request still running.
const PENDING: i32 = 0;

/// Expired Idempotency-Keys are deleted at most this often (per process).
const EXPIRY_INTERVAL_SECS: u64 = 60;

/// How entities of a kind are matched: NULL `iceberg_type` is a table (JDBC V0 rows).
const KIND_FILTER: &str = "coalesce(iceberg_type, 'TABLE') = $4";

pub struct PostgresStore {
    pool: Pool,
    catalog_name: String,
    started: Instant,
    /// One more than the seconds after `started` of the last sweep of expired
    /// Idempotency-Keys (0: none yet).
    last_expiry: AtomicU64,
}

impl EntityKind {
    fn iceberg_type(self) -> &'static str {
        match self {
            EntityKind::Table => schema::ICEBERG_TYPE_TABLE,
            EntityKind::View => schema::ICEBERG_TYPE_VIEW,
        }
    }

    fn missing(self, ident: &TableIdentifier) -> Error {
        let name = ident.to_string();
        match self {
            EntityKind::Table => Error::NoSuchTable(name),
            EntityKind::View => Error::NoSuchView(name),
        }
    }
}

/// The stored form of a namespace, or 400 naming the offending levels.
pub fn stored_namespace(namespace: &Namespace) -> Result<String> {
    crate::model::check_namespace(namespace)?;
    encode_namespace(namespace).ok_or_else(|| {
        Error::BadRequest(format!(
            "invalid namespace {namespace:?}: levels must be non-empty and must not contain '{}'",
            schema::NAMESPACE_SEPARATOR
        ))
    })
}

/// The stored namespace of a table or view whose name can be stored.
fn stored_ident(ident: &TableIdentifier) -> Result<String> {
    crate::model::check_name("name", &ident.name)?;
    stored_namespace(&ident.namespace)
}

impl PostgresStore {
    /// Connects (retrying until `wait` has passed, as Postgres may start after
    /// us), applies the catalog migrations and returns the store.
    /// The password comes from `PGPASSWORD` when the URL has none.
    pub async fn connect(
        database_url: &str,
        catalog_name: &str,
        max_connections: usize,
        wait: Duration,
    ) -> Result<Self> {
        let mut config: tokio_postgres::Config = database_url.parse().map_err(|_| {
            Error::Config("--database-url is not a valid Postgres connection string".into())
        })?;
        if config.get_password().is_none() {
            if let Ok(password) = std::env::var("PGPASSWORD") {
                config.password(password);
            }
        }
        if config.get_application_name().is_none() {
            config.application_name("rest_catalog");
        }
        // Verified: a connection the server closed is replaced, not handed out again.
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        // Bounded waits: an unreachable database answers 503 rather than hanging requests.
        let pool = Pool::builder(manager)
            .max_size(max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .build()
            .map_err(|e| Error::Config(format!("database pool: {e}")))?;
        let store = Self {
            pool,
            catalog_name: catalog_name.to_string(),
            started: Instant::now(),
            last_expiry: AtomicU64::new(0),
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match store.migrate().await {
                Ok(()) => return Ok(store),
                Err(e) if tokio::time::Instant::now() < deadline && is_transient(&e) => {
                    tracing::warn!(error = %e, "catalog database not reachable yet, retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Applies the pending catalog migrations under the shared advisory lock,
    /// exactly as the extension does (see [`pg_lake_common::catalog`]).
    pub async fn migrate(&self) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&schema::MIGRATION_LOCK_KEY],
        )
        .await?;
        tx.batch_execute(schema::BOOTSTRAP_SQL).await?;
        let applied: Vec<i32> = tx
            .query(schema::APPLIED_VERSIONS_SQL, &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some(newer) = applied
            .iter()
            .copied()
            .filter(|v| *v > schema::latest_version())
            .max()
        {
            tracing::warn!(
                database = newer,
                known = schema::latest_version(),
                "catalog schema is newer than this build"
            );
        }
        for migration in schema::pending(&applied) {
            tracing::info!(
                version = migration.version,
                description = migration.description,
                "applying catalog migration"
            );
            tx.batch_execute(migration.sql).await?;
            tx.execute(schema::RECORD_VERSION_SQL, &[&migration.version])
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn namespace_exists(&self, client: &impl GenericClient, stored: &str) -> Result<bool> {
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE catalog_name = $1 AND namespace = $2)
                 OR EXISTS (SELECT 1 FROM {} WHERE catalog_name = $1 AND table_namespace = $2)",
            schema::NAMESPACE_PROPERTIES_TABLE,
            schema::TABLES_TABLE
        );
        let stmt = client.prepare_cached(&sql).await?;
        Ok(client
            .query_one(&stmt, &[&self.catalog_name, &stored])
            .await?
            .get(0))
    }
}

/// Connection failures (as opposed to errors Postgres reported) may heal by waiting.
fn is_transient(e: &Error) -> bool {
    match e {
        Error::Database(e) => e.as_db_error().is_none(),
        Error::DatabaseUnavailable(_) => true,
        _ => false,
    }
}

/// Once a statement changing the catalog has been sent, a lost connection
/// (an error Postgres did not report) leaves its outcome unknown.
fn sent_change_error(e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(_) => Error::Database(e),
        None => {
            tracing::error!(error = %e, "lost the catalog database after sending a change");
            Error::CommitStateUnknown(
                "the connection to the catalog database was lost after the change was sent; \
                 load the table or view to see whether it was applied"
                    .into(),
            )
        }
    }
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

fn paginate<T: Ord + Clone>(
    sorted: impl IntoIterator<Item = T>,
    after: Option<T>,
    limit: Option<u32>,
) -> Vec<T> {
    sorted
        .into_iter()
        .filter(|x| after.as_ref().is_none_or(|a| x > a))
        .take(limit.map_or(usize::MAX, |l| l as usize))
        .collect()
}

#[async_trait]
impl CatalogStore for PostgresStore {
    async fn check_ready(&self) -> Result<()> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                &format!(
                    "SELECT coalesce(max(version), 0) FROM {}",
                    schema::VERSION_TABLE
                ),
                &[],
            )
            .await?;
        let version: i32 = row.get(0);
        if version < schema::latest_version() {
            return Err(Error::DatabaseUnavailable(format!(
                "catalog schema is at version {version}, expected {}",
                schema::latest_version()
            )));
        }
        Ok(())
    }

    async fn create_namespace(&self, namespace: &Namespace, properties: &Properties) -> Result<()> {
        let stored = stored_namespace(namespace)?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if self.namespace_exists(&tx, &stored).await? {
            return Err(Error::AlreadyExists(format!(
                "namespace already exists: {}",
                namespace.join(".")
            )));
        }
        let insert = tx
            .prepare_cached(&format!(
                "INSERT INTO {} (catalog_name, namespace, property_key, property_value) VALUES ($1, $2, $3, $4)",
                schema::NAMESPACE_PROPERTIES_TABLE
            ))
            .await?;
        let marker = (
            schema::NAMESPACE_EXISTS_PROPERTY.to_string(),
            "true".to_string(),
        );
        for (key, value) in properties
            .iter()
            .chain(std::iter::once((&marker.0, &marker.1)))
        {
            if let Err(e) = tx
                .execute(&insert, &[&self.catalog_name, &stored, key, value])
                .await
            {
                return Err(if is_unique_violation(&e) {
                    Error::AlreadyExists(format!(
                        "namespace already exists: {}",
                        namespace.join(".")
                    ))
                } else {
                    e.into()
                });
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn namespace_properties(&self, namespace: &Namespace) -> Result<Option<Properties>> {
        let stored = stored_namespace(namespace)?;
        let client = self.pool.get().await?;
        if !self.namespace_exists(&client, &stored).await? {
            return Ok(None);
        }
        let stmt = client
            .prepare_cached(&format!(
                "SELECT property_key, property_value FROM {} WHERE catalog_name = $1 AND namespace = $2",
                schema::NAMESPACE_PROPERTIES_TABLE
            ))
            .await?;
        let rows = client.query(&stmt, &[&self.catalog_name, &stored]).await?;
        Ok(Some(
            rows.iter()
                .map(|r| {
                    (
                        r.get::<_, String>(0),
                        r.get::<_, Option<String>>(1).unwrap_or_default(),
                    )
                })
                .filter(|(k, _)| k != schema::NAMESPACE_EXISTS_PROPERTY)
                .collect(),
        ))
    }

    async fn list_namespaces(
        &self,
        parent: Option<&Namespace>,
        page: &Page,
    ) -> Result<Vec<Namespace>> {
        let depth = parent.map_or(0, Vec::len);
        let (sql_filter, pattern) = match parent {
            Some(p) => (
                " AND ns LIKE $2",
                Some(schema::descendants_pattern(&stored_namespace(p)?)),
            ),
            None => ("", None),
        };
        let sql = format!(
            "SELECT DISTINCT ns FROM (
                 SELECT namespace AS ns FROM {} WHERE catalog_name = $1
                 UNION SELECT table_namespace FROM {} WHERE catalog_name = $1) n WHERE true{}",
            schema::NAMESPACE_PROPERTIES_TABLE,
            schema::TABLES_TABLE,
            if pattern.is_some() { sql_filter } else { "" }
        );
        let client = self.pool.get().await?;
        let rows = match &pattern {
            Some(p) => client.query(&sql, &[&self.catalog_name, p]).await?,
            None => client.query(&sql, &[&self.catalog_name]).await?,
        };
        // A deeper namespace implies its ancestors: list each direct child once.
        let children: BTreeSet<Namespace> = rows
            .iter()
            .map(|r| decode_namespace(r.get(0)))
            .filter(|levels| levels.len() > depth)
            .map(|levels| levels[..=depth].to_vec())
            .collect();
        let after = page.after.as_deref().map(decode_namespace);
        Ok(paginate(children, after, page.limit))
    }

    async fn drop_namespace(&self, namespace: &Namespace) -> Result<()> {
        let stored = stored_namespace(namespace)?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Serialise with concurrent creates of tables in this namespace.
        tx.execute(
            &format!(
                "SELECT 1 FROM {} WHERE catalog_name = $1 AND namespace = $2 FOR UPDATE",
                schema::NAMESPACE_PROPERTIES_TABLE
            ),
            &[&self.catalog_name, &stored],
        )
        .await?;
        let pattern = schema::descendants_pattern(&stored);
        let row = tx
            .query_one(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM {t} WHERE catalog_name = $1 AND (table_namespace = $2 OR table_namespace LIKE $3))
                         OR EXISTS (SELECT 1 FROM {p} WHERE catalog_name = $1 AND namespace LIKE $3)",
                    t = schema::TABLES_TABLE,
                    p = schema::NAMESPACE_PROPERTIES_TABLE
                ),
                &[&self.catalog_name, &stored, &pattern],
            )
            .await?;
        if row.get::<_, bool>(0) {
            return Err(Error::NamespaceNotEmpty(namespace.join(".")));
        }
        let deleted = tx
            .execute(
                &format!(
                    "DELETE FROM {} WHERE catalog_name = $1 AND namespace = $2",
                    schema::NAMESPACE_PROPERTIES_TABLE
                ),
                &[&self.catalog_name, &stored],
            )
            .await?;
        if deleted == 0 {
            return Err(Error::NoSuchNamespace(namespace.join(".")));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn update_namespace_properties(
        &self,
        namespace: &Namespace,
        removals: &[String],
        updates: &Properties,
    ) -> Result<PropertyChanges> {
        let stored = stored_namespace(namespace)?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if !self.namespace_exists(&tx, &stored).await? {
            return Err(Error::NoSuchNamespace(namespace.join(".")));
        }
        let removed_rows = tx
            .query(
                &format!(
                    "DELETE FROM {} WHERE catalog_name = $1 AND namespace = $2 AND property_key = ANY($3) RETURNING property_key",
                    schema::NAMESPACE_PROPERTIES_TABLE
                ),
                &[&self.catalog_name, &stored, &removals],
            )
            .await?;
        let removed: Vec<String> = removed_rows.iter().map(|r| r.get(0)).collect();
        let missing = removals
            .iter()
            .filter(|k| !removed.contains(k))
            .cloned()
            .collect();
        let upsert = tx
            .prepare_cached(&format!(
                "INSERT INTO {} (catalog_name, namespace, property_key, property_value) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (catalog_name, namespace, property_key) DO UPDATE SET property_value = EXCLUDED.property_value",
                schema::NAMESPACE_PROPERTIES_TABLE
            ))
            .await?;
        for (key, value) in updates {
            tx.execute(&upsert, &[&self.catalog_name, &stored, key, value])
                .await?;
        }
        tx.commit().await?;
        let mut updated: Vec<String> = updates.keys().cloned().collect();
        updated.sort();
        Ok(PropertyChanges {
            updated,
            removed,
            missing,
        })
    }

    async fn list_entities(
        &self,
        namespace: &Namespace,
        kind: EntityKind,
        page: &Page,
    ) -> Result<Vec<String>> {
        let stored = stored_namespace(namespace)?;
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT table_name FROM {} WHERE catalog_name = $1 AND table_namespace = $2
                   AND ($3::text IS NULL OR table_name COLLATE \"C\" > $3) AND {KIND_FILTER}
                 ORDER BY table_name COLLATE \"C\" LIMIT $5",
                schema::TABLES_TABLE
            ))
            .await?;
        let limit = page.limit.map_or(i64::MAX, i64::from);
        let rows = client
            .query(
                &stmt,
                &[
                    &self.catalog_name,
                    &stored,
                    &page.after,
                    &kind.iceberg_type(),
                    &limit,
                ],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn metadata_location(
        &self,
        ident: &TableIdentifier,
        kind: EntityKind,
    ) -> Result<Option<String>> {
        let stored = stored_ident(ident)?;
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(schema::METADATA_LOCATION_SQL).await?;
        let row = client
            .query_opt(
                &stmt,
                &[
                    &self.catalog_name,
                    &stored,
                    &ident.name,
                    &kind.iceberg_type(),
                ],
            )
            .await?;
        Ok(row.and_then(|r| r.get(0)))
    }

    async fn insert_entity(
        &self,
        ident: &TableIdentifier,
        kind: EntityKind,
        metadata_location: &str,
    ) -> Result<()> {
        let stored = stored_ident(ident)?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Holds the namespace against drop_namespace (which locks these rows
        // FOR UPDATE) until the new row is committed.
        let lock = tx
            .prepare_cached(&format!(
                "SELECT 1 FROM {} WHERE catalog_name = $1 AND namespace = $2 FOR SHARE",
                schema::NAMESPACE_PROPERTIES_TABLE
            ))
            .await?;
        if tx
            .query(&lock, &[&self.catalog_name, &stored])
            .await?
            .is_empty()
            && !self.namespace_exists(&tx, &stored).await?
        {
            return Err(Error::NoSuchNamespace(ident.namespace.join(".")));
        }
        let stmt = tx.prepare_cached(schema::INSERT_ENTITY_SQL).await?;
        let inserted = tx
            .execute(
                &stmt,
                &[
                    &self.catalog_name,
                    &stored,
                    &ident.name,
                    &kind.iceberg_type(),
                    &metadata_location,
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(Error::AlreadyExists(format!(
                "a table or view named {} already exists",
                ident
            )));
        }
        tx.commit().await.map_err(sent_change_error)
    }

    async fn swap_metadata(&self, swaps: &[MetadataSwap]) -> Result<()> {
        // One order for every writer, so two transactions over the same tables
        // queue instead of deadlocking.
        let mut ordered: Vec<&MetadataSwap> = swaps.iter().collect();
        ordered.sort_by(|a, b| {
            (&a.ident.namespace, &a.ident.name).cmp(&(&b.ident.namespace, &b.ident.name))
        });
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let swap_stmt = tx
            .prepare_cached(schema::SWAP_METADATA_LOCATION_SQL)
            .await?;
        let check_stmt = tx
            .prepare_cached(&format!(
                "SELECT 1 FROM {} WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3
                   AND {KIND_FILTER} AND metadata_location = $5 FOR SHARE",
                schema::TABLES_TABLE
            ))
            .await?;
        for swap in ordered {
            let stored = stored_ident(&swap.ident)?;
            let holds = match &swap.new {
                Some(new) => {
                    tx.execute(
                        &swap_stmt,
                        &[
                            &self.catalog_name,
                            &stored,
                            &swap.ident.name,
                            &swap.kind.iceberg_type(),
                            new,
                            &swap.expected,
                        ],
                    )
                    .await?
                        > 0
                }
                None => !tx
                    .query(
                        &check_stmt,
                        &[
                            &self.catalog_name,
                            &stored,
                            &swap.ident.name,
                            &swap.kind.iceberg_type(),
                            &swap.expected,
                        ],
                    )
                    .await?
                    .is_empty(),
            };
            if !holds {
                return Err(Error::ConcurrentUpdate(format!(
                    "{} was changed by another commit; reload it and retry",
                    swap.ident
                )));
            }
        }
        tx.commit().await.map_err(sent_change_error)
    }

    async fn entities_containing(
        &self,
        needle: &str,
        except: Option<&TableIdentifier>,
    ) -> Result<Vec<(String, String)>> {
        let (except_ns, except_name) = match except {
            Some(i) => (Some(stored_namespace(&i.namespace)?), Some(i.name.clone())),
            None => (None, None),
        };
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT catalog_name, table_namespace, table_name, metadata_location FROM {}
                     WHERE strpos(metadata_location, $1) > 0
                       AND NOT (catalog_name = $2 AND table_namespace IS NOT DISTINCT FROM $3
                                AND table_name IS NOT DISTINCT FROM $4)",
                    schema::TABLES_TABLE
                ),
                &[&needle, &self.catalog_name, &except_ns, &except_name],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let catalog: String = r.get(0);
                let namespace: String = r.get(1);
                let name: String = r.get(2);
                let qualified = if catalog == self.catalog_name {
                    format!("{namespace}.{name}")
                } else {
                    format!("{catalog}.{namespace}.{name}")
                };
                (qualified, r.get(3))
            })
            .collect())
    }

    async fn drop_entity(
        &self,
        ident: &TableIdentifier,
        kind: EntityKind,
    ) -> Result<Option<String>> {
        let stored = stored_ident(ident)?;
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!(
                    "DELETE FROM {} WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3 AND {KIND_FILTER}
                     RETURNING metadata_location",
                    schema::TABLES_TABLE
                ),
                &[&self.catalog_name, &stored, &ident.name, &kind.iceberg_type()],
            )
            .await?;
        match row {
            Some(r) => Ok(r.get(0)),
            None => Err(kind.missing(ident)),
        }
    }

    async fn rename_entity(
        &self,
        from: &TableIdentifier,
        to: &TableIdentifier,
        kind: EntityKind,
    ) -> Result<()> {
        let from_ns = stored_ident(from)?;
        let to_ns = stored_ident(to)?;
        let client = self.pool.get().await?;
        if !self.namespace_exists(&client, &to_ns).await? {
            return Err(Error::NoSuchNamespace(to.namespace.join(".")));
        }
        let result = client
            .execute(
                &format!(
                    "UPDATE {} SET table_namespace = $5, table_name = $6
                     WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3 AND {KIND_FILTER}",
                    schema::TABLES_TABLE
                ),
                &[&self.catalog_name, &from_ns, &from.name, &kind.iceberg_type(), &to_ns, &to.name],
            )
            .await;
        match result {
            Ok(0) => Err(kind.missing(from)),
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(Error::AlreadyExists(format!(
                "a table or view named {} already exists",
                to
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn reserve_idempotency_key(
        &self,
        key: &str,
        request_sha256: &str,
        lifetime_secs: u64,
        lease_secs: u64,
    ) -> Result<Reservation> {
        let client = self.pool.get().await?;
        let lifetime = lifetime_secs as f64;
        // Seconds since start-up plus one, so 0 means "never swept".
        let now = self.started.elapsed().as_secs() + 1;
        let last = self.last_expiry.load(Ordering::Relaxed);
        if (last == 0 || now >= last + EXPIRY_INTERVAL_SECS)
            && self
                .last_expiry
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            client
                .execute(
                    &format!(
                        "DELETE FROM {} WHERE created_at < now() - make_interval(secs => $1)",
                        schema::IDEMPOTENCY_TABLE
                    ),
                    &[&lifetime],
                )
                .await?;
        }
        let forget = client
            .prepare_cached(&format!(
                "DELETE FROM {} WHERE idempotency_key = $1
                   AND (created_at < now() - make_interval(secs => $2)
                        OR (status_code = {PENDING} AND created_at < now() - make_interval(secs => $3)))",
                schema::IDEMPOTENCY_TABLE
            ))
            .await?;
        let reserve = client
            .prepare_cached(&format!(
                "INSERT INTO {} (idempotency_key, status_code, response_body, request_sha256)
                 VALUES ($1, {PENDING}, '', $2)
                 ON CONFLICT (idempotency_key) DO NOTHING",
                schema::IDEMPOTENCY_TABLE
            ))
            .await?;
        let read = client
            .prepare_cached(&format!(
                "SELECT status_code, response_body, request_sha256 FROM {} WHERE idempotency_key = $1",
                schema::IDEMPOTENCY_TABLE
            ))
            .await?;
        let lease = lease_secs as f64;
        // A row deleted between the insert and the read (its request failed)
        // is reserved again on the next turn.
        for _ in 0..3 {
            client.execute(&forget, &[&key, &lifetime, &lease]).await?;
            if client.execute(&reserve, &[&key, &request_sha256]).await? == 1 {
                return Ok(Reservation::Reserved);
            }
            if let Some(row) = client.query_opt(&read, &[&key]).await? {
                let status: i32 = row.get(0);
                let first: Option<String> = row.get(2);
                return Ok(if first.is_some_and(|h| h != request_sha256) {
                    Reservation::OtherRequest
                } else if status == PENDING {
                    Reservation::InFlight
                } else {
                    Reservation::Done(StoredResponse {
                        status: status as u16,
                        body: row.get(1),
                    })
                });
            }
        }
        Ok(Reservation::InFlight)
    }

    async fn complete_idempotency_key(&self, key: &str, response: &StoredResponse) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                &format!(
                    "UPDATE {} SET status_code = $2, response_body = $3
                     WHERE idempotency_key = $1 AND status_code = {PENDING}",
                    schema::IDEMPOTENCY_TABLE
                ),
                &[&key, &i32::from(response.status), &response.body],
            )
            .await?;
        Ok(())
    }

    async fn release_idempotency_key(&self, key: &str) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                &format!(
                    "DELETE FROM {} WHERE idempotency_key = $1 AND status_code = {PENDING}",
                    schema::IDEMPOTENCY_TABLE
                ),
                &[&key],
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination_starts_after_the_token_and_stops_at_the_limit() {
        assert_eq!(paginate(vec![1, 2, 3, 4], Some(1), Some(2)), vec![2, 3]);
        assert_eq!(paginate(vec![1, 2], None, None), vec![1, 2]);
    }
}
