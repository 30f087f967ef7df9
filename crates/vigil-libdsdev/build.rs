//! libdsdev.so.1: the soname C programs record. Solaris's library has no symbol versions, and neither has
//! this one; rustc's own export list already keeps everything but the `scds_*` functions local.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libdsdev.so.1");
}
