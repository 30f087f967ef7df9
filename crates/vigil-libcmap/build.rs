//! libcmap.so.4: corosync's soname and symbol versions.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=cmap.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcmap.so.4");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/cmap.map");
}
