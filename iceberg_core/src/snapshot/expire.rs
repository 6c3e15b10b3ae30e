//! Snapshot expiry (VACUUM): which snapshots go, the updates that remove them, and
//! which files no snapshot left references any more, so they can be queued for
//! deletion. Pure, as the producer is: manifests come in through the reader.

use std::collections::HashSet;

use iceberg::spec::{Snapshot, TableMetadata, MAIN_BRANCH};
use iceberg::{TableRequirement, TableUpdate};

use super::{manifests_of, read_manifest, Reader};
use crate::error::Result;

/// Snapshots to remove, and what commits their removal.
#[derive(Debug)]
pub struct Expiry {
    pub snapshot_ids: Vec<i64>,
    pub requirements: Vec<TableRequirement>,
    pub updates: Vec<TableUpdate>,
    /// Manifest lists, manifests, data and delete files only the removed snapshots
    /// referenced.
    pub unreferenced: Vec<String>,
}

/// Every file the snapshots `snapshots` reference: their manifest lists, their
/// manifests, and the data and delete files alive in them.
pub fn files_of<'a>(
    metadata: &TableMetadata,
    snapshots: impl IntoIterator<Item = &'a Snapshot>,
    read: &mut Reader,
) -> Result<HashSet<String>> {
    let mut files = HashSet::new();
    let mut seen_manifests = HashSet::new();
    for snapshot in snapshots {
        files.insert(snapshot.manifest_list().to_string());
        for manifest in manifests_of(metadata, snapshot, read)? {
            if !seen_manifests.insert(manifest.manifest_path.clone()) {
                continue; // carried over from a snapshot already counted
            }
            files.insert(manifest.manifest_path.clone());
            for entry in read_manifest(&manifest, read)?.entries() {
                if entry.is_alive() {
                    files.insert(entry.file_path().to_string());
                }
            }
        }
    }
    Ok(files)
}

/// Every file any snapshot of `metadata` references.
pub fn referenced_files(metadata: &TableMetadata, read: &mut Reader) -> Result<HashSet<String>> {
    files_of(metadata, metadata.snapshots().map(|s| s.as_ref()), read)
}

/// The ids of the snapshots a branch or tag points at (other engines may keep tags).
fn pinned(metadata: &TableMetadata) -> HashSet<i64> {
    let mut ids: HashSet<i64> = metadata.current_snapshot_id().into_iter().collect();
    if let Ok(json) = serde_json::to_value(metadata) {
        if let Some(refs) = json.get("refs").and_then(|r| r.as_object()) {
            ids.extend(refs.values().filter_map(|r| r.get("snapshot-id")?.as_i64()));
        }
    }
    ids
}

/// Removes the snapshots of `metadata` made before `older_than_ms`, except the
/// current one and any a branch or tag points at. `None` when none is that old.
pub fn expire_snapshots(
    metadata: &TableMetadata,
    older_than_ms: i64,
    read: &mut Reader,
) -> Result<Option<Expiry>> {
    let pinned = pinned(metadata);
    let (expired, kept): (Vec<&Snapshot>, Vec<&Snapshot>) = metadata
        .snapshots()
        .map(|s| s.as_ref())
        .partition(|s| s.timestamp_ms() < older_than_ms && !pinned.contains(&s.snapshot_id()));
    if expired.is_empty() {
        return Ok(None);
    }
    let kept_files = files_of(metadata, kept, read)?;
    let mut unreferenced: Vec<String> = files_of(metadata, expired.iter().copied(), read)?
        .into_iter()
        .filter(|f| !kept_files.contains(f))
        .collect();
    unreferenced.sort();
    let snapshot_ids: Vec<i64> = expired.iter().map(|s| s.snapshot_id()).collect();
    Ok(Some(Expiry {
        requirements: vec![TableRequirement::RefSnapshotIdMatch {
            r#ref: MAIN_BRANCH.to_string(),
            snapshot_id: metadata.current_snapshot_id(),
        }],
        updates: vec![TableUpdate::RemoveSnapshots {
            snapshot_ids: snapshot_ids.clone(),
        }],
        snapshot_ids,
        unreferenced,
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::commit::tests::table_at;
    use crate::commit::{commit_table, TableCommit};
    use crate::error::{Error, ErrorKind};
    use crate::snapshot::{current_manifests, produce, Changes, NewDataFile};

    fn commit_at(
        metadata: &TableMetadata,
        location: &str,
        store: &mut HashMap<String, Vec<u8>>,
        changes: &Changes,
        now_ms: i64,
    ) -> (TableMetadata, String) {
        let mut read = |l: &str| {
            store
                .get(l)
                .cloned()
                .ok_or_else(|| Error::new(ErrorKind::InvalidMetadata, format!("no file {l}")))
        };
        let current = current_manifests(metadata, &mut read).unwrap();
        let produced = produce(metadata, current, changes, &mut read, now_ms).unwrap();
        for f in produced.files {
            store.insert(f.location, f.bytes);
        }
        match commit_table(metadata, location, &produced.requirements, &produced.updates).unwrap() {
            TableCommit::Write(staged) => (staged.metadata, staged.location),
            TableCommit::Unchanged => panic!("a snapshot changes the table"),
        }
    }

    fn data(path: &str) -> NewDataFile {
        NewDataFile {
            path: path.into(),
            record_count: 1,
            file_size_in_bytes: 10,
            ..Default::default()
        }
    }

    #[test]
    fn old_snapshots_go_and_only_their_own_files_are_unreferenced() {
        let mut store = HashMap::new();
        let t0 = table_at("/w/t", &[]);
        let loc0 = "/w/t/metadata/00000-0b6e0d2c-3f49-4a43-9a4b-1d2f0c7b6a11.metadata.json";
        let add = |p: &str| Changes {
            added: vec![data(p)],
            ..Default::default()
        };
        // Snapshot times never go below the metadata's last update.
        let at = |ms: i64| t0.last_updated_ms() + ms;
        let (t1, loc1) = commit_at(&t0, loc0, &mut store, &add("/w/t/data/a.parquet"), at(1_000));
        let (t2, loc2) = commit_at(&t1, &loc1, &mut store, &add("/w/t/data/b.parquet"), at(2_000));
        // The third snapshot replaces a.parquet by c.parquet.
        let replace = Changes {
            added: vec![data("/w/t/data/c.parquet")],
            removed: HashSet::from(["/w/t/data/a.parquet".to_string()]),
            ..Default::default()
        };
        let (t3, loc3) = commit_at(&t2, &loc2, &mut store, &replace, at(3_000));
        let mut read = |l: &str| Ok(store[l].clone());

        assert!(expire_snapshots(&t3, at(1_000), &mut read).unwrap().is_none());
        let expiry = expire_snapshots(&t3, at(2_500), &mut read).unwrap().unwrap();
        assert_eq!(expiry.snapshot_ids.len(), 2);
        // a.parquet only lived in the expired snapshots; b.parquet lives on in the
        // current one; the expired snapshots' manifest lists go too.
        assert!(expiry.unreferenced.contains(&"/w/t/data/a.parquet".to_string()));
        assert!(!expiry.unreferenced.iter().any(|f| f.ends_with("b.parquet") || f.ends_with("c.parquet")));
        let lists: Vec<&str> = t3
            .snapshots()
            .filter(|s| expiry.snapshot_ids.contains(&s.snapshot_id()))
            .map(|s| s.manifest_list())
            .collect();
        for list in &lists {
            assert!(expiry.unreferenced.iter().any(|f| f == list));
        }
        let staged = match commit_table(&t3, &loc3, &expiry.requirements, &expiry.updates).unwrap() {
            TableCommit::Write(staged) => staged,
            TableCommit::Unchanged => panic!("expiry changes the table"),
        };
        assert_eq!(staged.metadata.snapshots().count(), 1);
        assert_eq!(staged.metadata.current_snapshot_id(), t3.current_snapshot_id());
        // What is left references nothing that was declared unreferenced.
        let left = referenced_files(&staged.metadata, &mut read).unwrap();
        assert!(expiry.unreferenced.iter().all(|f| !left.contains(f)));
        assert!(left.contains("/w/t/data/b.parquet") && left.contains("/w/t/data/c.parquet"));
        // The current snapshot never expires, however old.
        let again = expire_snapshots(&staged.metadata, i64::MAX, &mut read).unwrap();
        assert!(again.is_none());
    }
}
