//! Starting a Python peer (commercetools' emulator, the Standard Webhooks receiver) on a free loopback
//! port: the script prints its base URL as its first line; the child is killed when the handle drops.
//!
//! Like moto, the peers are installed by `scripts/test.sh`; without them the tests skip, unless
//! `POS_REQUIRE_MOTO=1` (the switch the test script sets), where their absence fails.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running peer process.
pub struct Peer {
    child: Child,
    /// The base URL it printed.
    pub url: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `scripts/{script}` and waits for its first line, a URL starting with `url_prefix`. `None` (skip)
/// when python3 or the peer's package (`install` says which) is missing and not required.
pub fn start(script: &str, url_prefix: &str, install: &str) -> Option<Peer> {
    let path = format!("{}/../scripts/{script}", env!("CARGO_MANIFEST_DIR"));
    let required = std::env::var("POS_REQUIRE_MOTO").is_ok_and(|v| v == "1");
    let mut child = match Command::new("python3")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if required => panic!("cannot start {script}: {e}"),
        Err(e) => {
            eprintln!("SKIP: python3 not available ({e})");
            return None;
        }
    };
    let mut line = String::new();
    let read = child
        .stdout
        .take()
        .map(|out| BufReader::new(out).read_line(&mut line));
    if !matches!(read, Some(Ok(n)) if n > 0) || !line.starts_with(url_prefix) {
        let _ = child.kill();
        let _ = child.wait();
        assert!(!required, "{script} did not start; {install}");
        eprintln!("SKIP: {script} cannot run ({install})");
        return None;
    }
    Some(Peer {
        child,
        url: line.trim().to_owned(),
    })
}
