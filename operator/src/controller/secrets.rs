//! Secrets: those the spec names, checked for the keys the pods read before
//! anything is applied, and those the operator generates (the superuser's
//! password, the catalog's token), created once and never rewritten. No value
//! read or generated here leaves this module except in a create request.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::Client;

use super::apply::Applier;
use crate::resources::Cluster;
use crate::{Error, Result, MANAGER};

/// Secrets the spec names (the generated superuser Secret aside), each with the
/// keys read from it and the field that names it.
fn referenced_secrets(c: &Cluster<'_>) -> BTreeMap<String, (BTreeSet<String>, &'static str)> {
    let mut refs: BTreeMap<String, (BTreeSet<String>, &'static str)> = BTreeMap::new();
    let mut add = |name: &str, keys: &[&str], field: &'static str| {
        let entry = refs
            .entry(name.to_string())
            .or_insert_with(|| (BTreeSet::new(), field));
        entry.0.extend(keys.iter().map(|k| k.to_string()));
    };
    let spec = c.spec;
    if let Some(secret) = &spec.postgres.superuser_secret {
        add(
            &secret.name,
            &["username", "password"],
            "postgres.superuserSecret",
        );
    }
    if let Some(creds) = &spec.object_storage.credentials {
        if let Some(keys) = &creds.s3_keys_secret {
            let mut wanted = vec![
                keys.access_key_id_key.as_str(),
                keys.secret_access_key_key.as_str(),
            ];
            wanted.extend(keys.session_token_key.as_deref());
            add(
                &keys.name,
                &wanted,
                "objectStorage.credentials.s3KeysSecret",
            );
        }
        if let Some(key) = &creds.gcs_key_secret {
            add(
                &key.name,
                &[key.key.as_str()],
                "objectStorage.credentials.gcsKeySecret",
            );
        }
    }
    if let Some(tokens) = spec
        .catalog
        .auth_token_secret
        .as_ref()
        .filter(|_| spec.catalog.enabled)
    {
        add(
            &tokens.name,
            &[tokens.key.as_str()],
            "catalog.authTokenSecret",
        );
    }
    refs
}

/// The first referenced Secret that is missing or lacks a key, described by name
/// and key only: its contents never leave this function.
pub(super) async fn missing_secret(c: &Cluster<'_>, client: &Client) -> Result<Option<String>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &c.names.namespace);
    for (name, (keys, field)) in referenced_secrets(c) {
        let Some(secret) = secrets.get_opt(&name).await? else {
            return Ok(Some(format!(
                "Secret {name} ({field}) does not exist in namespace {}",
                c.names.namespace
            )));
        };
        let present = |k: &str| {
            secret.data.as_ref().is_some_and(|d| d.contains_key(k))
                || secret
                    .string_data
                    .as_ref()
                    .is_some_and(|d| d.contains_key(k))
        };
        if let Some(key) = keys.iter().find(|k| !present(k)) {
            return Ok(Some(format!("Secret {name} ({field}) has no key {key:?}")));
        }
    }
    Ok(None)
}

/// Creates a generated Secret (the superuser's, the catalog token) once, from
/// `build`; it is never rewritten, so the password stays what PGDATA was
/// initialised with and the token what clients were given. Its value is made
/// only when the Secret is missing, and never leaves the create request.
pub(super) async fn create_once(
    cluster: &mut Applier<'_>,
    name: &str,
    build: impl FnOnce() -> Result<Secret>,
) -> Result<()> {
    let secrets: Api<Secret> = cluster.api();
    if secrets.get_opt(name).await?.is_none() {
        let params = PostParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        secrets.create(&params, &build()?).await?;
        cluster.changes.push(format!("created Secret/{name}"));
    }
    Ok(())
}

/// A bearer token for the catalog: 43 characters of the URL-safe base64 alphabet
/// from the OS's CSPRNG (258 bits; 64 symbols divide 256, so every one is equally
/// likely). No comma, which separates tokens in `REST_CATALOG_TOKENS`.
pub fn generate_token() -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut buf = [0u8; 43];
    getrandom::fill(&mut buf).map_err(Error::Random)?;
    Ok(buf
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b & 63)]))
        .collect())
}

/// 32 random alphanumeric characters from the OS's CSPRNG (rejection sampling,
/// so every character is equally likely).
pub fn generate_password() -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const LEN: usize = 32;
    let limit = ALPHABET.len() * (256 / ALPHABET.len());
    let mut password = String::with_capacity(LEN);
    let mut buf = [0u8; 64];
    while password.len() < LEN {
        getrandom::fill(&mut buf).map_err(Error::Random)?;
        let usable = buf.iter().map(|b| usize::from(*b)).filter(|b| *b < limit);
        password.extend(
            usable
                .map(|b| char::from(ALPHABET[b % ALPHABET.len()]))
                .take(LEN - password.len()),
        );
    }
    Ok(password)
}
