//! Raw TCP for the tests of the HTTP layer's limits: idle and slow clients, hand-written
//! requests, and the process side (signals, CPU time, descriptor limits).
#![allow(dead_code)]

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends SIGTERM and waits at most `within` for the exit; returns how long it took and the
/// status, or `None` if the process was still running (it is then killed).
pub fn terminate(child: &mut Child, within: Duration) -> Option<(Duration, ExitStatus)> {
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    let start = Instant::now();
    // SAFETY: kill(2) on our own child's pid; it has not been reaped, so the pid is its.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM");
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some((start.elapsed(), status));
        }
        if start.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// CPU time (user + system) a process has used, from /proc/PID/stat.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name, which is in parentheses and may hold spaces: the
    // state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64 / hz as f64
}

/// Raises this process's descriptor limit to its hard limit, for tests holding many sockets.
pub fn raise_nofile() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut r), 0);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
    }
    r.rlim_cur
}

/// `n` TCP connections that send nothing.
pub async fn idle_connections(addr: &str, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let s = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connection {i} to {addr}: {e}"));
        v.push(s);
    }
    v
}

/// Waits until the peer closes `s` (EOF or reset); returns after how long, or `None` if it
/// was still open after `max`. Anything the server sends first is skipped.
pub async fn closed_within(s: &mut TcpStream, max: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = max.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A slowloris client: sends a request head one byte every `every`, never finishing it.
/// Returns how long after connecting the server closed the connection, or `None` if it
/// was still open after `give_up`. Panics if the server answers anything.
pub async fn slowloris(addr: String, every: Duration, give_up: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    let head = b"GET /api/serverinfo HTTP/1.1\r\nHost: test\r\nX-Slow: ";
    let mut buf = [0u8; 1024];
    for i in 0.. {
        let byte = head.get(i).copied().unwrap_or(b'a');
        if s.write_all(&[byte]).await.is_err() {
            return Some(start.elapsed());
        }
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return Some(start.elapsed()),
                Ok(n) => panic!("the server answered a half-sent head: {:?}", String::from_utf8_lossy(&buf[..n])),
            },
            () = tokio::time::sleep(every) => {}
        }
        if start.elapsed() > give_up {
            return None;
        }
    }
    None
}

/// An HTTP/1.1 answer read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// Reads one answer (head, then a Content-Length body) from `s`, within `max`.
pub async fn read_response(s: &mut TcpStream, max: Duration) -> RawResponse {
    tokio::time::timeout(max, read_response_inner(s))
        .await
        .expect("an answer in time")
}

async fn read_response_inner(s: &mut TcpStream) -> RawResponse {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut buf).await.expect("read");
        assert!(
            n > 0,
            "closed before an answer: {:?}",
            String::from_utf8_lossy(&data)
        );
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().expect("length"))
        .unwrap_or(0);
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut buf).await.expect("read body");
        assert!(n > 0, "closed inside the body");
        body.extend_from_slice(&buf[..n]);
    }
    body.truncate(len);
    RawResponse {
        status,
        headers,
        body,
    }
}

/// `Authorization` header value for the default test credentials.
pub fn basic_auth() -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            super::USER,
            super::PASS
        ))
    )
}
