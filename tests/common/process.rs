//! Child processes that never outlive the test process, however it ends.
//!
//! Dropping a `Server` kills its process group (see `Server::kill`), but a test binary that is
//! itself killed — a CI timeout's SIGKILL, or Ctrl-C, which no longer reaches a host started in
//! its own process group — runs no drop. So every long-running child is also started with
//! `PR_SET_PDEATHSIG`: the kernel signals it when its parent goes.
//!
//! The "parent" of that rule is the *thread* that forked, not the process: a child spawned
//! from a test's thread or a runtime's worker would be signalled when that thread ends, while
//! the test still holds its `Server`. So every such child is spawned from one thread that lives
//! as long as the test process.
#![allow(dead_code)]

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

type Job = (Command, libc::c_int, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` from the long-lived spawner thread; the child gets `signal` when the test
/// process ends. A wrapper that forwards signals to the program it runs (umockdev-run
/// forwards SIGTERM, not SIGKILL) should be given one it forwards.
pub fn spawn_tied(cmd: Command, signal: libc::c_int) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("test-spawner".into())
            .spawn(move || {
                for (mut cmd, signal, reply) in rx {
                    let _ = reply.send(spawn_here(&mut cmd, signal));
                }
            })
            .expect("spawner thread");
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    // Poisoning cannot leave the sender half-updated: keep using it.
    let sent = tx
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((cmd, signal, reply));
    sent.map_err(|_| io::Error::other("the spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| io::Error::other("the spawner thread is gone"))?
}

fn spawn_here(cmd: &mut Command, signal: libc::c_int) -> io::Result<Child> {
    let parent = std::process::id();
    // SAFETY: between fork and exec the closure only makes two system calls (prctl, getppid)
    // and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent died before the prctl: nobody will signal us, so do not start.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(io::Error::other("the test process is gone"));
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Process `pid` as `/proc` shows it: its start time (clock ticks since boot), and whether it
/// still runs (a zombie does not). `None` once it is gone.
pub fn proc_state(pid: u32) -> Option<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name (in parentheses, may hold spaces): state is field 3, start
    // time field 22.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let start = f.get(19)?.parse().ok()?;
    Some((start, f.first().is_some_and(|s| *s != "Z" && *s != "X")))
}

/// Whether the process that had start time `start` as `pid` is still running.
pub fn running(pid: u32, start: u64) -> bool {
    proc_state(pid).is_some_and(|(s, alive)| s == start && alive)
}

/// Waits up to `within` for the process (`pid`, started at `start`) to end; whether it did.
/// A zombie has ended; if it is this process's own (an orphan handed to it as a subreaper,
/// see [`become_subreaper`]) it is also reaped, so it does not stay in the process table.
pub fn ends_within(pid: u32, start: u64, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        match proc_state(pid) {
            None => return true,
            Some((s, _)) if s != start => return true,
            Some((_, false)) => {
                if let Ok(p) = libc::pid_t::try_from(pid) {
                    // SAFETY: reaps only `pid`, checked above to be the exited process we
                    // follow; for a process that is not our child this fails harmlessly.
                    unsafe { libc::waitpid(p, std::ptr::null_mut(), libc::WNOHANG) };
                }
                return true;
            }
            Some((_, true)) if Instant::now() > deadline => return false,
            Some(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Makes this test process the reaper of its orphaned descendants, instead of init (which
/// in some sandboxes reaps nothing), so [`ends_within`] can reap them.
pub fn become_subreaper() {
    // SAFETY: sets a flag on this process; no memory is passed.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong) };
    assert_eq!(r, 0, "PR_SET_CHILD_SUBREAPER");
}

/// The children of `pid` (from `/proc`).
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}
