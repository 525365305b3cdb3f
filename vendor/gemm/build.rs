//! Finds OpenBLAS for the f32 path in `src/openblas.rs` (slayer's addition): links it
//! and sets `cfg(gemm_openblas)` when `libopenblas` is in `OPENBLAS_LIB_DIR` or a
//! standard library directory; otherwise warns and leaves gemm's own kernels in charge.

use std::path::Path;

const DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
    "/opt/homebrew/opt/openblas/lib",
    "/usr/local/opt/openblas/lib",
];

const NAMES: &[&str] = &["libopenblas.so", "libopenblas.dylib"];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(gemm_openblas)");
    println!("cargo:rerun-if-env-changed=SLAYER_NO_BLAS");
    println!("cargo:rerun-if-env-changed=OPENBLAS_LIB_DIR");
    if std::env::var_os("SLAYER_NO_BLAS").is_some_and(|v| !v.is_empty() && v != "0") {
        return;
    }
    let custom = std::env::var("OPENBLAS_LIB_DIR").ok();
    let found = custom
        .iter()
        .map(String::as_str)
        .chain(DIRS.iter().copied())
        .find(|dir| NAMES.iter().any(|n| Path::new(dir).join(n).exists()));
    match found {
        Some(dir) => {
            println!("cargo:rustc-link-search=native={dir}");
            println!("cargo:rustc-link-lib=openblas");
            println!("cargo:rustc-cfg=gemm_openblas");
        }
        None => println!(
            "cargo:warning=OpenBLAS not found (install libopenblas-dev, or set OPENBLAS_LIB_DIR): \
             f32 matrix products use gemm's own kernels, about 2x slower on AVX-512 CPUs"
        ),
    }
}
