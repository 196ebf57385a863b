//! Shared by the `fuzz_properties` tests of the crates whose code is fuzzed: replays the
//! files of `fuzz/{regressions,corpus}/<target>/` through a property, and the proptest case
//! count. Included with `#[path]` (a test helper, not a crate of its own).

use std::path::Path;

/// Runs `check` on every file of `fuzz/{regressions,corpus}/<target>/`; returns how many.
/// `crate_dir` is the including crate's `CARGO_MANIFEST_DIR` (a sibling of `fuzz/`).
pub(crate) fn replay(crate_dir: &str, target: &str, check: fn(&[u8])) -> usize {
    let fuzz = Path::new(crate_dir).join("../fuzz");
    let mut n = 0;
    for kind in ["regressions", "corpus"] {
        let Ok(dir) = std::fs::read_dir(fuzz.join(kind).join(target)) else { continue };
        let mut files: Vec<_> = dir.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
        files.sort();
        for file in files {
            let input = std::fs::read(&file).unwrap();
            // Name the file if the check panics.
            let result = std::panic::catch_unwind(|| check(&input));
            assert!(result.is_ok(), "{} fails (see the panic above)", file.display());
            n += 1;
        }
    }
    n
}

/// Proptest cases per property: `PROPTEST_CASES` (a long run), else 256.
pub(crate) fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}
