//! Whole-file operations: the online backup (every table copied inside one read
//! transaction into a new file), and the two offline commands, `compact` (rewrite the
//! file without its free pages) and restore (`place_backup`: put a backup where the
//! database lives). The offline ones open the database themselves, and redb's file lock
//! makes them refuse while a hookd holds it.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use redb::backends::FileBackend;
use redb::{
    Database, Durability, Key, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, TableHandle, Value,
};

use super::migrate::{self, SCHEMA_VERSION};
use super::tables::{self, DELIVERIES, EVENTS, META, SUBSCRIPTIONS};
use crate::store::error::StoreError;

/// Rows per write transaction of the copy: each commit lets redb write its dirty pages
/// out, so a backup of any size holds about this much in memory.
const COPY_CHUNK: usize = 10_000;
/// The copy's page cache: it is written once, sequentially; caching buys nothing.
pub(super) const COPY_CACHE: usize = 4 * 1024 * 1024;

/// What a backup file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupInfo {
    pub bytes: u64,
    pub schema_version: u32,
    pub events: u64,
    pub deliveries: u64,
    pub subscriptions: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactReport {
    pub before_bytes: u64,
    pub after_bytes: u64,
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Opens a database for an offline command, naming a running hookd as the reason a
/// locked file cannot be opened.
pub(super) fn open_offline(path: &Path) -> Result<Database, StoreError> {
    if !path.exists() {
        return Err(StoreError::Missing(path.to_owned()));
    }
    // redb's default cache is 1 GiB: compacting a large file would fill it.
    Database::builder()
        .set_cache_size(COPY_CACHE)
        .open(path)
        .map_err(|error| match error {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(path.to_owned()),
            other => StoreError::Open(other),
        })
}

/// Copies every table into a new file at `dest`, consistently as of one read
/// transaction, while the writer goes on committing.
pub(super) fn backup(db: &Database, dest: &Path) -> Result<BackupInfo, StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(io(dest))?;
    let copy = Database::builder()
        .set_cache_size(COPY_CACHE)
        .create_with_backend(FileBackend::new(file)?)?;
    let source = db.begin_read()?;
    let mut copier = Copy {
        source: &source,
        copy: &copy,
        copied: Vec::new(),
    };
    tables::visit_all(&mut copier)?;
    let copied = copier.copied;
    // A table in the file that the schema does not list would be silently missing from
    // every backup: refuse instead.
    for table in source.list_tables()? {
        if !copied.iter().any(|name| name == table.name()) {
            return Err(StoreError::UnknownTable(table.name().to_owned()));
        }
    }
    // Everything before was committed without fsync; this makes all of it durable.
    let mut txn = copy.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    txn.commit()?;
    drop(copy);
    let info = read_info(dest)?;
    Ok(info)
}

/// Copies each table it visits from `source` into `copy`, naming what it copied.
struct Copy<'a> {
    source: &'a ReadTransaction,
    copy: &'a Database,
    copied: Vec<String>,
}

impl tables::Visit for Copy<'_> {
    fn visit<K: Key + 'static, V: Value + 'static>(
        &mut self,
        table: TableDefinition<'static, K, V>,
    ) -> Result<(), StoreError> {
        self.copied.push(copy_table(self.source, self.copy, table)?);
        Ok(())
    }
}

fn copy_table<K: Key + 'static, V: Value + 'static>(
    source: &ReadTransaction,
    copy: &Database,
    definition: TableDefinition<'static, K, V>,
) -> Result<String, StoreError> {
    let table = source.open_table(definition)?;
    let mut rows = table.iter()?;
    loop {
        let mut txn = copy.begin_write()?;
        txn.set_durability(Durability::None)?;
        let mut more = false;
        {
            let mut target = txn.open_table(definition)?;
            let mut count = 0;
            for entry in rows.by_ref() {
                let (key, value) = entry?;
                target.insert(key.value(), value.value())?;
                count += 1;
                if count == COPY_CHUNK {
                    more = true;
                    break;
                }
            }
        }
        txn.commit()?;
        if !more {
            return Ok(definition.name().to_owned());
        }
    }
}

/// Checks that `path` is a hookd database this build can read and says what it holds.
pub fn read_info(path: &Path) -> Result<BackupInfo, StoreError> {
    let bytes = std::fs::metadata(path).map_err(io(path))?.len();
    let db = Database::builder()
        .open_read_only(path)
        .map_err(|error| match error {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(path.to_owned()),
            other => StoreError::NotADatabase {
                path: path.to_owned(),
                source: other,
            },
        })?;
    let txn = db.begin_read()?;
    let schema_version = txn
        .open_table(META)?
        .get(migrate::VERSION_KEY)?
        .map(|g| migrate::decode_version(g.value()))
        .ok_or_else(|| StoreError::NotHookd(path.to_owned()))?;
    if schema_version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: schema_version,
            known: SCHEMA_VERSION,
        });
    }
    Ok(BackupInfo {
        bytes,
        schema_version,
        events: txn.open_table(EVENTS)?.len()?,
        deliveries: txn.open_table(DELIVERIES)?.len()?,
        subscriptions: txn.open_table(SUBSCRIPTIONS)?.len()?,
    })
}

/// `hookd compact`: rewrites the file so the pages freed by purges are returned to the
/// file system (and their old contents dropped from the file). Refuses while hookd runs.
pub fn compact(path: &Path) -> Result<CompactReport, StoreError> {
    let before_bytes = std::fs::metadata(path).map_err(io(path))?.len();
    let mut db = open_offline(path)?;
    while db.compact()? {}
    drop(db);
    let after_bytes = std::fs::metadata(path).map_err(io(path))?.len();
    Ok(CompactReport {
        before_bytes,
        after_bytes,
    })
}

/// `hookd restore`: checks that `backup` is a hookd database, then puts a copy of it at
/// `db_path`, keeping the file it replaces as `<db_path>.bak` (returned). Refuses while
/// hookd holds the database. The copy takes the replaced file's owner and mode, so a
/// restore run as root leaves a file the service user can open.
pub fn place_backup(backup: &Path, db_path: &Path) -> Result<Option<PathBuf>, StoreError> {
    read_info(backup)?;
    // Held until the new file is in place: no hookd can open the old one meanwhile.
    let lock = if db_path.exists() {
        Some(open_offline(db_path)?)
    } else {
        None
    };
    let dir = crate::store::folder_of(db_path);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let staged = sibling(db_path, "restoring");
    std::fs::copy(backup, &staged).map_err(io(&staged))?;
    File::open(&staged)
        .and_then(|f| f.sync_all())
        .map_err(io(&staged))?;
    let mut previous = None;
    if let Ok(old) = std::fs::metadata(db_path) {
        adopt(&staged, &old, true)?;
        let bak = sibling(db_path, "bak");
        std::fs::rename(db_path, &bak).map_err(io(&bak))?;
        previous = Some(bak);
    }
    std::fs::rename(&staged, db_path).map_err(io(db_path))?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io(&dir))?;
    drop(lock);
    Ok(previous)
}

/// Gives `file` the owner of `like` (a file it replaces, or the folder it goes in),
/// and with `mode` its permissions too, so that a command run as root leaves a file
/// the service user can open. Only root may give a file away; anyone else keeps it.
pub(super) fn adopt(file: &Path, like: &std::fs::Metadata, mode: bool) -> Result<(), StoreError> {
    use std::os::unix::fs::MetadataExt;
    if mode {
        std::fs::set_permissions(file, like.permissions()).map_err(io(file))?;
    }
    if let Err(error) = std::os::unix::fs::chown(file, Some(like.uid()), Some(like.gid())) {
        tracing::debug!(%error, "cannot give the new file the old owner");
    }
    Ok(())
}

/// `<file name>.<suffix>` beside `path`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}
