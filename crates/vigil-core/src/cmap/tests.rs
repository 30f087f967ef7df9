use super::*;

use CmapValue as V;

const L: Limits = Limits {
    max_value_bytes: 1 << 20,
};

fn s(text: &str) -> CmapValue {
    V::Str(text.to_string())
}

fn map() -> CmapMap {
    CmapMap::new(vec!["runtime.".to_string(), "vigil.ro".to_string()])
}

fn note(track: u64, owner: u64, event: u32, key: &str, new: Option<CmapValue>, old: Option<CmapValue>) -> Notification {
    Notification {
        track: TrackId(track),
        owner,
        context: track * 100,
        event,
        key: key.to_string(),
        new,
        old,
    }
}

/// Adds a track whose context is its id times 100, so `note` can predict it.
fn track(m: &mut CmapMap, owner: u64, key: &str, flags: u32) -> TrackId {
    let next = m.last_track + 1;
    let id = m.track_add(owner, key, flags, next * 100).unwrap();
    assert_eq!(id, TrackId(next));
    id
}

#[test]
fn type_codes_and_names_are_corosyncs() {
    let table: [(CmapType, u32, &str, &str); 12] = [
        (CmapType::I8, 1, "i8", "int8"),
        (CmapType::U8, 2, "u8", "uint8"),
        (CmapType::I16, 3, "i16", "int16"),
        (CmapType::U16, 4, "u16", "uint16"),
        (CmapType::I32, 5, "i32", "int32"),
        (CmapType::U32, 6, "u32", "uint32"),
        (CmapType::I64, 7, "i64", "int64"),
        (CmapType::U64, 8, "u64", "uint64"),
        (CmapType::Float, 9, "flt", "float"),
        (CmapType::Double, 10, "dbl", "double"),
        (CmapType::Str, 11, "str", "string"),
        (CmapType::Binary, 12, "bin", "binary"),
    ];
    for (ty, code, short, long) in table {
        assert_eq!(ty.code(), code, "{ty:?}");
        assert_eq!(CmapType::from_code(code), Some(ty));
        assert_eq!(ty.short_name(), short);
        assert_eq!(ty.to_string(), short);
        assert_eq!(CmapType::parse_name(short), Some(ty));
        assert_eq!(CmapType::parse_name(long), Some(ty));
        assert_eq!(CmapType::parse_name(&short.to_uppercase()), Some(ty));
        assert_eq!(CmapType::parse_name(&long.to_uppercase()), Some(ty));
    }
    for code in [0, 13, u32::MAX] {
        assert_eq!(CmapType::from_code(code), None, "{code}");
    }
    for name in ["", "int", "i128", "f32", "bool", "strings", " u8"] {
        assert_eq!(CmapType::parse_name(name), None, "{name:?}");
    }
    assert_eq!((TRACK_ADD, TRACK_DELETE, TRACK_MODIFY, TRACK_PREFIX), (4, 1, 2, 8));
    assert_eq!((KEYNAME_MINLEN, KEYNAME_MAXLEN), (3, 255));
}

#[test]
fn every_type_round_trips_at_its_boundaries() {
    let table: Vec<(CmapType, &str, CmapValue, usize)> = vec![
        (CmapType::I8, "-128", V::I8(i8::MIN), 1),
        (CmapType::I8, "127", V::I8(i8::MAX), 1),
        (CmapType::U8, "0", V::U8(0), 1),
        (CmapType::U8, "255", V::U8(u8::MAX), 1),
        (CmapType::I16, "-32768", V::I16(i16::MIN), 2),
        (CmapType::I16, "32767", V::I16(i16::MAX), 2),
        (CmapType::U16, "65535", V::U16(u16::MAX), 2),
        (CmapType::I32, "-2147483648", V::I32(i32::MIN), 4),
        (CmapType::I32, "2147483647", V::I32(i32::MAX), 4),
        (CmapType::U32, "4294967295", V::U32(u32::MAX), 4),
        (CmapType::I64, "-9223372036854775808", V::I64(i64::MIN), 8),
        (CmapType::I64, "9223372036854775807", V::I64(i64::MAX), 8),
        (CmapType::U64, "0", V::U64(0), 8),
        (CmapType::U64, "18446744073709551615", V::U64(u64::MAX), 8),
        (CmapType::Float, "0.1", V::Float(0.1), 4),
        (CmapType::Float, "-2.5", V::Float(-2.5), 4),
        (CmapType::Float, "NaN", V::Float(f32::NAN), 4),
        (CmapType::Float, "inf", V::Float(f32::INFINITY), 4),
        (CmapType::Float, "-inf", V::Float(f32::NEG_INFINITY), 4),
        (
            CmapType::Float,
            "340282350000000000000000000000000000000",
            V::Float(f32::MAX),
            4,
        ),
        (CmapType::Double, "0.1", V::Double(0.1), 8),
        (CmapType::Double, "NaN", V::Double(f64::NAN), 8),
        (CmapType::Double, "inf", V::Double(f64::INFINITY), 8),
        (CmapType::Double, "-inf", V::Double(f64::NEG_INFINITY), 8),
        (CmapType::Double, "0.000000000000000000001", V::Double(1e-21), 8),
        (CmapType::Str, "", s(""), 1),
        (CmapType::Str, "hello world", s("hello world"), 12),
        (CmapType::Str, "é", s("é"), 3),
        (CmapType::Binary, "", V::Binary(vec![]), 0),
        (CmapType::Binary, "00ff0010", V::Binary(vec![0, 0xff, 0, 0x10]), 4),
    ];
    for (ty, text, value, len) in table {
        let parsed = CmapValue::parse(ty, text).unwrap_or_else(|e| panic!("{ty} {text:?}: {e}"));
        assert_eq!(parsed, value, "{ty} {text:?}");
        assert_eq!(parsed.ty(), ty);
        assert_eq!(value.display(), text, "{ty} display");
        assert_eq!(value.byte_len(), len, "{ty} {text:?} byte_len");
        assert_eq!(
            CmapValue::parse(ty, &value.display()).unwrap(),
            value,
            "{ty} {text:?} again"
        );
    }
}

#[test]
fn parse_accepts_other_spellings() {
    let table: Vec<(CmapType, &str, CmapValue)> = vec![
        (CmapType::U8, "+7", V::U8(7)),
        (CmapType::U8, "-0", V::U8(0)),
        (CmapType::I8, "007", V::I8(7)),
        (CmapType::Float, "nan", V::Float(f32::NAN)),
        (CmapType::Float, "-INF", V::Float(f32::NEG_INFINITY)),
        (CmapType::Double, "infinity", V::Double(f64::INFINITY)),
        (CmapType::Double, "+Inf", V::Double(f64::INFINITY)),
        (CmapType::Double, "1e300", V::Double(1e300)),
        (CmapType::Binary, "DEADbeef", V::Binary(vec![0xde, 0xad, 0xbe, 0xef])),
    ];
    for (ty, text, value) in table {
        assert_eq!(CmapValue::parse(ty, text), Ok(value), "{ty} {text:?}");
    }
    assert_eq!(V::Binary(vec![0xAB]).display(), "ab", "lowercase hex");
}

#[test]
fn parse_errors_say_what_is_wrong() {
    let table: [(CmapType, &str, &str); 17] = [
        (CmapType::U8, "256", "256 is out of range for u8 (0..=255)"),
        (CmapType::U8, "300", "300 is out of range for u8 (0..=255)"),
        (CmapType::U8, "-1", "-1 is out of range for u8 (0..=255)"),
        (CmapType::I8, "128", "128 is out of range for i8 (-128..=127)"),
        (CmapType::I8, "-129", "-129 is out of range for i8 (-128..=127)"),
        (
            CmapType::U64,
            "18446744073709551616",
            "18446744073709551616 is out of range for u64 (0..=18446744073709551615)",
        ),
        (
            CmapType::I64,
            "99999999999999999999999999999999999999999",
            "99999999999999999999999999999999999999999 is out of range for i64",
        ),
        (CmapType::I32, "abc", "\"abc\" is not a decimal integer (type i32)"),
        (CmapType::I32, "", "\"\" is not a decimal integer (type i32)"),
        (CmapType::I32, "1.5", "\"1.5\" is not a decimal integer (type i32)"),
        (CmapType::U16, " 5", "\" 5\" is not a decimal integer (type u16)"),
        (CmapType::U16, "0x10", "\"0x10\" is not a decimal integer (type u16)"),
        (CmapType::Float, "one", "\"one\" is not a number (type flt)"),
        (CmapType::Float, "1e39", "1e39 is out of range for flt"),
        (CmapType::Double, "", "\"\" is not a number (type dbl)"),
        (CmapType::Binary, "abc", "\"abc\" has an odd number of hex digits (3)"),
        (CmapType::Binary, "0g", "\"0g\": 'g' is not a hex digit"),
    ];
    for (ty, text, want) in table {
        match CmapValue::parse(ty, text) {
            Err(CmapError::InvalidParam(why)) => assert!(why.contains(want), "{ty} {text:?}: {why:?} lacks {want:?}"),
            other => panic!("{ty} {text:?}: {other:?}"),
        }
    }
    assert!(matches!(
        CmapValue::parse(CmapType::Binary, "éé"),
        Err(CmapError::InvalidParam(_))
    ));
    assert!(matches!(CmapValue::parse(CmapType::Str, "a\0b"), Err(CmapError::InvalidParam(w)) if w.contains("NUL")));
}

#[test]
fn equality_is_by_type_and_bits() {
    let table: [(CmapValue, CmapValue, bool); 9] = [
        (V::U8(1), V::U8(1), true),
        (V::U8(1), V::I8(1), false),
        (V::U32(1), V::U64(1), false),
        (V::Float(f32::NAN), V::Float(f32::NAN), true),
        (V::Double(f64::NAN), V::Double(f64::NAN), true),
        (V::Double(0.0), V::Double(-0.0), false),
        (V::Float(1.0), V::Double(1.0), false),
        (s("ab"), V::Binary(b"ab".to_vec()), false),
        (V::Binary(vec![]), V::Binary(vec![]), true),
    ];
    for (a, b, same) in table {
        assert_eq!(a.same_as(&b), same, "{a:?} {b:?}");
        assert_eq!(a == b, same, "{a:?} {b:?}");
    }
}

#[test]
fn key_rules() {
    let long = "a".repeat(255);
    let too_long = "a".repeat(256);
    let table: [(&str, bool); 14] = [
        ("ab", false),
        ("", false),
        ("abc", true),
        (&long, true),
        (&too_long, false),
        ("totem.nodeid", true),
        ("a-b_c.d/e:f", true),
        ("ABC.xyz.019", true),
        ("a b", false),
        ("a*b", false),
        ("aé.b", false),
        ("a\0b", false),
        ("a\nb", false),
        ("a,b", false),
    ];
    for (key, ok) in table {
        let r = validate_key(key);
        assert_eq!(r.is_ok(), ok, "{key:?}: {r:?}");
        if let Err(e) = r {
            assert!(matches!(&e, CmapError::InvalidKey { key: k, .. } if k == key), "{e:?}");
        }
    }
    let e = validate_key("a*b").unwrap_err().to_string();
    assert!(e.contains("\"a*b\"") && e.contains("'*'"), "{e}");
    let e = validate_key("ab").unwrap_err().to_string();
    assert!(e.contains("2 bytes"), "{e}");
}

#[test]
fn get_and_typed_get() {
    let mut m = map();
    assert_eq!(m.get("nope"), Err(CmapError::NotExist("key \"nope\"".into())));
    m.set("a.b", V::U8(5), &L).unwrap();
    assert_eq!(m.get("a.b"), Ok(&V::U8(5)));
    assert_eq!(m.get_typed("a.b", CmapType::U8), Ok(&V::U8(5)));
    let e = m.get_typed("a.b", CmapType::U32).unwrap_err();
    assert_eq!(
        e,
        CmapError::TypeMismatch {
            key: "a.b".into(),
            stored: CmapType::U8,
            requested: CmapType::U32
        }
    );
    assert_eq!(e.to_string(), "key \"a.b\" holds a u8 value, not a u32 one");
    assert!(matches!(m.get_typed("x.y", CmapType::U8), Err(CmapError::NotExist(_))));
}

#[test]
fn inc_and_dec_wrap_at_every_width() {
    let table: Vec<(CmapValue, CmapValue, CmapValue)> = vec![
        // start, after inc, after dec
        (V::U8(255), V::U8(0), V::U8(254)),
        (V::U8(0), V::U8(1), V::U8(255)),
        (V::I8(127), V::I8(-128), V::I8(126)),
        (V::I8(-128), V::I8(-127), V::I8(127)),
        (V::U16(u16::MAX), V::U16(0), V::U16(u16::MAX - 1)),
        (V::I16(i16::MAX), V::I16(i16::MIN), V::I16(i16::MAX - 1)),
        (V::I16(i16::MIN), V::I16(i16::MIN + 1), V::I16(i16::MAX)),
        (V::U32(u32::MAX), V::U32(0), V::U32(u32::MAX - 1)),
        (V::U32(0), V::U32(1), V::U32(u32::MAX)),
        (V::I32(i32::MAX), V::I32(i32::MIN), V::I32(i32::MAX - 1)),
        (V::I32(-1), V::I32(0), V::I32(-2)),
        (V::U64(u64::MAX), V::U64(0), V::U64(u64::MAX - 1)),
        (V::U64(0), V::U64(1), V::U64(u64::MAX)),
        (V::I64(i64::MAX), V::I64(i64::MIN), V::I64(i64::MAX - 1)),
        (V::I64(i64::MIN), V::I64(i64::MIN + 1), V::I64(i64::MAX)),
    ];
    for (start, up, down) in table {
        let mut m = map();
        m.set("n.k", start.clone(), &L).unwrap();
        let t = track(&mut m, 1, "n.k", TRACK_MODIFY);
        let n = m.inc("n.k").unwrap();
        assert_eq!(m.get("n.k"), Ok(&up), "inc {start:?}");
        assert_eq!(
            n,
            vec![note(t.0, 1, TRACK_MODIFY, "n.k", Some(up.clone()), Some(start.clone()))]
        );
        m.set("n.k", start.clone(), &L).unwrap();
        m.dec("n.k").unwrap();
        assert_eq!(m.get("n.k"), Ok(&down), "dec {start:?}");
    }
}

#[test]
fn inc_refuses_what_is_not_an_integer() {
    let mut m = map();
    for (key, v) in [
        ("f.f", V::Float(1.0)),
        ("f.d", V::Double(1.0)),
        ("f.s", s("1")),
        ("f.b", V::Binary(vec![1])),
    ] {
        m.set(key, v.clone(), &L).unwrap();
        for r in [m.inc(key), m.dec(key)] {
            match r {
                Err(CmapError::InvalidParam(why)) => {
                    assert!(why.contains(key) && why.contains("only integers"), "{why}")
                }
                other => panic!("{key}: {other:?}"),
            }
        }
        assert_eq!(m.get(key), Ok(&v), "unchanged");
    }
    assert!(matches!(m.inc("f.none"), Err(CmapError::NotExist(_))));
    m.set_internal("runtime.n", V::U8(1));
    assert!(matches!(m.inc("runtime.n"), Err(CmapError::Access(_))));
    assert!(matches!(m.dec("runtime.n"), Err(CmapError::Access(_))));
    assert_eq!(m.get("runtime.n"), Ok(&V::U8(1)));
}

#[test]
fn each_tracking_flag_alone_and_combined() {
    // flags, whether it sees the add, the modify, the delete
    let table: [(u32, [bool; 3]); 7] = [
        (TRACK_ADD, [true, false, false]),
        (TRACK_MODIFY, [false, true, false]),
        (TRACK_DELETE, [false, false, true]),
        (TRACK_ADD | TRACK_MODIFY, [true, true, false]),
        (TRACK_ADD | TRACK_DELETE, [true, false, true]),
        (TRACK_MODIFY | TRACK_DELETE, [false, true, true]),
        (TRACK_ADD | TRACK_MODIFY | TRACK_DELETE, [true, true, true]),
    ];
    for (flags, [add, modify, delete]) in table {
        let mut m = map();
        let t = track(&mut m, 7, "k.e.y", flags).0;
        // A track on a neighbouring key sees none of it.
        track(&mut m, 7, "k.e.z", flags);
        let expect = |on: bool, n: Notification| if on { vec![n] } else { vec![] };
        assert_eq!(
            m.set("k.e.y", V::U32(1), &L).unwrap(),
            expect(add, note(t, 7, TRACK_ADD, "k.e.y", Some(V::U32(1)), None)),
            "add, flags {flags}"
        );
        assert_eq!(
            m.set("k.e.y", V::U32(2), &L).unwrap(),
            expect(
                modify,
                note(t, 7, TRACK_MODIFY, "k.e.y", Some(V::U32(2)), Some(V::U32(1)))
            ),
            "modify, flags {flags}"
        );
        assert_eq!(
            m.delete("k.e.y").unwrap(),
            expect(delete, note(t, 7, TRACK_DELETE, "k.e.y", None, Some(V::U32(2)))),
            "delete, flags {flags}"
        );
        assert_eq!(
            m.set("k.e.y.z", V::U32(1), &L).unwrap(),
            vec![],
            "an exact track ignores longer keys"
        );
    }
}

#[test]
fn prefix_tracks_and_creation_order() {
    let mut m = map();
    let all = track(&mut m, 1, "", TRACK_PREFIX | TRACK_EVENTS).0;
    let totem = track(&mut m, 2, "totem.", TRACK_PREFIX | TRACK_ADD).0;
    let exact = track(&mut m, 2, "totem.nodeid", TRACK_ADD | TRACK_MODIFY).0;
    let again = track(&mut m, 1, "totem.", TRACK_PREFIX | TRACK_ADD).0;
    let n = m.set("totem.nodeid", V::U32(3), &L).unwrap();
    let v = Some(V::U32(3));
    assert_eq!(
        n,
        vec![
            note(all, 1, TRACK_ADD, "totem.nodeid", v.clone(), None),
            note(totem, 2, TRACK_ADD, "totem.nodeid", v.clone(), None),
            note(exact, 2, TRACK_ADD, "totem.nodeid", v.clone(), None),
            note(again, 1, TRACK_ADD, "totem.nodeid", v, None),
        ]
    );
    let n = m.set("totemx", s("x"), &L).unwrap();
    assert_eq!(
        n,
        vec![note(all, 1, TRACK_ADD, "totemx", Some(s("x")), None)],
        "prefix is byte-wise"
    );
    let n = m.set("totem.nodeid", V::U32(4), &L).unwrap();
    assert_eq!(
        n.iter().map(|n| n.track.0).collect::<Vec<_>>(),
        vec![all, exact],
        "ADD-only tracks skip a modify"
    );
}

#[test]
fn unchanged_set_notifies_nobody_and_type_change_is_a_modify() {
    let mut m = map();
    let t = track(&mut m, 1, "a.", TRACK_PREFIX | TRACK_EVENTS).0;
    assert_eq!(m.set("a.x", V::Double(f64::NAN), &L).unwrap().len(), 1);
    assert_eq!(
        m.set("a.x", V::Double(f64::NAN), &L).unwrap(),
        vec![],
        "NaN is the same NaN"
    );
    assert_eq!(m.set_internal("a.x", V::Double(f64::NAN)), vec![]);
    assert_eq!(
        m.set("a.x", V::U8(1), &L).unwrap(),
        vec![note(
            t,
            1,
            TRACK_MODIFY,
            "a.x",
            Some(V::U8(1)),
            Some(V::Double(f64::NAN))
        )]
    );
    assert_eq!(m.get_typed("a.x", CmapType::U8), Ok(&V::U8(1)));
    assert_eq!(
        m.set("a.x", V::I8(1), &L).unwrap(),
        vec![note(t, 1, TRACK_MODIFY, "a.x", Some(V::I8(1)), Some(V::U8(1)))],
        "same number, other type"
    );
    assert_eq!(m.len(), 1);
}

#[test]
fn set_checks_key_size_and_access() {
    let mut m = map();
    let small = Limits { max_value_bytes: 4 };
    assert!(matches!(m.set("ab", V::U8(1), &L), Err(CmapError::InvalidKey { .. })));
    assert_eq!(
        m.set("a.s", s("abcd"), &small),
        Err(CmapError::TooLarge {
            key: "a.s".into(),
            len: 5,
            max: 4
        }),
        "the NUL counts"
    );
    assert!(m.set("a.s", s("abc"), &small).is_ok());
    assert!(m.set("a.b", V::Binary(vec![0; 4]), &small).is_ok());
    assert!(m.set("a.d", V::Double(1.0), &small).is_err());
    assert!(m
        .set("a.big", V::Binary(vec![0; (1 << 20) + 1]), &Limits::default())
        .is_err());
    assert!(m.set("a.big", V::Binary(vec![0; 1 << 20]), &Limits::default()).is_ok());
    assert_eq!(Limits::default(), L);
    assert_eq!(m.len(), 3, "a.s, a.b and a.big");
}

#[test]
fn readonly_prefixes_refuse_users_not_vigild() {
    let mut m = map();
    let t = track(&mut m, 1, "runtime.", TRACK_PREFIX | TRACK_EVENTS).0;
    assert!(m.is_readonly("runtime.x") && m.is_readonly("vigil.ro.x") && m.is_readonly("vigil.ross"));
    assert!(!m.is_readonly("runtim.x") && !m.is_readonly("vigil.r"));
    let e = m.set("runtime.x", V::U8(1), &L).unwrap_err();
    assert_eq!(
        e,
        CmapError::Access("key \"runtime.x\" is read-only (under \"runtime.\")".into())
    );
    assert_eq!(m.get("runtime.x").ok(), None);
    assert_eq!(
        m.set_internal("runtime.x", V::U8(1)),
        vec![note(t, 1, TRACK_ADD, "runtime.x", Some(V::U8(1)), None)]
    );
    assert!(
        matches!(m.set("runtime.x", V::U8(1), &L), Err(CmapError::Access(_))),
        "even unchanged"
    );
    assert!(matches!(m.delete("runtime.x"), Err(CmapError::Access(_))));
    assert!(matches!(m.delete("runtime.none"), Err(CmapError::Access(_))));
    assert!(matches!(
        m.compare_and_set("runtime.x", Some(&V::U8(1)), V::U8(2), &L),
        Err(CmapError::Access(_))
    ));
    assert_eq!(m.get("runtime.x"), Ok(&V::U8(1)));
    assert_eq!(
        m.delete_internal("runtime.x"),
        vec![note(t, 1, TRACK_DELETE, "runtime.x", None, Some(V::U8(1)))]
    );
    assert_eq!(m.delete_internal("runtime.x"), vec![], "already gone");
    assert!(matches!(m.delete("a.none"), Err(CmapError::NotExist(k)) if k == "key \"a.none\""));
}

#[test]
fn invalid_tracks_are_refused() {
    let mut m = map();
    let table: [(u32, &str, &str); 4] = [
        (16 | TRACK_ADD, "a.b", "unknown bits 0x10"),
        (0x8000_0000 | TRACK_EVENTS, "a.b", "unknown bits 0x80000000"),
        (TRACK_ADD, "ab", "invalid key"),
        (TRACK_ADD | TRACK_PREFIX, "a b", "invalid key"),
    ];
    for (flags, key, want) in table {
        let e = m.track_add(1, key, flags, 0).unwrap_err();
        assert!(e.to_string().contains(want), "{flags:#x} {key:?}: {e}");
    }
    assert!(matches!(
        m.track_add(1, &"a".repeat(256), TRACK_ADD | TRACK_PREFIX, 0),
        Err(CmapError::InvalidKey { .. })
    ));
    assert!(m.track_add(1, &"a".repeat(255), TRACK_ADD | TRACK_PREFIX, 0).is_ok());
    assert!(
        m.track_add(1, "a", TRACK_ADD | TRACK_PREFIX, 0).is_ok(),
        "short prefixes are fine"
    );
    assert!(m.track_add(1, "", TRACK_ADD | TRACK_PREFIX, 0).is_ok());
    assert!(matches!(
        m.track_add(1, "", TRACK_ADD, 0),
        Err(CmapError::InvalidKey { .. })
    ));
    assert_eq!(m.tracks_of(1), 3);
}

#[test]
fn track_ids_owners_and_drop_owner() {
    let mut m = map();
    let a1 = track(&mut m, 1, "k.a", TRACK_ADD);
    let a2 = track(&mut m, 1, "k.a", TRACK_ADD);
    let b1 = track(&mut m, 2, "k.a", TRACK_ADD);
    let a3 = track(&mut m, 1, "k.", TRACK_ADD | TRACK_PREFIX);
    assert!(a1 < a2 && a2 < b1 && b1 < a3);
    assert_eq!((m.tracks_of(1), m.tracks_of(2), m.tracks_of(3)), (3, 1, 0));

    assert_eq!(
        m.track_delete(2, a1),
        Err(CmapError::NotExist(format!("track {} of connection 2", a1.0))),
        "not its track"
    );
    m.track_delete(1, a2).unwrap();
    assert!(matches!(m.track_delete(1, a2), Err(CmapError::NotExist(_))), "twice");

    let seen: Vec<TrackId> = m.set("k.a", V::U8(1), &L).unwrap().iter().map(|n| n.track).collect();
    assert_eq!(seen, vec![a1, b1, a3]);

    assert_eq!(m.drop_owner(1), 2);
    assert_eq!(m.drop_owner(1), 0);
    assert_eq!((m.tracks_of(1), m.tracks_of(2)), (0, 1));
    let seen: Vec<TrackId> = m.set("k.b", V::U8(1), &L).unwrap().iter().map(|n| n.track).collect();
    assert_eq!(seen, vec![], "k.b only matched the dropped prefix track");
    let seen: Vec<TrackId> = m.delete("k.a").unwrap().iter().map(|n| n.track).collect();
    assert_eq!(seen, vec![], "b1 tracks ADD only");

    let next = track(&mut m, 1, "k.a", TRACK_ADD);
    assert!(next > a3, "ids are never reused");
    let n = m.set("k.a", V::U8(1), &L).unwrap();
    assert_eq!(
        n.iter().map(|n| (n.track, n.owner)).collect::<Vec<_>>(),
        vec![(b1, 2), (next, 1)]
    );
}

#[test]
fn compare_and_set_both_ways() {
    let mut m = map();
    let t = track(&mut m, 1, "c.k", TRACK_EVENTS).0;
    // expected, new, outcome: Ok(event) or Err(current)
    type Row = (Option<CmapValue>, CmapValue, Result<Option<u32>, Option<CmapValue>>);
    let table: Vec<Row> = vec![
        (Some(V::U8(0)), V::U8(1), Err(None)),
        (None, V::U8(1), Ok(Some(TRACK_ADD))),
        (None, V::U8(2), Err(Some(V::U8(1)))),
        (Some(V::U8(2)), V::U8(3), Err(Some(V::U8(1)))),
        (Some(V::I8(1)), V::U8(3), Err(Some(V::U8(1)))),
        (Some(V::U8(1)), V::U8(3), Ok(Some(TRACK_MODIFY))),
        (Some(V::U8(3)), V::U8(3), Ok(None)),
        (Some(V::U8(3)), s("x"), Ok(Some(TRACK_MODIFY))),
    ];
    for (expected, new, outcome) in table {
        let before = m.get("c.k").ok().cloned();
        let r = m.compare_and_set("c.k", expected.as_ref(), new.clone(), &L);
        match outcome {
            Ok(event) => {
                let want: Vec<Notification> = event
                    .map(|e| note(t, 1, e, "c.k", Some(new.clone()), before.clone()))
                    .into_iter()
                    .collect();
                assert_eq!(r, Ok(want), "{expected:?} -> {new:?}");
                assert_eq!(m.get("c.k"), Ok(&new));
            }
            Err(current) => {
                assert_eq!(
                    r,
                    Err(CmapError::CasMismatch {
                        key: "c.k".into(),
                        current: current.clone()
                    }),
                    "{expected:?} -> {new:?}"
                );
                assert_eq!(m.get("c.k").ok().cloned(), before, "unchanged");
            }
        }
    }
    let e = m.compare_and_set("c.k", None, V::U8(0), &L).unwrap_err().to_string();
    assert_eq!(e, "key \"c.k\" does not hold the expected value: it holds str \"x\"");
    m.delete("c.k").unwrap();
    let e = m
        .compare_and_set("c.k", Some(&V::U8(0)), V::U8(0), &L)
        .unwrap_err()
        .to_string();
    assert!(e.ends_with("it does not exist"), "{e}");
    let small = Limits { max_value_bytes: 1 };
    assert!(matches!(
        m.compare_and_set("c.k", None, V::U16(0), &small),
        Err(CmapError::TooLarge { .. })
    ));
    assert!(matches!(
        m.compare_and_set("c", None, V::U8(0), &L),
        Err(CmapError::InvalidKey { .. })
    ));
}

#[test]
fn iteration_is_sorted_and_bounded_by_prefix() {
    let mut m = map();
    for key in ["b.x", "a.b.c", "a.b", "a.bc", "a.a", "ab.c", "c.z", "a.b/d"] {
        m.set_internal(key, s(key));
    }
    let table: [(&str, &[&str]); 6] = [
        ("", &["a.a", "a.b", "a.b.c", "a.b/d", "a.bc", "ab.c", "b.x", "c.z"]),
        ("a.", &["a.a", "a.b", "a.b.c", "a.b/d", "a.bc"]),
        ("a.b", &["a.b", "a.b.c", "a.b/d", "a.bc"]),
        ("a.b.", &["a.b.c"]),
        ("c.z", &["c.z"]),
        ("d", &[]),
    ];
    for (prefix, want) in table {
        let got: Vec<&str> = m.iter_prefix(prefix).map(|(k, _)| k).collect();
        assert_eq!(got, want, "prefix {prefix:?}");
    }
    assert!(m.iter_prefix("a.").all(|(k, v)| *v == s(k)));
}

#[test]
fn delete_prefix_internal_drops_the_subtree_in_order() {
    let mut m = map();
    for key in [
        "tag.web.pid",
        "tag.web.state",
        "tag.webx.pid",
        "tag.db.pid",
        "runtime.tag.web",
    ] {
        m.set_internal(key, V::U32(1));
    }
    let t = track(&mut m, 4, "tag.", TRACK_PREFIX | TRACK_DELETE).0;
    let n = m.delete_prefix_internal("tag.web.");
    assert_eq!(
        n,
        vec![
            note(t, 4, TRACK_DELETE, "tag.web.pid", None, Some(V::U32(1))),
            note(t, 4, TRACK_DELETE, "tag.web.state", None, Some(V::U32(1))),
        ]
    );
    let left: Vec<&str> = m.iter_prefix("").map(|(k, _)| k).collect();
    assert_eq!(left, vec!["runtime.tag.web", "tag.db.pid", "tag.webx.pid"]);
    assert_eq!(m.delete_prefix_internal("nothing."), vec![]);
    assert_eq!(m.delete_prefix_internal("").len(), 2, "only the tracked keys notify");
    assert!(
        m.is_empty(),
        "the runtime. key goes too: internal deletes ignore read-only prefixes"
    );
}

#[test]
fn error_messages_name_the_key() {
    let table: [(CmapError, &str); 5] = [
        (
            CmapError::TooLarge {
                key: "a.b".into(),
                len: 9,
                max: 8,
            },
            "value for key \"a.b\" is 9 bytes; the limit is 8",
        ),
        (CmapError::NotExist("key \"a.b\"".into()), "key \"a.b\" does not exist"),
        (
            CmapError::CasMismatch {
                key: "a.b".into(),
                current: Some(V::Binary(vec![0; 40])),
            },
            "key \"a.b\" does not hold the expected value: it holds bin \"0000000000000000000000000000000000000000000000000000000000000000\"... (40 bytes)",
        ),
        (
            CmapError::InvalidKey {
                key: "a b".into(),
                why: "x".into(),
            },
            "invalid key \"a b\": x",
        ),
        (CmapError::InvalidParam("x".into()), "invalid parameter: x"),
    ];
    for (e, want) in table {
        assert_eq!(e.to_string(), want);
    }
}

#[test]
fn names_become_key_segments_that_keys_accept() {
    let table = [
        ("web", "web"),
        ("db-1.main_x:2", "db-1.main_x:2"),
        ("web-rg,web-rs,0.svc", "web-rg/2cweb-rs/2c0.svc"),
        ("a@b+c", "a/40b/2bc"),
        ("a/2cb", "a/2f2cb"),
        ("é", "/c3/a9"),
    ];
    for (name, want) in table {
        let seg = key_segment(name);
        assert_eq!(seg, want, "{name}");
        assert!(validate_key(&format!("vigil.pmf.{seg}.state")).is_ok(), "{seg}");
    }
    // Distinct names, distinct segments: `/` is always escaped, so `/2c` can only come from a comma.
    assert_ne!(key_segment("a,b"), key_segment("a/2cb"));
}
