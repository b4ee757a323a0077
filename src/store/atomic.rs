//! Atomic file replacement.

use super::StoreError;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Numbers the temp files of this process, so two writes of one file never share one.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// Suffix of every temp file; [`sweep_temp_files`] looks for it.
const TEMP_SUFFIX: &str = ".tmp";

/// A fresh temp name beside the target: `.{name}.{pid}.{counter}.{random}.tmp`. The pid lets
/// the sweep leave a live writer's file alone; the counter keeps parallel writes in this
/// process apart; the random part keeps apart a process that reuses a pid of an older one.
fn temp_path(dir: &Path, name: &str) -> PathBuf {
    let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
    let r: u32 = rand::random();
    dir.join(format!(
        ".{name}.{}.{n}.{r:08x}{TEMP_SUFFIX}",
        std::process::id()
    ))
}

/// Replaces `path` with `bytes` so that readers and a crash see either the old or the new
/// content. `mode` is the Unix permission of the new file (0600 for secrets). Each call
/// writes its own temp file (created exclusively), so parallel writes of one path never
/// clobber each other: the last rename wins, whole.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = temp_path(dir, &name);
    let mut created = false;
    let result = (|| {
        let mut opts = OpenOptions::new();
        // create_new: O_CREAT|O_EXCL, never someone else's file (or a planted symlink).
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode);
        }
        let mut f = opts.open(&tmp)?;
        created = true;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        created = false;
        // The rename is durable only once the directory entry is.
        File::open(dir)?.sync_all()
    })();
    if created {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| StoreError::write(path, e))
}

/// The pid in a temp file name made by [`temp_path`], if it is one.
fn temp_owner(file_name: &str) -> Option<u32> {
    let stem = file_name.strip_prefix('.')?.strip_suffix(TEMP_SUFFIX)?;
    let mut parts = stem.rsplitn(4, '.');
    let (_random, _counter, pid) = (parts.next()?, parts.next()?, parts.next()?);
    parts.next()?; // the target's name
    pid.parse().ok()
}

/// Whether another live process has this pid (so its temp file may still be in use).
fn other_process_alive(pid: u32) -> bool {
    pid != std::process::id() && Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes temp files left by writes that were killed before their rename. Call it before
/// this process writes into `dir`: temp files named with this process's pid count as
/// leftovers (a restarted container gets the same pid every time), while those of another
/// live process (a `keybridge licence import` running beside the host) are left alone.
pub fn sweep_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name();
        let n = n.to_string_lossy();
        if !(n.starts_with('.') && n.ends_with(TEMP_SUFFIX)) {
            continue;
        }
        if temp_owner(&n).is_some_and(other_process_alive) {
            continue;
        }
        let _ = fs::remove_file(e.path());
    }
}

/// Mode of the directories the host creates: the service user, and its group (`keybridge`),
/// which needs to reach the control socket inside; nobody else. Licence files carry their
/// activation code and ITN (the restore proof), so the data directory is not world-readable.
pub const DIR_MODE: u32 = 0o750;

/// Creates a directory (and missing parents) with [`DIR_MODE`] if missing.
pub fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(DIR_MODE);
    }
    b.create(dir).map_err(|e| StoreError::create_dir(dir, e))
}

/// Like [`ensure_dir`], and an existing `dir` whose permissions are wider than [`DIR_MODE`]
/// (one made 0755 by an older version, or by hand) is narrowed to them. Returns the old and
/// new mode when it narrowed, for the caller to log.
pub fn ensure_dir_narrowed(dir: &Path) -> Result<Option<(u32, u32)>, StoreError> {
    ensure_dir(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::metadata(dir).map_err(|e| StoreError::read(dir, e))?;
        let old = meta.permissions().mode() & 0o7777;
        // Special bits stay (a setgid directory keeps handing its group to new files).
        let new = old & (DIR_MODE | 0o7000);
        if new != old {
            fs::set_permissions(dir, fs::Permissions::from_mode(new))
                .map_err(|e| StoreError::write(dir, e))?;
            return Ok(Some((old, new)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_sets_mode() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("f");
        write(&p, b"one", 0o600).expect("write");
        write(&p, b"two", 0o600).expect("write");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(m, 0o600);
        }
        let leftovers: Vec<_> = fs::read_dir(d.path()).expect("dir").collect();
        assert_eq!(leftovers.len(), 1);
    }

    /// The value thread `t` writes the `i`-th time: one byte repeated, long enough that a torn
    /// or truncated file is visible.
    fn value(t: usize, i: usize) -> Vec<u8> {
        let byte = b'a' + u8::try_from((t * 7 + i) % 26).expect("letter");
        let mut v = format!("{t:02}-{i:03}:").into_bytes();
        v.resize(16 * 1024, byte);
        v
    }

    fn is_complete(bytes: &[u8]) -> bool {
        let Some(head) = bytes.get(..7) else {
            return false;
        };
        let Ok(head) = std::str::from_utf8(head) else {
            return false;
        };
        let (Ok(t), Ok(i)) = (head[..2].parse(), head[3..6].parse()) else {
            return false;
        };
        bytes == value(t, i).as_slice()
    }

    #[test]
    fn parallel_writes_of_one_path_all_succeed_whole() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("shared.licence");
        write(&p, &value(99, 0), 0o640).expect("first write");
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut reads = 0u32;
                while !done.load(Ordering::Relaxed) {
                    let b = fs::read(&p).expect("the file is always there");
                    assert!(is_complete(&b), "torn file of {} bytes", b.len());
                    reads += 1;
                }
                reads
            });
            let writers: Vec<_> = (0..8)
                .map(|t| {
                    let p = &p;
                    s.spawn(move || {
                        for i in 0..50 {
                            write(p, &value(t, i), 0o640)
                                .unwrap_or_else(|e| panic!("thread {t} write {i}: {e}"));
                        }
                    })
                })
                .collect();
            for w in writers {
                w.join().expect("writer");
            }
            done.store(true, Ordering::Relaxed);
            assert!(reader.join().expect("reader") > 0);
        });
        assert!(is_complete(&fs::read(&p).expect("read")));
        let names: Vec<String> = fs::read_dir(d.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["shared.licence".to_string()], "temp files left");
    }

    #[cfg(unix)]
    #[test]
    fn directories_are_made_0750_and_wider_ones_narrowed() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o7777;
        let d = tempfile::tempdir().expect("tempdir");
        let fresh = d.path().join("a/b");
        ensure_dir(&fresh).expect("create");
        // The umask may take more away, never add.
        assert_eq!(mode(&fresh) & !DIR_MODE, 0);
        assert_eq!(mode(&d.path().join("a")) & !DIR_MODE, 0);
        let wide = d.path().join("wide");
        fs::create_dir(&wide).expect("mkdir");
        fs::set_permissions(&wide, fs::Permissions::from_mode(0o2777)).expect("chmod");
        assert_eq!(
            ensure_dir_narrowed(&wide).expect("narrow"),
            Some((0o2777, 0o2750))
        );
        assert_eq!(mode(&wide), 0o2750);
        // Narrower stays as it is: never widened.
        fs::set_permissions(&wide, fs::Permissions::from_mode(0o700)).expect("chmod");
        assert_eq!(ensure_dir_narrowed(&wide).expect("narrow"), None);
        assert_eq!(mode(&wide), 0o700);
    }

    #[test]
    fn sweep_removes_leftovers_but_not_a_live_writers_file() {
        let d = tempfile::tempdir().expect("tempdir");
        let mine = temp_path(d.path(), "a.licence");
        let dead = d.path().join(".a.licence.4294967295.3.0badf00d.tmp");
        let old_style = d.path().join(".b.memory.12.tmp");
        // The parent (the test runner) is alive and is not this process.
        let parent = std::os::unix::process::parent_id();
        let live = d.path().join(format!(".c.licence.{parent}.0.12345678.tmp"));
        let keep = d.path().join("a.licence");
        for p in [&mine, &dead, &old_style, &live, &keep] {
            fs::write(p, b"x").expect("write");
        }
        assert_eq!(temp_owner(".c.d.licence.77.0.12345678.tmp"), Some(77));
        assert_eq!(temp_owner(".x.tmp"), None);
        sweep_temp_files(d.path());
        assert!(!mine.exists() && !dead.exists() && !old_style.exists());
        assert!(keep.exists());
        assert!(live.exists(), "a live process's temp file stays");
    }
}
