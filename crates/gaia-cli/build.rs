//! Links the `gaia` binary as a position-dependent executable on Linux.
//!
//! Most `gaia` processes are one-shot commands (`gaia claim acquire`, `gaia event emit`) that
//! agents run many times a minute, so starting up is a large share of their cost. A
//! position-independent executable has about 28,000 relative relocations that the dynamic
//! loader applies at every start, writing into (and so copying) every page of the binary that
//! holds a pointer; linked at a fixed address it has about 200. That is 0.2 to 0.4 ms of a
//! 3 ms claim process (`gaia-bench process`, BENCHMARKS.md). The price is that the binary's own
//! code and data load at the same address every time (its libraries and stack stay
//! randomised), as with Go's default builds. `GAIA_BUILD_PIE=1` at build time keeps a
//! position-independent executable.

fn main() {
    println!("cargo:rerun-if-env-changed=GAIA_BUILD_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let pie = std::env::var("GAIA_BUILD_PIE").is_ok_and(|v| !v.is_empty() && v != "0");
    if linux && !pie {
        // The code is still compiled position-independent (the default relocation model);
        // linking it at a fixed address resolves its relocations once, here.
        println!("cargo:rustc-link-arg-bin=gaia=-no-pie");
    }
}
