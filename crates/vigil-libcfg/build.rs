//! libcfg.so.1: its soname (Tru64 had no shared libcfg with versions to follow).
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcfg.so.1");
}
