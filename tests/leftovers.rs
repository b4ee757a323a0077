//! No test leaves a process behind: a host its test drops is gone, also one under
//! umockdev-run (which does not pass SIGKILL on to the host it runs); and so is one whose test
//! process is killed outright — a CI timeout, Ctrl-C — before it could drop anything. (The
//! folders such a killed process leaves, its own and umockdev's testbed, are removed here.)

mod common;
use common::process::{become_subreaper, children, ends_within, proc_state, running, spawn_tied};
use common::*;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

/// Tells the helper test, run in a child process, which host to hold.
const HELPER: &str = "KEYBRIDGE_TEST_LEFTOVERS_HELPER";

/// A host, under `umockdev-run` (no devices) or on its own.
async fn start(wrapped: bool) -> Server {
    let wrapper: Vec<String> = if wrapped {
        umockdev::require_umockdev();
        vec!["umockdev-run".into(), "--".into()]
    } else {
        Vec::new()
    };
    let opts = Opts {
        demo: false,
        config: "[usb]\nlibusb_hotplug = false\n".into(),
    };
    Server::start_wrapped(opts, &wrapper).await
}

/// The processes behind `s` as (pid, start time): the host, and the wrapper if there is one.
fn processes(s: &Server, wrapped: bool) -> Vec<(u32, u64)> {
    let top = s.pid();
    let mut pids = vec![top];
    if wrapped {
        let deadline = Instant::now() + Duration::from_secs(10);
        let host = loop {
            if let Some(&c) = children(top).first() {
                break c;
            }
            assert!(Instant::now() < deadline, "umockdev-run started no host");
            std::thread::sleep(Duration::from_millis(20));
        };
        pids.push(host);
    }
    pids.into_iter()
        .map(|p| (p, proc_state(p).expect("running").0))
        .collect()
}

/// Kills whatever of `procs` still runs (so a failing test leaves nothing either) and says
/// which did.
fn reap_leftovers(procs: &[(u32, u64)]) -> Vec<u32> {
    let left: Vec<u32> = procs
        .iter()
        .filter(|(p, s)| running(*p, *s))
        .map(|(p, _)| *p)
        .collect();
    for p in &left {
        if let Ok(pid) = libc::pid_t::try_from(*p) {
            // SAFETY: only sends a signal, to a process checked (pid and start time) above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    for &(p, s) in procs {
        ends_within(p, s, Duration::from_secs(5));
    }
    left
}

#[tokio::test]
async fn a_dropped_server_leaves_no_process() {
    for wrapped in [false, true] {
        let s = start(wrapped).await;
        let procs = processes(&s, wrapped);
        drop(s);
        for &(pid, started) in &procs {
            ends_within(pid, started, Duration::from_secs(10));
        }
        let left = reap_leftovers(&procs);
        assert!(
            left.is_empty(),
            "wrapped: {wrapped}; still running after the drop: {left:?}"
        );
    }
}

/// Run in a child process by the test below: holds a host and says which processes it is,
/// until it is killed.
#[tokio::test]
#[ignore = "a helper: a_killed_test_process_leaves_no_process runs it in a child process"]
async fn helper_holds_a_server() {
    let Ok(kind) = std::env::var(HELPER) else {
        return;
    };
    let s = start(kind == "wrapped").await;
    let procs = processes(&s, kind == "wrapped");
    for &(pid, started) in &procs {
        println!("PROCESS {pid} {started}");
    }
    // What a killed test process leaves on disk: its temporary folder, and umockdev's testbed
    // (umockdev-run removes it only when it outlives the host).
    println!("FOLDER {}", s.dir.display());
    if let Some(&(host, _)) = procs.get(1) {
        let environ = std::fs::read(format!("/proc/{host}/environ")).expect("environ");
        for var in environ.split(|b| *b == 0) {
            if let Some(dir) = var.strip_prefix(b"UMOCKDEV_DIR=") {
                println!("FOLDER {}", String::from_utf8_lossy(dir));
            }
        }
    }
    println!("READY");
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[tokio::test]
async fn a_killed_test_process_leaves_no_process() {
    // The helper's host and wrapper become ours when it dies, so they can be reaped here.
    become_subreaper();
    for kind in ["plain", "wrapped"] {
        let mut cmd = std::process::Command::new(std::env::current_exe().expect("test binary"));
        cmd.args([
            "--exact",
            "helper_holds_a_server",
            "--ignored",
            "--nocapture",
        ])
        .env(HELPER, kind)
        .stdout(std::process::Stdio::piped());
        let mut helper = spawn_tied(cmd, libc::SIGKILL).expect("run the helper");
        let mut procs = Vec::new();
        let mut folders = Vec::new();
        let mut lines = BufReader::new(helper.stdout.take().expect("stdout")).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            if line == "READY" {
                break;
            }
            if let Some(rest) = line.strip_prefix("PROCESS ") {
                let mut f = rest.split(' ').map(|n| n.parse::<u64>().expect("number"));
                let (pid, started) = (f.next().expect("pid"), f.next().expect("start"));
                procs.push((u32::try_from(pid).expect("pid"), started));
            }
            if let Some(dir) = line.strip_prefix("FOLDER ") {
                folders.push(std::path::PathBuf::from(dir));
            }
        }
        // SIGKILL: the helper's drops never run, as under a CI timeout.
        let _ = helper.kill();
        let _ = helper.wait();
        assert_eq!(
            procs.len(),
            if kind == "wrapped" { 2 } else { 1 },
            "{kind}: the helper did not say which processes it held"
        );
        for &(pid, started) in &procs {
            ends_within(pid, started, Duration::from_secs(15));
        }
        let left = reap_leftovers(&procs);
        // The files are this test's to remove: no drop ran to remove them.
        for dir in &folders {
            assert!(dir.starts_with(std::env::temp_dir()), "{}", dir.display());
            let _ = std::fs::remove_dir_all(dir);
        }
        assert_eq!(
            folders.len(),
            if kind == "wrapped" { 2 } else { 1 },
            "{kind}: the helper did not say which folders it used: {folders:?}"
        );
        assert!(
            left.is_empty(),
            "{kind}: still running after their test process was killed: {left:?}"
        );
    }
}
