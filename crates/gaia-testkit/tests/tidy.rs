//! Repository hygiene: every Rust module starts with a `//!` header saying what it holds, and
//! no source file leaves a stub (`todo!`, `unimplemented!`) or a skipped test behind.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_has_a_header_and_no_stubs() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    rust_files(&crates, &mut files);
    assert!(files.len() > 10, "found the sources");
    let mut problems = Vec::new();
    // Built from parts so that this file does not match itself.
    let stubs = [
        concat!("todo", "!("),
        concat!("unimplemented", "!("),
        concat!("#[", "ignore"),
    ];
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read source");
        if !text.trim_start().starts_with("//!") {
            problems.push(format!("{}: no //! header", f.display()));
        }
        for stub in stubs {
            if text.contains(stub) {
                problems.push(format!("{}: contains {stub}", f.display()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
