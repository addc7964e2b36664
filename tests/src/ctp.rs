//! commercetools' own API emulator (`commercetools.testing`, shipped in the commercetools Python SDK)
//! served by `scripts/ctp_emulator.py` on a free loopback port per test, killed when the handle drops.
//!
//! Like moto, it is installed by `scripts/test.sh`; without it the tests skip, unless
//! `POS_REQUIRE_MOTO=1` (the same switch: the test script installs both), where its absence fails.
//!
//! Known differences from the real API, checked (see ARCHITECTURE.md):
//! - it matches requests by host name: address it as `localhost`, not `127.0.0.1`;
//! - it accepts a second order with an existing `orderNumber` (the real API answers 400
//!   `DuplicateField`), so nothing may rely on the server to deduplicate;
//! - it serves `?where=orderNumber="…"` but not `/orders/order-number=…`;
//! - it applies inventory `version` checks (409 `ConcurrentModification`);
//! - an order import resolves its line items to existing products (by product id or SKU): create the
//!   products first (the real API accepts line items of unknown products).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running emulator.
pub struct Emulator {
    child: Child,
    /// `http://localhost:PORT` (API and token endpoint).
    pub url: String,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Emulator {
    /// Starts the emulator, or returns `None` (skip) when its Python package is missing and not
    /// required.
    pub fn start() -> Option<Emulator> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/ctp_emulator.py");
        let required = std::env::var("POS_REQUIRE_MOTO").is_ok_and(|v| v == "1");
        let mut child = match Command::new("python3")
            .arg(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) if required => panic!("cannot start the commercetools emulator: {e}"),
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
        if !matches!(read, Some(Ok(n)) if n > 0) || !line.starts_with("http://localhost:") {
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                !required,
                "the commercetools emulator did not start; pip install commercetools Werkzeug"
            );
            eprintln!(
                "SKIP: the commercetools emulator is not installed (pip install commercetools)"
            );
            return None;
        }
        Some(Emulator {
            child,
            url: line.trim().to_owned(),
        })
    }
}
