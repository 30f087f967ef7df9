//! libsam.so.4: corosync's soname and symbol versions.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=sam.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libsam.so.4");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/sam.map");
}
