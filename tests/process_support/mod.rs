//! Child processes in tests: killed when the test ends however it ends, their stderr collected
//! for the failure message, and free loopback ports.
#![allow(dead_code)]

use std::io::{BufRead, Read};
use std::process::Child;
use std::sync::{Arc, Mutex};

/// A child process killed (and reaped) when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Collects `child`'s stderr (taken from it) on a thread, so a full pipe never blocks it.
pub fn collect_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let mut stderr = child.stderr.take().expect("stderr piped");
    let out = Arc::new(Mutex::new(String::new()));
    let o = out.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            o.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    out
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `child`'s stdout (taken from it), line by line, read on a thread: the test waits on the
/// receiver with its own deadline instead of blocking on the pipe.
pub fn stdout_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let out = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
