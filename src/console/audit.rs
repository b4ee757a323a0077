//! The console's audit log: every change made from the console — who, when, what, from
//! where — appended as JSON lines to `console-audit.log` in the data directory (each line
//! flushed before the change's answer), and the latest ones kept in memory for the System page.

use crate::time::Timestamp;
use serde::Serialize;
use std::collections::VecDeque;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

/// Entries the System page shows.
pub const SHOWN: usize = 100;
/// The log's file name in the data directory.
pub const FILE: &str = "console-audit.log";

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub at: Timestamp,
    pub user: String,
    pub from: IpAddr,
    pub action: String,
    pub outcome: String,
}

pub struct Audit {
    path: PathBuf,
    recent: Mutex<VecDeque<Entry>>,
    /// One writer at a time, so lines never interleave.
    file: Mutex<()>,
}

impl Audit {
    pub fn new(path: PathBuf) -> Audit {
        Audit {
            path,
            recent: Mutex::new(VecDeque::new()),
            file: Mutex::new(()),
        }
    }

    /// Records one change. Blocking (file I/O): called on the blocking pool.
    pub fn record(&self, e: Entry) {
        tracing::info!(user = %e.user, from = %e.from, action = %e.action, outcome = %e.outcome, "console change");
        match serde_json::to_string(&e) {
            Ok(line) => {
                let _g = self.file.lock().unwrap_or_else(PoisonError::into_inner);
                let written = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .and_then(|mut f| {
                        f.write_all(format!("{line}\n").as_bytes())?;
                        f.sync_data()
                    });
                if let Err(err) = written {
                    tracing::error!("console audit log {}: {err}", self.path.display());
                }
            }
            Err(err) => tracing::error!("console audit entry: {err}"),
        }
        let mut r = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        r.push_front(e);
        r.truncate(SHOWN);
    }

    /// The latest entries, newest first.
    pub fn recent(&self) -> Vec<Entry> {
        self.recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}
