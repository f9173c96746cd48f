//! A JSON reader for records that skips what a format does not map without tokenizing it.
//!
//! A Kong record is 2.6 KB, and most of it (the service and route objects, response headers,
//! `tries`) is never read. serde_json tokenizes every value it is asked to ignore: on the
//! Kong hour that was about 30,000 instructions per record, 40 % of a whole replay. This
//! reader is a [`serde::Deserializer`] over a `&str`, so the formats' `#[derive(Deserialize)]`
//! records are unchanged; what differs is [`Deserializer::deserialize_ignored_any`]: a value
//! nobody reads is stepped over by its brackets and strings, each string crossed with one
//! search for its closing quote or a backslash (`bytes::find2`).
//!
//! What is read is read strictly, and whenever this reader fails, the record is read again
//! by serde_json, whose result (and error, with its line and column) is the one returned. So
//! an error never differs from serde_json's, and neither does a value that is read. The only
//! difference: a value that is skipped is checked for its brackets and strings, not for the
//! rest of the grammar (a number or a literal inside it is not checked), and a string this
//! reader reads is not checked for raw control characters.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// Reads `s` as a `T`, skipping the values `T` ignores; serde_json's answer when this fails.
pub fn from_str<'a, T: Deserialize<'a>>(s: &'a str) -> serde_json::Result<T> {
    let mut r = Reader { s, b: s.as_bytes(), i: 0, depth: 0 };
    match T::deserialize(&mut r).and_then(|v| r.end().map(|()| v)) {
        Ok(v) => Ok(v),
        Err(Failed) => serde_json::from_str(s),
    }
}

/// This reader could not read the input; serde_json reads it again and says why.
#[derive(Debug)]
struct Failed;

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not read by the fast JSON reader")
    }
}

impl std::error::Error for Failed {}

impl de::Error for Failed {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Failed
    }
}

type Result<T> = std::result::Result<T, Failed>;

struct Reader<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    /// Objects and arrays being read, one inside the other (skipping one does not recurse).
    depth: usize,
}

/// Nesting that is read, not skipped, stops here (serde_json's own limit), so `[[[[…` in a
/// header cannot overflow the stack: serde_json then reads the record and refuses it.
const MAX_DEPTH: usize = 128;

/// What a byte is to a skipped object or array.
const OTHER: u8 = 0;
const QUOTE: u8 = 1;
const OPEN: u8 = 2;
const CLOSE: u8 = 3;

static CLASS: [u8; 256] = {
    let mut t = [OTHER; 256];
    t[b'"' as usize] = QUOTE;
    t[b'{' as usize] = OPEN;
    t[b'[' as usize] = OPEN;
    t[b'}' as usize] = CLOSE;
    t[b']' as usize] = CLOSE;
    t
};

impl<'a> Reader<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// The next byte past any whitespace. Records are mostly written without any, so the
    /// byte at hand is looked at first (this is called for every key, value and comma).
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        let c = *self.b.get(self.i)?;
        if c > b' ' {
            return Some(c);
        }
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Result<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(Failed)
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Failed)
        }
    }

    /// Steps into an object or array that is read.
    fn nest(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Failed);
        }
        self.i += 1;
        Ok(())
    }

    /// Steps out of an object or array that was read, past its `close`.
    fn unnest(&mut self, close: u8) -> Result<()> {
        self.eat(close)?;
        self.depth -= 1;
        Ok(())
    }

    fn end(&mut self) -> Result<()> {
        self.ws();
        if self.i == self.b.len() {
            Ok(())
        } else {
            Err(Failed)
        }
    }

    /// From just past an opening quote to just past the closing one; whether a backslash
    /// was crossed.
    #[inline(always)]
    fn string_end(&mut self) -> Result<bool> {
        // most strings (keys, short values) end within 16 bytes and hold no backslash
        if let Some(m) = self.b.get(self.i..).and_then(|rest| crate::bytes::mask16(b'"', b'\\', rest)) {
            if m == 0 {
                self.i += 16; // none of the 16 ends or escapes it: not looked at again
            } else if self.b[self.i + m.trailing_zeros() as usize] == b'"' {
                self.i += m.trailing_zeros() as usize + 1;
                return Ok(false);
            }
        }
        self.string_end_past()
    }

    #[inline(never)]
    fn string_end_past(&mut self) -> Result<bool> {
        let mut escaped = false;
        loop {
            let rest = self.b.get(self.i..).ok_or(Failed)?;
            let j = crate::bytes::find2(b'"', b'\\', rest).ok_or(Failed)?;
            self.i += j + 1;
            if rest[j] == b'"' {
                return Ok(escaped);
            }
            escaped = true;
            self.i += 1; // the escaped byte; `\u` digits hold no quote or backslash
        }
    }

    /// Steps over one value: brackets counted and strings crossed, nothing else checked.
    fn skip(&mut self) -> Result<()> {
        match self.peek().ok_or(Failed)? {
            b'"' => {
                self.i += 1;
                self.string_end().map(drop)
            }
            b'{' | b'[' => {
                let mut depth = 0usize;
                while let Some(&c) = self.b.get(self.i) {
                    self.i += 1;
                    match CLASS[c as usize] {
                        QUOTE => {
                            self.string_end()?;
                        }
                        OPEN => depth += 1,
                        CLOSE => {
                            depth -= 1;
                            if depth == 0 {
                                return Ok(());
                            }
                        }
                        _ => {}
                    }
                }
                Err(Failed)
            }
            _ => {
                let start = self.i;
                while let Some(c) = self.b.get(self.i) {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.i += 1;
                }
                if self.i == start {
                    Err(Failed)
                } else {
                    Ok(())
                }
            }
        }
    }

    fn number<V: Visitor<'a>>(&mut self, v: V) -> Result<V::Value> {
        let start = self.i;
        let mut float = false;
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b'0'..=b'9' | b'-' | b'+' => {}
                b'.' | b'e' | b'E' => float = true,
                _ => break,
            }
            self.i += 1;
        }
        let text = &self.s[start..self.i];
        if !is_json_number(text.as_bytes()) {
            return Err(Failed);
        }
        if !float {
            // As serde_json: a negative integer is an i64 unless it is -0 or below i64::MIN,
            // which are floats; a positive one past u64::MAX is a float.
            let (negative, digits) = match text.strip_prefix('-') {
                Some(d) => (true, d),
                None => (false, text),
            };
            if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
                if let Ok(m) = digits.parse::<u64>() {
                    if !negative {
                        return v.visit_u64(m);
                    }
                    let n = (m as i64).wrapping_neg();
                    if n < 0 {
                        return v.visit_i64(n);
                    }
                }
            }
        }
        // serde_json's own float parsing: its last digit can differ from `str::parse`'s on a
        // long mantissa, and a value must read the same by either reader.
        match serde_json::from_str::<f64>(text) {
            Ok(f) => v.visit_f64(f),
            Err(_) => Err(Failed),
        }
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, JSON's grammar for a number.
fn is_json_number(b: &[u8]) -> bool {
    let digits = |mut i: usize| {
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i > start).then_some(i)
    };
    let mut i = usize::from(b.first() == Some(&b'-'));
    i = match b.get(i) {
        Some(b'0') => i + 1,
        Some(b'1'..=b'9') => digits(i).unwrap_or(i),
        _ => return false,
    };
    if b.get(i) == Some(&b'.') {
        let Some(j) = digits(i + 1) else { return false };
        i = j;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        let Some(j) = digits(i) else { return false };
        i = j;
    }
    i == b.len()
}

impl<'de> Deserializer<'de> for &mut Reader<'de> {
    type Error = Failed;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        match self.peek().ok_or(Failed)? {
            b'{' => {
                self.nest()?;
                let value = v.visit_map(Entries { r: &mut *self, first: true, close: b'}' })?;
                self.unnest(b'}').map(|()| value)
            }
            b'[' => {
                self.nest()?;
                let value = v.visit_seq(Entries { r: &mut *self, first: true, close: b']' })?;
                self.unnest(b']').map(|()| value)
            }
            b'"' => {
                let start = self.i;
                self.i += 1;
                if self.string_end()? {
                    let owned: String = serde_json::from_str(&self.s[start..self.i]).map_err(|_| Failed)?;
                    v.visit_string(owned)
                } else {
                    v.visit_borrowed_str(&self.s[start + 1..self.i - 1])
                }
            }
            b't' => self.literal(b"true").and_then(|()| v.visit_bool(true)),
            b'f' => self.literal(b"false").and_then(|()| v.visit_bool(false)),
            b'n' => self.literal(b"null").and_then(|()| v.visit_unit()),
            b'-' | b'0'..=b'9' => self.number(v),
            _ => Err(Failed),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            v.visit_none()
        } else {
            v.visit_some(self)
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.skip()?;
        v.visit_unit()
    }

    /// serde_json's `RawValue` (a newtype by a private name) is left to serde_json.
    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, v: V) -> Result<V::Value> {
        if name.starts_with("$serde_json") {
            return Err(Failed);
        }
        v.visit_newtype_struct(self)
    }

    /// Enums are left to serde_json.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        _v: V,
    ) -> Result<V::Value> {
        Err(Failed)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

/// The entries of an object (`close` = `}`) or the elements of an array (`]`).
struct Entries<'r, 'a> {
    r: &'r mut Reader<'a>,
    first: bool,
    close: u8,
}

impl<'a> Entries<'_, 'a> {
    /// Whether another entry follows (past its comma).
    fn more(&mut self) -> Result<bool> {
        match self.r.peek().ok_or(Failed)? {
            c if c == self.close => Ok(false),
            b',' if !self.first => {
                self.r.i += 1;
                Ok(true)
            }
            _ if self.first => {
                self.first = false;
                Ok(true)
            }
            _ => Err(Failed),
        }
    }
}

impl<'de> MapAccess<'de> for Entries<'_, 'de> {
    type Error = Failed;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if !self.more()? {
            return Ok(None);
        }
        if self.r.peek() != Some(b'"') {
            return Err(Failed);
        }
        seed.deserialize(&mut *self.r).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        self.r.eat(b':')?;
        seed.deserialize(&mut *self.r)
    }
}

impl<'de> SeqAccess<'de> for Entries<'_, 'de> {
    type Error = Failed;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if !self.more()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.r).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::borrow::Cow;

    fn same_as_serde_json(text: &str) {
        let ours: serde_json::Result<Value> = from_str(text);
        let theirs: serde_json::Result<Value> = serde_json::from_str(text);
        match (ours, theirs) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text}"),
            (a, b) => panic!("{text}: ours {a:?}, serde_json {b:?}"),
        }
    }

    #[test]
    fn values_read_as_serde_json_reads_them() {
        for text in [
            r#"{"a":1,"b":-2,"c":1.5,"d":"x","e":null,"f":true,"g":false,"h":[1,[2,{}]],"i":{}}"#,
            r#" { "sp" : [ 1 , 2 ] , "e" : "\u00e9\n\"q\"\\" } "#,
            r#"{"big":18446744073709551616,"min":-9223372036854775808,"under":-9223372036854775809}"#,
            r#"{"negzero":-0,"exp":1e3,"neg_exp":-2.5E-3,"max":18446744073709551615}"#,
            r#"["\ud83d\ude00", "tab\tin", "", "-"]"#,
            r#"{"dup":1,"dup":2}"#,
            "[]",
            "\"just a string\"",
            "12",
            // errors: serde_json's own message and position
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{"a":1} x"#,
            r#"{"a":"#,
            r#"{"a":tru}"#,
            r#"[1 2]"#,
            r#"{"a":1e999}"#,
            r#"{"a":+1}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":1e}"#,
            r#"{"a":-}"#,
            r#"{"a":"\x"}"#,
            "",
        ] {
            same_as_serde_json(text);
        }
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Picked<'a> {
        #[serde(borrow)]
        keep: Cow<'a, str>,
        #[serde(default)]
        n: Option<u32>,
    }

    #[test]
    fn unread_values_are_skipped_whatever_they_hold() {
        let text = r#"{"skip":{"a":[1,{"b":"}]\"{["}],"c":"\\"},"keep":"yes","also":[[],{}],"n":7,"s":"x\"y"}"#;
        let p: Picked = from_str(text).unwrap();
        assert_eq!(p, Picked { keep: Cow::Borrowed("yes"), n: Some(7) });
        assert!(matches!(p.keep, Cow::Borrowed(_)), "an unescaped string is borrowed");
        let escaped: Picked = from_str(r#"{"keep":"a\"b"}"#).unwrap();
        assert_eq!(escaped.keep, "a\"b");
    }

    #[test]
    fn a_record_it_cannot_read_gets_serde_json_s_error() {
        for text in [r#"{"keep":"a","skip":{"x":"#, r#"{"keep":5}"#, r#"{"n":"7","keep":"a"}"#, r#"{"skip":"\"#] {
            let ours = from_str::<Picked>(text).unwrap_err().to_string();
            let theirs = serde_json::from_str::<Picked>(text).unwrap_err().to_string();
            assert_eq!(ours, theirs, "{text}");
        }
    }

    #[derive(Deserialize)]
    struct Header<'a> {
        #[serde(borrow)]
        keep: crate::normalize::fields::Str<'a>,
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        // `Str` reads the first element of an array as a `Str`: nesting it is read, not skipped.
        let deep = format!(r#"{{"keep":{}"k"{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
        let e = from_str::<Header>(&deep).err().expect("refused");
        assert!(e.to_string().contains("recursion limit"), "{e}");
        let fine = format!(r#"{{"keep":{}"k"{}}}"#, "[".repeat(100), "]".repeat(100));
        assert_eq!(from_str::<Header>(&fine).unwrap().keep.get(), Some("k"));
        // a skipped value is stepped over without recursion, however deep
        let skipped = format!(r#"{{"skip":{}{},"keep":"k"}}"#, "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(from_str::<Picked>(&skipped).unwrap().keep, "k");
    }

    #[test]
    fn skipped_values_are_checked_for_brackets_and_strings_only() {
        // The documented leniencies. One: the grammar inside a skipped value is not checked.
        let p: Picked = from_str(r#"{"skip":[tru, 01, -],"keep":"k"}"#).unwrap();
        assert_eq!(p.keep, "k");
        assert!(serde_json::from_str::<Picked>(r#"{"skip":[tru, 01, -],"keep":"k"}"#).is_err());
        // The other: a raw control character in a string that is read.
        assert_eq!(from_str::<Picked>("{\"keep\":\"a\tb\"}").unwrap().keep, "a\tb");
        assert!(serde_json::from_str::<Picked>("{\"keep\":\"a\tb\"}").is_err());
        // Brackets and strings are: an unclosed one is an error.
        assert!(from_str::<Picked>(r#"{"skip":[{"a":1],"keep":"k""#).is_err());
        assert!(from_str::<Picked>(r#"{"skip":"open,"keep":"k"}"#).is_err());
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e300f64..1e300).prop_map(Value::from),
            "[a-z\"\\\\/\u{0}-\u{1f}é😀 {}\\[\\],:]{0,40}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z\"\\\\]{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn any_json_reads_as_serde_json_reads_it(v in json_value(), pretty in proptest::bool::ANY) {
            let text = if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) }.unwrap();
            same_as_serde_json(&text);
            // read by this reader itself, not by serde_json after it gave up: a fault here
            // would otherwise cost only time, hidden by the fallback
            let mut r = Reader { s: &text, b: text.as_bytes(), i: 0, depth: 0 };
            let own = Value::deserialize(&mut r).and_then(|v| r.end().map(|()| v));
            proptest::prop_assert_eq!(own.ok(), serde_json::from_str::<Value>(&text).ok(), "{}", text);
            // skipped whole, before and after what is read, by this reader and through `from_str`
            let record = format!(r#"{{"skip":{text},"keep":"k","n":3,"after":{text}}}"#);
            let mut r = Reader { s: &record, b: record.as_bytes(), i: 0, depth: 0 };
            let own = Picked::deserialize(&mut r).and_then(|p| r.end().map(|()| p));
            proptest::prop_assert_eq!(own.ok(), Some(Picked { keep: Cow::Borrowed("k"), n: Some(3) }), "{}", record);
            let p: Picked = from_str(&record).unwrap();
            proptest::prop_assert_eq!(p, Picked { keep: Cow::Borrowed("k"), n: Some(3) });
            // cut anywhere, it is an error whenever serde_json says so
            for cut in (0..record.len()).filter(|&i| record.is_char_boundary(i)).step_by(7) {
                let part = &record[..cut];
                proptest::prop_assert_eq!(from_str::<Picked>(part).is_ok(), serde_json::from_str::<Picked>(part).is_ok(), "{}", part);
            }
        }
    }
}
