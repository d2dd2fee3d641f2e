//! Tests of the thrift protocols (`thrift`).

use super::*;

#[test]
fn binary_list_length_is_checked_before_allocating() {
    // list<i64> claiming 2^31-1 elements with 3 bytes left
    let body = [10u8, 0x7f, 0xff, 0xff, 0xff, 1, 2, 3];
    let mut p = Binary::new(&body);
    let err = p.list().unwrap_err();
    assert!(matches!(err, ThriftError::Length { .. }), "{err}");
}

#[test]
fn binary_negative_string_length() {
    let body = [0xffu8, 0xff, 0xff, 0xfe];
    assert!(matches!(
        Binary::new(&body).binary(),
        Err(ThriftError::Negative { .. })
    ));
}

#[test]
fn compact_varints_and_fields() {
    // field 1 i64 (delta 1, type 6) = zigzag(-2) = 3; field 3 string "ab"; bool true field 4; stop
    let body = [0x16u8, 3, 0x28, 2, b'a', b'b', 0x11, 0];
    let mut p = Compact::new(&body);
    p.struct_begin().unwrap();
    let f = p.field().unwrap().unwrap();
    assert_eq!((f.id, f.ty), (1, Type::I64));
    assert_eq!(p.i64().unwrap(), -2);
    let f = p.field().unwrap().unwrap();
    assert_eq!((f.id, f.ty), (3, Type::Binary));
    assert_eq!(p.binary().unwrap(), b"ab");
    let f = p.field().unwrap().unwrap();
    assert_eq!((f.id, f.ty), (4, Type::Bool));
    assert!(p.bool_value(&f).unwrap());
    assert!(p.field().unwrap().is_none());
}

#[test]
fn compact_overlong_varint() {
    let body = [0xffu8; 11];
    assert!(Compact::new(&body).i64().is_err());
}

#[test]
fn deep_nesting_is_refused() {
    // binary: a struct field containing a struct field ... 100 levels
    let mut body = Vec::new();
    for _ in 0..100 {
        body.extend_from_slice(&[12, 0, 1]);
    }
    let mut p = Binary::new(&body);
    p.struct_begin().unwrap();
    let h = p.field().unwrap().unwrap();
    assert_eq!(p.skip(&h), Err(ThriftError::TooDeep(MAX_DEPTH)));
}
