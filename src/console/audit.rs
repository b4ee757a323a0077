//! The console's audit log: every change made from the console (and every login, refused
//! ones too) — who, when, what, from where — appended as JSON lines to `console-audit.log` in
//! the data directory, each line synced before the change's answer. The file is bounded: past
//! [`MAX_FILE`] it moves to `console-audit.log.1` (replacing the older one) and a new one
//! starts. The System page shows the latest [`SHOWN`], read back from the file after a restart.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

/// Entries the System page shows.
pub const SHOWN: usize = 100;
/// The log's file name in the data directory.
pub const FILE: &str = "console-audit.log";
/// Size past which the file is rotated (one older generation is kept).
pub const MAX_FILE: u64 = 8 * 1024 * 1024;
/// The end of the file read back at start for the System page (enough for [`SHOWN`] lines).
const TAIL: u64 = 128 * 1024;
/// Longest text of a field as logged (user names and actions come partly from forms).
const MAX_FIELD: usize = 200;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub at: Timestamp,
    pub user: String,
    pub from: IpAddr,
    pub action: String,
    pub outcome: String,
}

pub struct Audit {
    path: PathBuf,
    /// The latest entries, newest first; `None` until read back from the file.
    recent: Mutex<Option<VecDeque<Entry>>>,
    /// One writer at a time, so lines never interleave and rotation races nothing.
    file: Mutex<()>,
}

fn clip(s: String) -> String {
    if s.chars().count() <= MAX_FIELD {
        s
    } else {
        s.chars().take(MAX_FIELD).chain(['…']).collect()
    }
}

impl Audit {
    pub fn new(path: PathBuf) -> Audit {
        Audit {
            path,
            recent: Mutex::new(None),
            file: Mutex::new(()),
        }
    }

    /// Records one entry. Blocking (file I/O, fsync): called on the blocking pool.
    pub fn record(&self, mut e: Entry) {
        e.user = clip(e.user);
        e.action = clip(e.action);
        e.outcome = clip(e.outcome);
        tracing::info!(user = %e.user, from = %e.from, action = %e.action, outcome = %e.outcome, "console");
        self.load();
        match serde_json::to_string(&e) {
            Ok(line) => {
                let _g = self.file.lock().unwrap_or_else(PoisonError::into_inner);
                if let Err(err) = self.append(&line) {
                    tracing::error!("console audit log {}: {err}", self.path.display());
                }
            }
            Err(err) => tracing::error!("console audit entry: {err}"),
        }
        let mut r = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let r = r.get_or_insert_with(VecDeque::new);
        r.push_front(e);
        r.truncate(SHOWN);
    }

    fn append(&self, line: &str) -> std::io::Result<()> {
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= MAX_FILE) {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            std::fs::rename(&self.path, old)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(format!("{line}\n").as_bytes())?;
        f.sync_data()
    }

    /// Reads the latest entries back from the file, once. Blocking.
    fn load(&self) {
        let mut r = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if r.is_some() {
            return;
        }
        let mut entries = VecDeque::new();
        if let Ok(mut f) = std::fs::File::open(&self.path) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let start = len.saturating_sub(TAIL);
            let mut text = Vec::new();
            if f.seek(SeekFrom::Start(start)).is_ok() && f.take(TAIL).read_to_end(&mut text).is_ok()
            {
                let text = String::from_utf8_lossy(&text);
                // The first line may be cut by the seek; it does not parse and is skipped.
                for line in text.lines() {
                    if let Ok(e) = serde_json::from_str::<Entry>(line) {
                        entries.push_front(e);
                    }
                }
            }
        }
        entries.truncate(SHOWN);
        *r = Some(entries);
    }

    /// The latest entries, newest first. Blocking the first time (reads the file).
    pub fn recent(&self) -> Vec<Entry> {
        self.load();
        self.recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .flatten()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize) -> Entry {
        Entry {
            at: crate::time::now(),
            user: "admin".into(),
            from: IpAddr::from([127, 0, 0, 1]),
            action: format!("change {i}"),
            outcome: "ok".into(),
        }
    }

    #[test]
    fn entries_survive_a_restart_and_the_file_is_bounded() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join(FILE);
        let a = Audit::new(path.clone());
        for i in 0..SHOWN + 5 {
            a.record(entry(i));
        }
        // A restart: the System page shows the same latest entries, newest first.
        let b = Audit::new(path.clone());
        let r = b.recent();
        assert_eq!(r.len(), SHOWN);
        assert_eq!(r[0].action, format!("change {}", SHOWN + 4));
        // A long field is clipped.
        let mut e = entry(0);
        e.user = "x".repeat(10_000);
        b.record(e);
        assert!(b.recent()[0].user.chars().count() <= MAX_FIELD + 1);
        // Past MAX_FILE the file moves aside and a new one starts.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_len(MAX_FILE))
            .expect("grow");
        b.record(entry(7));
        assert!(std::fs::metadata(&path).expect("new").len() < 1024);
        let old = dir.path().join(format!("{FILE}.1"));
        assert!(std::fs::metadata(old).expect("old").len() >= MAX_FILE);
    }
}
