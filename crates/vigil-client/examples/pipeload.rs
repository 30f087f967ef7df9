use vigil_client::proto::{CmapValue, Request};
fn main() {
    let sock = std::env::args().nth(1).unwrap();
    let n: usize = std::env::args().nth(2).unwrap().parse().unwrap();
    let mut c = vigil_client::Client::connect(std::path::Path::new(&sock)).unwrap();
    let t = std::time::Instant::now();
    let got = c
        .pipeline(
            (0..n).map(|i| Request::CmapSet {
                key: "pl.k".into(),
                value: CmapValue::U32(i as u32),
                persist: false,
            }),
            64,
        )
        .unwrap();
    let e = t.elapsed();
    assert!(got.iter().all(|r| r.is_ok()));
    println!("{} ops/s", n as f64 / e.as_secs_f64());
}
