//! [`crate::ports::StateStore`] on one SQLite database file, for local mode.
//!
//! The tables mirror the DynamoDB access patterns (see `adapters/aws/dynamodb/mod.rs`):
//!
//! | table           | primary key              | other columns                                   | indexes |
//! |-----------------|--------------------------|-------------------------------------------------|---------|
//! | `mailboxes`     | (address, folder)        | action, processed_folder?, credential, enabled  | |
//! | `records`       | (mailbox, message_id)    | folder, internet_message_id?, subject?, sender?, received_at, size, sha256, blob_key, imported_at, state | (mailbox, state, message_id) for pending records; (mailbox, received_at) |
//! | `cursors`       | (mailbox, folder)        | delta_link?, next_link?                         | |
//! | `leases`        | name                     | owner, until_ms (epoch milliseconds)            | |
//! | `subscriptions` | id                       | mailbox, folder, credential, client_state, expires_at, notification_url, created_at | |
//! | `alerts`        | (credential, alert_key)  | claimed_at                                      | |
//!
//! Times of records, subscriptions and alert claims are RFC 3339 in UTC with a fixed nine-digit
//! fraction (`2025-03-05T01:30:15.250000000Z`): readable in the `sqlite3` shell, exact to the
//! nanosecond (records round-trip equal), and ordered correctly as text, so the received-time
//! index sorts by time. Lease times are epoch milliseconds, as in DynamoDB, so both stores agree
//! on the expiry boundary.
//!
//! The schema version is `PRAGMA user_version`; [`SqliteStateStore::open`] creates the schema in
//! an empty database, migrates an older one step by step (`MIGRATIONS`), and refuses a database
//! newer than it knows.
//!
//! Each capability of the store is implemented in its own file, as for DynamoDB; the wire mapping
//! (domain <-> rows), the error mapping and the conditional write they share live in this file.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, named_params};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

use crate::adapters::{epoch_millis, from_epoch_millis};
use crate::domain::{
    AfterImport, ClientState, Cursor, FolderKey, MailboxAddress, MailboxConfig, MessageId,
    MessageRecord, RecordState, RunSummary, SubscriptionRecord,
};

mod alerts;
mod cursors;
mod discovery;
mod events;
mod leases;
mod mailboxes;
mod records;
mod runs;
mod subscriptions;

use crate::ports::{CreateOutcome, LeaseOutcome, StoreError};

/// The schema version this build creates and understands (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i32 = 4;

/// How long a statement waits for another process's write lock before failing (`mailroom status`
/// reading while `mailroom serve` writes, for example).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Version 1 of the schema. `WITHOUT ROWID` clusters each table on its natural key, which is how
/// every query here looks rows up.
const SCHEMA_V1: &str = "
CREATE TABLE mailboxes (
    address          TEXT NOT NULL,
    folder           TEXT NOT NULL,
    action           TEXT NOT NULL,
    processed_folder TEXT,
    credential       TEXT NOT NULL,
    enabled          INTEGER NOT NULL,
    PRIMARY KEY (address, folder)
) WITHOUT ROWID;

CREATE TABLE records (
    mailbox             TEXT NOT NULL,
    message_id          TEXT NOT NULL,
    folder              TEXT NOT NULL,
    internet_message_id TEXT,
    subject             TEXT,
    sender              TEXT,
    received_at         TEXT NOT NULL,
    size                INTEGER NOT NULL,
    sha256              TEXT NOT NULL,
    blob_key            TEXT NOT NULL,
    imported_at         TEXT NOT NULL,
    state               TEXT NOT NULL,
    PRIMARY KEY (mailbox, message_id)
) WITHOUT ROWID;
-- Ends in message_id so pending records come out in key order from the index, without a sort.
CREATE INDEX records_by_state ON records (mailbox, state, message_id);
CREATE INDEX records_by_received ON records (mailbox, received_at);

CREATE TABLE cursors (
    mailbox    TEXT NOT NULL,
    folder     TEXT NOT NULL,
    delta_link TEXT,
    next_link  TEXT,
    PRIMARY KEY (mailbox, folder)
) WITHOUT ROWID;

CREATE TABLE leases (
    name     TEXT NOT NULL PRIMARY KEY,
    owner    TEXT NOT NULL,
    until_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- The latest run of each mailbox, as a JSON document (for `mailroom status`).
CREATE TABLE runs (
    mailbox TEXT NOT NULL PRIMARY KEY,
    summary TEXT NOT NULL
) WITHOUT ROWID;
";

/// Version 2: Graph subscriptions and alert claims.
const SCHEMA_V2: &str = "
CREATE TABLE subscriptions (
    id               TEXT NOT NULL PRIMARY KEY,
    mailbox          TEXT NOT NULL,
    folder           TEXT NOT NULL,
    credential       TEXT NOT NULL,
    client_state     TEXT NOT NULL,
    expires_at       TEXT NOT NULL,
    notification_url TEXT NOT NULL,
    created_at       TEXT NOT NULL
) WITHOUT ROWID;

-- One row per alert sent (or being sent): the primary key is what makes an alert go out once.
CREATE TABLE alerts (
    credential TEXT NOT NULL,
    alert_key  TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    PRIMARY KEY (credential, alert_key)
) WITHOUT ROWID;
";

/// Version 3: discovery. A mailbox folder remembers the `[[discover]]` rule that added it (NULL
/// for one configured by hand); rules and their latest run are JSON documents, as run summaries.
const SCHEMA_V3: &str = "
ALTER TABLE mailboxes ADD COLUMN discovered_by TEXT;

CREATE TABLE discover_rules (
    id   TEXT NOT NULL PRIMARY KEY,
    rule TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE discovery_runs (
    rule    TEXT NOT NULL PRIMARY KEY,
    summary TEXT NOT NULL
) WITHOUT ROWID;
";

/// Version 4: the event outbox (docs/events.md), each event a JSON document keyed by mailbox and
/// message id.
const SCHEMA_V4: &str = "
CREATE TABLE events (
    mailbox    TEXT NOT NULL,
    message_id TEXT NOT NULL,
    event      TEXT NOT NULL,
    PRIMARY KEY (mailbox, message_id)
) WITHOUT ROWID;
";

/// The schema steps: `MIGRATIONS[v]` takes a database from version `v` to `v + 1`, so an empty
/// database (version 0) runs them all. Released steps are never edited, only appended to.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4];

const SUBSCRIPTION_COLUMNS: &str =
    "id, mailbox, folder, credential, client_state, expires_at, notification_url, created_at";

const RECORD_COLUMNS: &str = "mailbox, message_id, folder, internet_message_id, subject, sender, \
     received_at, size, sha256, blob_key, imported_at, state";

/// A [`StateStore`] on a SQLite database: one connection, shared by every task of the process.
///
/// rusqlite is synchronous, so every operation runs on tokio's blocking pool
/// (`spawn_blocking`) and never stalls the async runtime's workers; the connection sits behind
/// a mutex because a `Connection` is not `Sync`. One connection is plenty for one machine's
/// mailboxes, and it makes each operation atomic within the process.
#[derive(Clone)]
pub struct SqliteStateStore {
    connection: Arc<Mutex<Connection>>,
    /// The database file, or `:memory:`: named in errors.
    location: Arc<str>,
}

impl std::fmt::Debug for SqliteStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStateStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl SqliteStateStore {
    /// Opens (or creates) the database at `path`, creating its parent directories and the schema.
    ///
    /// Blocking: call it at start-up, before serving, or inside `spawn_blocking`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        const OPERATION: &str = "open database";
        let location = path.display().to_string();
        let fail =
            |detail: String| StoreError::unavailable(OPERATION, format!("{location}: {detail}"));
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| fail(format!("cannot create directory {}: {e}", parent.display())))?;
        }
        let connection = Connection::open(path).map_err(|e| fail(e.to_string()))?;
        connection
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| fail(e.to_string()))?;
        // WAL lets readers (a `mailroom status` in another process) run while the server writes,
        // and survives a crash mid-transaction like the default rollback journal does.
        let mode: String = connection
            .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
            .map_err(|e| fail(format!("cannot switch to WAL mode: {e}")))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Some file systems (network shares) cannot do WAL; SQLite then keeps its journal.
            tracing::warn!(database = %location, journal_mode = %mode, "SQLite refused WAL mode");
        }
        // FULL (not NORMAL) so a committed record survives a power cut: the record is the
        // exactly-once gate, and losing it after a message was moved would lose track of it.
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|e| fail(e.to_string()))?;
        Self::with_schema(connection, location)
    }

    /// A private database in memory, gone when the store is dropped: for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        let connection = Connection::open_in_memory()
            .map_err(|e| StoreError::unavailable("open database", format!(":memory:: {e}")))?;
        Self::with_schema(connection, ":memory:".into())
    }

    /// The database file (or `:memory:`).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Creates the schema in an empty database; migrates an older one; accepts the current
    /// version; refuses a newer one (written by a later Mailroom) rather than misreading it.
    fn with_schema(mut connection: Connection, location: String) -> Result<Self, StoreError> {
        const OPERATION: &str = "open database";
        let fail =
            |detail: String| StoreError::unavailable(OPERATION, format!("{location}: {detail}"));
        // IMMEDIATE takes the write lock first, so two processes opening a new (or old) database
        // at once do not both try to create (or migrate) the tables. A failed step rolls back
        // every step, leaving the database at the version it had.
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| fail(e.to_string()))?;
        let version: i32 = transaction
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|e| fail(format!("cannot read the schema version: {e}")))?;
        match version {
            0..SCHEMA_VERSION => {
                for (from, step) in (version..).zip(&MIGRATIONS[version as usize..]) {
                    transaction.execute_batch(step).map_err(|e| {
                        fail(format!(
                            "cannot migrate the schema from version {from} to {}: {e}",
                            from + 1
                        ))
                    })?;
                }
                transaction
                    .pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(|e| fail(e.to_string()))?;
            }
            SCHEMA_VERSION => {}
            newer => {
                return Err(fail(format!(
                    "the database has schema version {newer}, newer than this Mailroom \
                     understands ({SCHEMA_VERSION}); run a newer Mailroom or use another database"
                )));
            }
        }
        transaction.commit().map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            location: location.into(),
        })
    }

    /// Runs `work` on the connection, on the blocking pool.
    async fn run<T, F>(&self, operation: &'static str, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let connection = Arc::clone(&self.connection);
        let location = Arc::clone(&self.location);
        tokio::task::spawn_blocking(move || {
            let mut connection = lock(&connection);
            work(&mut connection).map_err(|e| with_location(e, &location))
        })
        .await
        .map_err(|e| {
            StoreError::unavailable(
                operation,
                format!("the database task of {} failed: {e}", self.location),
            )
        })?
    }
}

fn lock(connection: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // Poisoned only if a task panicked while holding it. SQLite rolls back an unfinished
    // transaction when its handle drops, so the connection is still consistent.
    connection.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adds the database file to an `Unavailable` error, so the operator knows which one failed.
fn with_location(error: StoreError, location: &str) -> StoreError {
    match error {
        StoreError::Unavailable {
            operation,
            detail,
            cause,
        } => StoreError::Unavailable {
            operation,
            detail: format!("{detail} (database {location})"),
            cause,
        },
        other => other,
    }
}

/// Runs `write`, an insert or upsert that changes no row when its condition fails, and then,
/// only if it changed none, `read` of what stood in the way, in one IMMEDIATE transaction: no
/// other process slips in between. `None` when written. The one conditional write of this
/// adapter.
fn conditional_write<T>(
    connection: &mut Connection,
    operation: &'static str,
    write: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<usize>,
    read: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error(operation))?;
    let changed = write(&transaction).map_err(sql_error(operation))?;
    let refused = if changed == 0 {
        Some(read(&transaction)?)
    } else {
        None
    };
    transaction.commit().map_err(sql_error(operation))?;
    Ok(refused)
}

/// A SQLite error as a [`StoreError`]: a value of the wrong type is a malformed row; a busy or
/// locked database (another process is writing past the busy timeout) is throttling; anything
/// else (I/O, full disk) means the store is unavailable.
fn sql_error(operation: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| match e {
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::Malformed {
            operation,
            detail: e.to_string(),
        },
        rusqlite::Error::SqliteFailure(failure, _)
            if matches!(
                failure.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            StoreError::Throttled {
                operation,
                detail: e.to_string(),
                cause: Some(Arc::new(e)),
            }
        }
        e => StoreError::Unavailable {
            operation,
            detail: e.to_string(),
            cause: Some(Arc::new(e)),
        },
    }
}

// ---- Wire mapping -----------------------------------------------------------------------------

/// The columns of a record that are not stored as the domain holds them.
struct RecordRow {
    received_at: String,
    imported_at: String,
    size: i64,
}

impl RecordRow {
    fn from_record(record: &MessageRecord, operation: &'static str) -> Result<Self, StoreError> {
        Ok(Self {
            received_at: sortable_utc(record.received_at, "received_at", operation)?,
            imported_at: sortable_utc(record.imported_at, "imported_at", operation)?,
            size: i64::try_from(record.size).map_err(|_| StoreError::Malformed {
                operation,
                detail: format!(
                    "column 'size' cannot hold {} (more than SQLite's largest integer)",
                    record.size
                ),
            })?,
        })
    }
}

/// UTC with a fixed-width nine-digit fraction: exact, and sorts as text in time order (plain
/// RFC 3339 drops a zero fraction, and `10:00:00.5Z` would sort before `10:00:00Z`).
fn sortable_utc(
    at: OffsetDateTime,
    column: &str,
    operation: &'static str,
) -> Result<String, StoreError> {
    at.to_offset(UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
        ))
        .map_err(|e| StoreError::Malformed {
            operation,
            detail: format!("column '{column}' cannot be written: {e}"),
        })
}

/// The query of `pending_records`. Without statistics (no `ANALYZE`), SQLite prefers scanning the
/// mailbox's whole primary-key range and filtering on state, which reads every record the mailbox
/// ever had; `INDEXED BY` holds it to the index, which reads only the pending ones (and fails
/// loudly, rather than slowly, if the index were ever missing).
fn pending_sql() -> String {
    format!(
        "SELECT {RECORD_COLUMNS} FROM records INDEXED BY records_by_state
         WHERE mailbox = ?1 AND state = ?2 ORDER BY message_id"
    )
}

fn select_record(
    connection: &Connection,
    mailbox: &str,
    id: &str,
    operation: &'static str,
) -> Result<Option<MessageRecord>, StoreError> {
    let mut records = select_records(
        connection,
        &format!("SELECT {RECORD_COLUMNS} FROM records WHERE mailbox = ?1 AND message_id = ?2"),
        (mailbox, id),
        operation,
    )?;
    Ok(records.pop())
}

fn select_records(
    connection: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    operation: &'static str,
) -> Result<Vec<MessageRecord>, StoreError> {
    let mut statement = connection.prepare(sql).map_err(sql_error(operation))?;
    let mut rows = statement.query(params).map_err(sql_error(operation))?;
    let mut records = Vec::new();
    while let Some(row) = rows.next().map_err(sql_error(operation))? {
        records.push(record_from_row(row, operation)?);
    }
    Ok(records)
}

fn select_subscriptions(
    connection: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    operation: &'static str,
) -> Result<Vec<SubscriptionRecord>, StoreError> {
    let mut statement = connection.prepare(sql).map_err(sql_error(operation))?;
    let mut rows = statement.query(params).map_err(sql_error(operation))?;
    let mut subscriptions = Vec::new();
    while let Some(row) = rows.next().map_err(sql_error(operation))? {
        subscriptions.push(subscription_from_row(row, operation)?);
    }
    Ok(subscriptions)
}

/// Read access to one row's columns; every failure names the column and the row's key.
struct Columns<'r, 's> {
    row: &'r Row<'s>,
    operation: &'static str,
    /// The row's table and key, e.g. `record (mailbox='a@contoso.com', message_id='x')`.
    what: String,
}

impl Columns<'_, '_> {
    fn malformed(&self, column: &str, problem: impl std::fmt::Display) -> StoreError {
        StoreError::Malformed {
            operation: self.operation,
            detail: format!("column '{column}' of {} {problem}", self.what),
        }
    }

    fn optional_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.row
            .get(column)
            .map_err(|e| self.malformed(column, format_args!("is not text: {e}")))
    }

    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.optional_text(column)?
            .ok_or_else(|| self.malformed(column, "is missing"))
    }

    fn integer(&self, column: &str) -> Result<i64, StoreError> {
        self.row
            .get(column)
            .map_err(|e| self.malformed(column, format_args!("is not an integer: {e}")))
    }

    fn time(&self, column: &str) -> Result<OffsetDateTime, StoreError> {
        OffsetDateTime::parse(&self.text(column)?, &Rfc3339)
            .map_err(|_| self.malformed(column, "is not an RFC 3339 time"))
    }

    fn mailbox(&self, column: &str) -> Result<MailboxAddress, StoreError> {
        MailboxAddress::parse(&self.text(column)?)
            .map_err(|_| self.malformed(column, "is not a mailbox address"))
    }
}

/// The primary key columns as text for error messages, or `?` if they cannot be read.
fn key_text(row: &Row<'_>, column: &str) -> String {
    row.get::<_, String>(column)
        .unwrap_or_else(|_| "?".to_owned())
}

fn config_from_row(row: &Row<'_>, operation: &'static str) -> Result<MailboxConfig, StoreError> {
    let c = Columns {
        row,
        operation,
        what: format!(
            "mailbox (address='{}', folder='{}')",
            key_text(row, "address"),
            key_text(row, "folder")
        ),
    };
    let action = AfterImport::from_parts(
        &c.text("action")?,
        c.optional_text("processed_folder")?.as_deref(),
    )
    .map_err(|e| c.malformed(e.field, format_args!("is invalid: expected {}", e.expected)))?;
    Ok(MailboxConfig {
        address: c.mailbox("address")?,
        folder: c.text("folder")?,
        action,
        credential: c.text("credential")?,
        enabled: match c.integer("enabled")? {
            0 => false,
            1 => true,
            _ => return Err(c.malformed("enabled", "is not 0 or 1")),
        },
        discovered_by: c.optional_text("discovered_by")?,
    })
}

fn record_from_row(row: &Row<'_>, operation: &'static str) -> Result<MessageRecord, StoreError> {
    let c = Columns {
        row,
        operation,
        what: format!(
            "record (mailbox='{}', message_id='{}')",
            key_text(row, "mailbox"),
            key_text(row, "message_id")
        ),
    };
    let size = c.integer("size")?;
    Ok(MessageRecord {
        mailbox: c.mailbox("mailbox")?,
        message_id: MessageId::new(c.text("message_id")?),
        folder: c.text("folder")?,
        internet_message_id: c.optional_text("internet_message_id")?,
        subject: c.optional_text("subject")?,
        from: c.optional_text("sender")?,
        received_at: c.time("received_at")?,
        size: u64::try_from(size).map_err(|_| c.malformed("size", "is negative"))?,
        sha256: c.text("sha256")?,
        blob_key: c.text("blob_key")?,
        imported_at: c.time("imported_at")?,
        state: RecordState::parse(&c.text("state")?)
            .ok_or_else(|| c.malformed("state", "is not one of stored, done"))?,
    })
}

/// Errors name the column and the subscription id, never a column's value: the client state is
/// a secret.
fn subscription_from_row(
    row: &Row<'_>,
    operation: &'static str,
) -> Result<SubscriptionRecord, StoreError> {
    let c = Columns {
        row,
        operation,
        what: format!("subscription (id='{}')", key_text(row, "id")),
    };
    Ok(SubscriptionRecord {
        id: c.text("id")?,
        mailbox: c.mailbox("mailbox")?,
        folder: c.text("folder")?,
        credential: c.text("credential")?,
        client_state: ClientState::from_stored(c.text("client_state")?),
        expires_at: c.time("expires_at")?,
        notification_url: c.text("notification_url")?,
        created_at: c.time("created_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::*;
    use time::macros::datetime;

    /// Nanosecond precision: SQLite must round-trip times exactly.
    fn record() -> MessageRecord {
        crate::domain::sample_record(datetime!(2025-03-04 23:30:15.123456789 -02:00))
    }

    fn raw(store: &SqliteStateStore, sql: &str) -> String {
        lock(&store.connection)
            .query_row(sql, [], |row| row.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn record_times_are_fixed_width_utc_and_round_trip_to_the_nanosecond() {
        let store = SqliteStateStore::in_memory().unwrap();
        let record = record();
        store.create_record(&record).await.unwrap();
        assert_eq!(
            raw(&store, "SELECT received_at FROM records"),
            "2025-03-05T01:30:15.123456789Z"
        );
        assert_eq!(
            raw(&store, "SELECT imported_at FROM records"),
            "2025-03-05T01:31:00.000000000Z"
        );
        assert_eq!(
            store
                .get_record(&record.mailbox, &record.message_id)
                .await
                .unwrap(),
            Some(record)
        );
    }

    #[test]
    fn fixed_width_times_sort_as_text_in_time_order() {
        let earlier = datetime!(2025-03-05 10:00:00 UTC);
        let later = datetime!(2025-03-05 10:00:00.5 UTC);
        let a = sortable_utc(earlier, "t", "test").unwrap();
        let b = sortable_utc(later, "t", "test").unwrap();
        assert!(a < b, "{a} {b}");
    }

    #[tokio::test]
    async fn malformed_rows_name_the_column_and_the_key() {
        let store = SqliteStateStore::in_memory().unwrap();
        store.create_record(&record()).await.unwrap();
        lock(&store.connection)
            .execute("UPDATE records SET received_at = 'yesterday'", [])
            .unwrap();
        let err = store
            .list_records(&record().mailbox)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("list records"), "{err}");
        assert!(err.contains("column 'received_at'"), "{err}");
        assert!(
            err.contains("mailbox='a@contoso.com', message_id='AAMk/1+='"),
            "{err}"
        );

        lock(&store.connection)
            .execute("UPDATE records SET size = 'large'", [])
            .unwrap();
        let err = store
            .get_record(&record().mailbox, &record().message_id)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Malformed { detail, .. } if detail.contains("'size'")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_database_from_a_newer_mailroom_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(SqliteStateStore::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = SqliteStateStore::open(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(
            err.contains(&format!("schema version {}", SCHEMA_VERSION + 1)),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_version_1_database_is_migrated_and_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            // What Mailroom wrote before subscriptions and alerts existed.
            let connection = Connection::open(&path).unwrap();
            connection.execute_batch(SCHEMA_V1).unwrap();
            connection
                .execute(
                    "INSERT INTO leases (name, owner, until_ms) VALUES ('mbx', 'runner-a', 1)",
                    [],
                )
                .unwrap();
            connection
                .execute(
                    "INSERT INTO mailboxes (address, folder, action, credential, enabled)
                     VALUES ('a@contoso.com', 'Inbox', 'none', 'contoso', 1)",
                    [],
                )
                .unwrap();
            connection.pragma_update(None, "user_version", 1).unwrap();
        }
        let store = SqliteStateStore::open(&path).unwrap();
        let version: i32 = lock(&store.connection)
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(raw(&store, "SELECT owner FROM leases"), "runner-a");
        assert!(
            store
                .claim_alert("contoso", "k", datetime!(2030-01-01 0:00 UTC))
                .await
                .unwrap()
        );
        assert_eq!(store.list_alerts("contoso").await.unwrap(), ["k"]);
        assert!(store.list_subscriptions().await.unwrap().is_empty());
        let mailboxes = store.list_mailboxes().await.unwrap();
        assert_eq!(mailboxes.len(), 1);
        assert_eq!(mailboxes[0].discovered_by, None, "configured by hand");
        assert!(store.list_discover_rules().await.unwrap().is_empty());
        drop(store);
        // Opening again finds the current version and changes nothing.
        let store = SqliteStateStore::open(&path).unwrap();
        assert_eq!(store.list_alerts("contoso").await.unwrap(), ["k"]);
    }

    #[tokio::test]
    async fn malformed_subscription_rows_name_the_column_not_the_client_state() {
        const CLIENT_STATE: &str = "s3cr3t-client-state-0123456789abcdef";
        let store = SqliteStateStore::in_memory().unwrap();
        let sub = SubscriptionRecord {
            id: "sub-1".into(),
            mailbox: MailboxAddress::parse("a@contoso.com").unwrap(),
            folder: "Inbox".into(),
            credential: "main".into(),
            client_state: ClientState::from_stored(CLIENT_STATE),
            expires_at: datetime!(2025-03-07 23:30:15.123456789 -02:00),
            notification_url: "https://mailroom.example/notify".into(),
            created_at: datetime!(2025-03-05 01:31 UTC),
        };
        store.put_subscription(&sub).await.unwrap();
        assert_eq!(
            raw(&store, "SELECT expires_at FROM subscriptions"),
            "2025-03-08T01:30:15.123456789Z"
        );
        assert_eq!(store.get_subscription("sub-1").await.unwrap(), Some(sub));
        lock(&store.connection)
            .execute("UPDATE subscriptions SET expires_at = 'soon'", [])
            .unwrap();
        let err = store.list_subscriptions().await.unwrap_err();
        let StoreError::Malformed { operation, detail } = &err else {
            panic!("expected Malformed, got {err:?}");
        };
        assert_eq!(*operation, "list subscriptions");
        assert!(detail.contains("column 'expires_at'"), "{detail}");
        assert!(detail.contains("subscription (id='sub-1')"), "{detail}");
        assert!(!format!("{err} {err:?}").contains(CLIENT_STATE), "{err:?}");

        lock(&store.connection)
            .execute("UPDATE subscriptions SET client_state = x'c0ffee'", [])
            .unwrap();
        let err = store.get_subscription("sub-1").await.unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("column 'client_state'"), "{shown}");
        assert!(!shown.contains(CLIENT_STATE), "{shown}");
    }

    #[test]
    fn open_creates_parent_directories_uses_wal_and_sets_the_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/deeper/state.db");
        let store = SqliteStateStore::open(&path).unwrap();
        assert!(path.is_file());
        assert_eq!(store.location(), path.display().to_string());
        let connection = lock(&store.connection);
        let mode: String = connection
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let version: i32 = connection
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn open_failures_name_the_database_path() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the database file should be.
        let path = dir.path().join("state.db");
        std::fs::create_dir(&path).unwrap();
        let err = SqliteStateStore::open(&path).unwrap_err();
        assert!(
            matches!(&err, StoreError::Unavailable { operation: "open database", detail, .. }
                if detail.contains(&path.display().to_string())),
            "{err:?}"
        );
    }

    #[test]
    fn pending_records_use_the_state_index() {
        let store = SqliteStateStore::in_memory().unwrap();
        let connection = lock(&store.connection);
        let mut statement = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {}", pending_sql()))
            .unwrap();
        let plan: Vec<String> = statement
            .query_map(["a@contoso.com", "stored"], |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // The index alone: no scan of other records, no temporary sort.
        assert_eq!(
            plan,
            ["SEARCH records USING INDEX records_by_state (mailbox=? AND state=?)"]
        );
    }
}
