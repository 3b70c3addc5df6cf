//! Firestore primitives every adapter shares (the signalling store, the fleet store, the
//! sidecar): typed timestamps, a deadline on every call, the compare-and-set update on a
//! document's version, and a meter of the reads and writes the process makes.
//!
//! Firestore bills every document read (queries, gets, and each document a listener delivers)
//! and every write; the meter makes what a participant costs measurable (`/stats`, the
//! `firesfu.firestore.operations` metric and docs/benchmarks.md).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use firestore::errors::FirestoreError;
use firestore::{FirestoreDb, FirestoreTimestamp, FirestoreWritePrecondition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// No Firestore call may take longer than this: a hung call would hang the session behind it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A Firestore call that failed or did not finish in time.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Firestore(#[from] FirestoreError),
    #[error("Firestore did not answer within {} s", .0.as_secs())]
    Timeout(Duration),
}

impl DbError {
    /// A precondition failed: the document changed (or vanished) since it was read.
    pub fn is_precondition(&self) -> bool {
        matches!(self, DbError::Firestore(FirestoreError::DatabaseError(e)) if e.public.code == "FailedPrecondition")
    }

    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            DbError::Firestore(FirestoreError::DataNotFoundError(_))
        )
    }
}

/// Runs one Firestore call with the [`CALL_TIMEOUT`] deadline.
pub async fn timed<T, E: Into<DbError>>(
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, DbError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(DbError::Timeout(CALL_TIMEOUT)),
    }
}

/// A Firestore timestamp value (inside `json!` a time would become a string, which TTL
/// policies ignore).
pub fn timestamp(t: SystemTime) -> FirestoreTimestamp {
    FirestoreTimestamp::try_from(t).unwrap_or_else(|_| FirestoreTimestamp::now())
}

/// The outcome of [`update_if`].
#[derive(Debug, Clone, PartialEq)]
pub enum Cas {
    /// The write landed on the version the predicate accepted.
    Written,
    /// The fresh document does not satisfy the predicate (it is returned).
    Refused(Value),
    /// The document does not exist.
    Missing,
}

/// Where a document lives: `parent` is `db.parent_path(..)` or the database's documents path.
pub struct DocRef<'a> {
    pub parent: &'a str,
    pub collection: &'a str,
    pub id: &'a str,
}

/// Applies `write` (the fields in `mask`) if `still` holds on the fresh document: a
/// compare-and-set on the document's update time, so the write lands only on exactly the
/// version the decision was made on. A concurrent change makes it read and decide again
/// (a few times; then it gives up as `Refused`).
pub async fn update_if<W: Serialize + DeserializeOwned + Sync + Send>(
    db: &FirestoreDb,
    doc: &DocRef<'_>,
    mask: &[&str],
    write: &W,
    still: impl Fn(&Value) -> bool,
) -> Result<Cas, DbError> {
    let mut last = Value::Null;
    for _ in 0..5 {
        let found = timed(
            db.fluent()
                .select()
                .by_id_in(doc.collection)
                .parent(doc.parent)
                .one(doc.id),
        )
        .await?;
        meter::read(1);
        let Some(found) = found else {
            return Ok(Cas::Missing);
        };
        let json: Value = FirestoreDb::deserialize_doc_to(&found)?;
        if !still(&json) {
            return Ok(Cas::Refused(json));
        }
        let Some(version) = found.update_time else {
            return Ok(Cas::Refused(json));
        };
        let version = firestore::timestamp_utils::from_timestamp(version)?;
        let result = timed(
            db.fluent()
                .update()
                .fields(mask.iter().copied())
                .in_col(doc.collection)
                .precondition(FirestoreWritePrecondition::UpdateTime(version))
                .document_id(doc.id)
                .parent(doc.parent)
                .object(write)
                .execute::<()>(),
        )
        .await;
        meter::wrote(1);
        match result {
            Ok(()) => return Ok(Cas::Written),
            Err(e) if e.is_precondition() => last = json,
            Err(e) => return Err(e),
        }
    }
    Ok(Cas::Refused(last))
}

/// Reads one document as JSON (`None`: it does not exist).
pub async fn get(db: &FirestoreDb, doc: &DocRef<'_>) -> Result<Option<Value>, DbError> {
    let found: Option<Value> = timed(
        db.fluent()
            .select()
            .by_id_in(doc.collection)
            .parent(doc.parent)
            .obj()
            .one(doc.id),
    )
    .await?;
    meter::read(1);
    Ok(found)
}

/// Deletes one document; a missing one is not an error.
pub async fn delete(db: &FirestoreDb, doc: &DocRef<'_>) -> Result<(), DbError> {
    let result = timed(
        db.fluent()
            .delete()
            .from(doc.collection)
            .parent(doc.parent)
            .document_id(doc.id)
            .execute(),
    )
    .await;
    meter::wrote(1);
    match result {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// The last segment of a document name (`…/rooms/r1` → `r1`).
pub fn doc_id(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or_default()
}

/// Counts of the Firestore operations this process made, as Firestore bills them.
pub mod meter {
    use super::*;

    static READS: AtomicU64 = AtomicU64::new(0);
    static WRITES: AtomicU64 = AtomicU64::new(0);
    static LISTENED: AtomicU64 = AtomicU64::new(0);
    static TRANSACTIONS: AtomicU64 = AtomicU64::new(0);

    /// Documents read by gets, queries and transactions.
    pub fn read(n: usize) {
        READS.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Documents written or deleted.
    pub fn wrote(n: usize) {
        WRITES.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Documents a listener delivered (each is a billed read).
    pub fn listened(n: usize) {
        LISTENED.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Transactions run (their reads and writes are counted as such too).
    pub fn transaction() {
        TRANSACTIONS.fetch_add(1, Ordering::Relaxed);
    }

    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Counts {
        pub reads: u64,
        pub writes: u64,
        pub listened: u64,
        pub transactions: u64,
    }

    pub fn counts() -> Counts {
        Counts {
            reads: READS.load(Ordering::Relaxed),
            writes: WRITES.load(Ordering::Relaxed),
            listened: LISTENED.load(Ordering::Relaxed),
            transactions: TRANSACTIONS.load(Ordering::Relaxed),
        }
    }
}

/// The meter's counts as an observable metric, `firesfu.firestore.operations{op}` (`read`,
/// `write`, `listen`: documents a listener delivered). Keep the returned instrument alive.
pub fn observe() -> opentelemetry::metrics::ObservableCounter<u64> {
    use opentelemetry::KeyValue;
    crate::telemetry::metrics::meter()
        .u64_observable_counter("firesfu.firestore.operations")
        .with_unit("{document}")
        .with_description("Firestore documents read, written and delivered by listeners")
        .with_callback(|o| {
            let c = meter::counts();
            o.observe(c.reads, &[KeyValue::new("op", "read")]);
            o.observe(c.writes, &[KeyValue::new("op", "write")]);
            o.observe(c.listened, &[KeyValue::new("op", "listen")]);
        })
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_end_in_their_id() {
        assert_eq!(
            doc_id("projects/p/databases/(default)/documents/rooms/r1"),
            "r1"
        );
        assert_eq!(doc_id("r2"), "r2");
    }

    #[tokio::test]
    async fn a_call_that_hangs_times_out() {
        tokio::time::pause();
        let hung = std::future::pending::<Result<(), FirestoreError>>();
        let result = timed(hung).await;
        assert!(matches!(result, Err(DbError::Timeout(_))), "{result:?}");
    }
}
