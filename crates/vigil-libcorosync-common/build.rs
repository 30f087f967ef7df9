//! libcorosync_common.so.4: corosync's soname; its three functions unversioned, as Debian's library has them.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=corosync_common.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcorosync_common.so.4");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/corosync_common.map");
}
