//! The fuzz targets' CI smoke run on stable: every file of `fuzz/corpus/<target>/` (seeds from
//! `events/`) and `fuzz/regressions/<target>/` (inputs a campaign crashed on, fixed since) through the
//! target's body in `pos_shared::fuzzing`, which panics when a property fails. Campaigns:
//! `scripts/fuzz.sh`.

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files: Vec<PathBuf> = ["corpus", "regressions"]
        .iter()
        .filter_map(|kind| std::fs::read_dir(root.join(kind).join(target)).ok())
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, body: fn(&[u8])) {
    let files = inputs(target);
    assert!(
        !files.is_empty(),
        "no corpus for {target}: run ./scripts/fuzz.sh seed"
    );
    for file in files {
        let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        eprintln!("{target}: {}", file.display());
        body(&data);
    }
}

macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name), pos_shared::fuzzing::$name);
            }
        )*
    };
}

targets!(
    vendor_shopify,
    vendor_square,
    vendor_lightspeed,
    vendor_standard,
    signature_shopify,
    signature_square,
    signature_lightspeed,
    signature_standard,
    apigw_event,
    cursor,
    jwt,
    graphql,
);
