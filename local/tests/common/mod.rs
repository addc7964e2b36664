//! What the tests that run the real `pos-local` binary share: start `serve` on a free loopback port
//! with a data directory and extra flags, read the address it prints, kill it when the handle drops.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running `pos-local serve`.
pub struct Server {
    /// The process (a test may kill it itself: `kill -9`).
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `pos-local serve` on `data_dir` with `extra` flags; logs at `error` only.
pub fn spawn(data_dir: &std::path::Path, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pos-local"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("pos-local starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("banner");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    Server { child, url }
}
