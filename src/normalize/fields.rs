//! Deserialization helpers for the ways gateways write values: numbers as
//! strings, `-`/`null` for absent, headers as a string or an array of strings.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

/// Parses one JSON record into a format's record type, skipping the values it does not map
/// ([`super::json`]; serde_json's answer whenever that reader fails). Records reach the
/// parsers already checked to be UTF-8 (the message reader replaces what is not), so the
/// record is checked once here, in one fast pass, and parsed as a `str`.
pub fn from_json<'a, T: Deserialize<'a>>(rec: &'a [u8]) -> serde_json::Result<T> {
    match crate::bytes::utf8(rec) {
        Some(s) => super::json::from_str(s),
        None => serde_json::from_slice(rec),
    }
}

/// A number that may arrive as a JSON number or a string; `-`, `""` and `null` mean absent.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Num(pub Option<f64>);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a numeric string")
            }
            fn visit_u64<E>(self, v: u64) -> Result<Num, E> {
                Ok(Num(Some(v as f64)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Num, E> {
                Ok(Num(Some(v as f64)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Num, E> {
                Ok(Num(Some(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Num, E> {
                Ok(Num(parse_num_str(v)))
            }
            fn visit_unit<E>(self) -> Result<Num, E> {
                Ok(Num(None))
            }
            fn visit_none<E>(self) -> Result<Num, E> {
                Ok(Num(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Num, D::Error> {
                d.deserialize_any(V)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Num, E> {
                Ok(Num(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses a numeric string; `-`, empty and non-numeric text give `None`.
/// A comma- or colon-separated list (NGINX upstream retries) gives the sum.
pub fn parse_num_str(v: &str) -> Option<f64> {
    let v = v.trim();
    if v.is_empty() || v == "-" {
        return None;
    }
    if let Ok(n) = v.parse::<f64>() {
        return n.is_finite().then_some(n);
    }
    if v.contains([',', ':']) {
        let mut sum = 0.0;
        let mut any = false;
        for p in v.split([',', ':']) {
            if let Ok(n) = p.trim().parse::<f64>() {
                sum += n;
                any = true;
            }
        }
        return any.then_some(sum);
    }
    None
}

/// A string that may be borrowed from the input; `-` and empty count as absent
/// (see [`Str::get`]). Numbers are accepted and kept as text.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Str<'a>(pub Option<Cow<'a, str>>);

impl<'a> Str<'a> {
    pub fn get(&self) -> Option<&str> {
        self.0.as_deref().filter(|s| !s.is_empty() && *s != "-")
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'a>, E> {
                Ok(Str(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'a>, E> {
                Ok(Str(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Str<'a>, E> {
                Ok(Str(Some(Cow::Owned(v))))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Str<'a>, E> {
                Ok(Str(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Str<'a>, E> {
                Ok(Str(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Str<'a>, E> {
                Ok(Str(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Str<'a>, E> {
                Ok(Str(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_unit<E>(self) -> Result<Str<'a>, E> {
                Ok(Str(None))
            }
            fn visit_none<E>(self) -> Result<Str<'a>, E> {
                Ok(Str(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Str<'a>, D::Error> {
                d.deserialize_any(self)
            }
            /// A repeated header arrives as an array: keep the first value.
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Str<'a>, A::Error> {
                let first: Option<Str<'a>> = seq.next_element()?;
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(first.unwrap_or_default())
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Str<'a>, A::Error> {
                while map.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
                Ok(Str(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_strings_and_sentinels() {
        let v: Vec<Num> = serde_json::from_str(r#"[1, "2.5", "-", null, "", "0.1, 0.2"]"#).unwrap();
        assert_eq!(v[0].0, Some(1.0));
        assert_eq!(v[1].0, Some(2.5));
        assert_eq!(v[2].0, None);
        assert_eq!(v[3].0, None);
        assert_eq!(v[4].0, None);
        assert!((v[5].0.unwrap() - 0.3).abs() < 1e-9);
    }

    #[test]
    fn strings_borrow_and_arrays_take_first() {
        let v: Vec<Str> = serde_json::from_str(r#"["a", ["b", "c"], "-", 7, null]"#).unwrap();
        assert!(matches!(v[0].0, Some(Cow::Borrowed("a"))));
        assert_eq!(v[1].get(), Some("b"));
        assert_eq!(v[2].get(), None);
        assert_eq!(v[3].get(), Some("7"));
        assert_eq!(v[4].get(), None);
    }
}
