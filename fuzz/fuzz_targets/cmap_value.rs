//! CMAP from the daemon's side: typed values as text (`vigil cmap set KEY TYPE VALUE`, the config's
//! `"TYPE:VALUE"`), key names and the key segments made of tag names, then a run of client operations on
//! a map. Checks the promises: a value shown parses back to the same value, a key segment is made of key
//! characters and distinct names give distinct segments, and the map never panics.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use vigil_core::cmap::{key_segment, validate_key, CmapMap, CmapType, CmapValue, Limits, TrackId};

fuzz_target!(|data: &[u8]| {
    vigil_fuzz::catch_segv();
    let _ = run(&mut Unstructured::new(data));
});

fn run(u: &mut Unstructured) -> Result<()> {
    // Codes 0 and 13 are not types: from_code must say so.
    let code = u.int_in_range(0..=13u32)?;
    let text: &str = u.arbitrary()?;
    if let Some(ty) = CmapType::from_code(code) {
        assert_eq!(ty.code(), code);
        if let Ok(v) = CmapValue::parse(ty, text) {
            assert_eq!(v.ty(), ty);
            let shown = v.display();
            let back = CmapValue::parse(ty, &shown).unwrap_or_else(|e| panic!("{shown:?} does not parse back: {e}"));
            assert!(
                back.same_as(&v),
                "{text:?} -> {v:?} shows as {shown:?}, which parses as {back:?}"
            );
        }
    }
    if let Some(ty) = CmapType::parse_name(text) {
        assert_eq!(CmapType::from_code(ty.code()), Some(ty));
    }
    if validate_key(text).is_ok() {
        assert!((3..=255).contains(&text.len()));
    }
    let other: &str = u.arbitrary()?;
    let (a, b) = (key_segment(text), key_segment(other));
    if text != other {
        assert_ne!(a, b, "{text:?} and {other:?} share a key segment");
    }
    // A segment within a key's length is a valid key once it has a valid start.
    let key = format!("app{a}");
    if key.len() <= 255 {
        assert!(validate_key(&key).is_ok(), "{key:?} is not a valid key");
    }

    let mut map = CmapMap::new(vec!["runtime.".into()]);
    let limits = Limits { max_value_bytes: 64 };
    let keys = ["app.a", "app.b", "runtime.x", text, other, "ab"];
    for _ in 0..u.int_in_range(0..=32u32)? {
        let key = *u.choose(&keys)?;
        let ty = CmapType::from_code(u.int_in_range(1..=12u32)?).expect("1..=12 are types");
        let value = u.arbitrary::<&str>().map(|t| CmapValue::parse(ty, t));
        match u.int_in_range(0..=9u8)? {
            0 | 1 => {
                if let Ok(Ok(v)) = value {
                    let _ = map.set(key, v, &limits);
                }
            }
            2 => {
                let _ = map.delete(key);
            }
            3 => {
                let _ = map.inc(key);
            }
            4 => {
                let _ = map.dec(key);
            }
            5 => {
                let _ = map.get_typed(key, ty);
            }
            6 => {
                let expected = map.get(key).ok().cloned();
                if let Ok(Ok(v)) = value {
                    let _ = map.compare_and_set(key, expected.as_ref(), v, &limits);
                }
            }
            7 => {
                let _ = map.track_add(u.int_in_range(0..=2u64)?, key, u.arbitrary()?, 0);
            }
            8 => {
                let _ = map.track_delete(u.int_in_range(0..=2u64)?, TrackId(u.int_in_range(0..=4u64)?));
            }
            _ => {
                let _ = map.drop_owner(u.int_in_range(0..=2u64)?);
            }
        }
        for (k, v) in map.iter_prefix(key) {
            assert!(k.starts_with(key));
            assert!(v.byte_len() <= limits.max_value_bytes || k.starts_with("runtime."));
        }
    }
    Ok(())
}
