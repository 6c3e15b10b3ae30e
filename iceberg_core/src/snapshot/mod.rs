//! The snapshot producer (not written yet): turns a Postgres transaction's
//! changes to an Iceberg table (data files added, position-delete files,
//! files removed) into manifests, a manifest list and the `add-snapshot` /
//! `set-snapshot-ref` updates that [`crate::commit`] then applies, so that a
//! commit from Postgres and one through the REST catalog take the same path.
//! It stays pure: file contents in, the Avro bytes and the updates out; the
//! caller writes the files.
