//! Decoded views of a line: a secret hidden by percent-encoding (`q=password%3Dhunter2`, a
//! nested `next=https%3A%2F%2Fadmin%3Apw%40host`) or by JSON string escapes (lua-cjson writes
//! `\/`; `\u0061` is `a`) is still a secret. A [`View`] is the decoded text of one such span
//! with, for every decoded byte, where it came from, so what the rules find in the view is
//! masked over the whole original span it was written as.

/// One decoded span of the line.
pub struct View {
    pub bytes: Vec<u8>,
    /// For decoded byte `i`: the original offset it starts at; one more entry for the end.
    from: Vec<usize>,
}

impl View {
    /// The original span of decoded `[a, z)`.
    pub fn original(&self, a: usize, z: usize) -> (usize, usize) {
        (self.from[a.min(self.from.len() - 1)], self.from[z.min(self.from.len() - 1)])
    }

    fn push(&mut self, b: u8, at: usize) {
        self.bytes.push(b);
        self.from.push(at);
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn pct_at(b: &[u8], i: usize) -> Option<u8> {
    if b.get(i) != Some(&b'%') {
        return None;
    }
    Some(hex(*b.get(i + 1)?)? << 4 | hex(*b.get(i + 2)?)?)
}

/// Where a percent-encoded value ends: the bytes that end a URL, a query parameter or a
/// JSON string. `=` is kept inside, so `password%3D…` keeps its name.
fn ends_value(c: u8) -> bool {
    c.is_ascii_whitespace() || matches!(c, b'"' | b'\'' | b'&' | b'?' | b'<' | b'>' | b'\\' | b',' | b';')
}

/// Every span holding a percent escape, decoded (`%XX`, and `+` as a space).
pub fn percent_views(b: &[u8]) -> Vec<View> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = b.get(i..).and_then(|rest| memchr::memchr(b'%', rest)).map(|p| p + i) {
        if pct_at(b, p).is_none() {
            i = p + 1;
            continue;
        }
        let start = b[..p].iter().rposition(|&c| ends_value(c)).map_or(0, |k| k + 1);
        let end = b[p..].iter().position(|&c| ends_value(c)).map_or(b.len(), |k| p + k);
        let mut v = View { bytes: Vec::with_capacity(end - start), from: Vec::with_capacity(end - start + 1) };
        let mut k = start;
        while k < end {
            if let Some(d) = pct_at(b, k).filter(|_| k + 2 < end) {
                v.push(d, k);
                k += 3;
            } else {
                v.push(if b[k] == b'+' { b' ' } else { b[k] }, k);
                k += 1;
            }
        }
        v.from.push(end);
        out.push(v);
        i = end.max(p + 1);
    }
    out
}

/// Every JSON string that holds `\/` or `\u` escapes, decoded (the other escapes too).
pub fn json_views(b: &[u8]) -> Vec<View> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = b.get(i..).and_then(|rest| memchr::memchr(b'\\', rest)).map(|p| p + i) {
        if !matches!(b.get(p + 1), Some(b'/' | b'u')) {
            i = p + 2;
            continue;
        }
        // The string around it: back to an opening quote not escaped, on to the closing one.
        let mut start = p;
        while start > 0 && !is_quote(b, start - 1) {
            start -= 1;
        }
        let mut end = p;
        while end < b.len() && !is_quote(b, end) {
            end += 1;
        }
        let mut v = View { bytes: Vec::with_capacity(end - start), from: Vec::with_capacity(end - start + 1) };
        let mut k = start;
        while k < end {
            if b[k] != b'\\' || k + 1 >= end {
                v.push(b[k], k);
                k += 1;
                continue;
            }
            match b[k + 1] {
                b'u' => match unicode_at(b, k, end) {
                    Some((ch, len)) => {
                        let mut buf = [0u8; 4];
                        for &x in ch.encode_utf8(&mut buf).as_bytes() {
                            v.push(x, k);
                        }
                        k += len;
                    }
                    None => {
                        v.push(b[k], k);
                        k += 1;
                    }
                },
                c => {
                    let d = match c {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        b'b' => 8,
                        b'f' => 12,
                        other => other,
                    };
                    v.push(d, k);
                    k += 2;
                }
            }
        }
        v.from.push(end);
        out.push(v);
        i = end + 1;
    }
    out
}

/// A whole span with its JSON escapes and then its `%XX` escapes undone (`+` kept: it is a
/// base64 character in a token far more often than an encoded space), for a fingerprint.
pub fn decoded(raw: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(raw.len());
    let mut k = 0;
    while k < raw.len() {
        if raw[k] == b'\\' && k + 1 < raw.len() {
            if raw[k + 1] == b'u' {
                if let Some((ch, len)) = unicode_at(raw, k, raw.len()) {
                    let mut buf = [0u8; 4];
                    v.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    k += len;
                    continue;
                }
            } else if matches!(raw[k + 1], b'/' | b'"' | b'\\') {
                v.push(raw[k + 1]);
                k += 2;
                continue;
            }
        }
        v.push(raw[k]);
        k += 1;
    }
    let mut out = Vec::with_capacity(v.len());
    let mut k = 0;
    while k < v.len() {
        match pct_at(&v, k) {
            Some(d) => {
                out.push(d);
                k += 3;
            }
            None => {
                out.push(v[k]);
                k += 1;
            }
        }
    }
    out
}

/// A `"` that is not escaped: the bound of a JSON string.
fn is_quote(b: &[u8], i: usize) -> bool {
    b[i] == b'"' && !escaped(b, i)
}

/// `true` if the byte at `i` is preceded by an odd number of backslashes.
fn escaped(b: &[u8], i: usize) -> bool {
    b[..i].iter().rev().take_while(|&&c| c == b'\\').count() % 2 == 1
}

/// `\uXXXX` (a surrogate pair as one character) at `k`: the character and the bytes it took.
fn unicode_at(b: &[u8], k: usize, end: usize) -> Option<(char, usize)> {
    let unit = |at: usize| -> Option<u32> {
        if at + 6 > end || b[at] != b'\\' || b[at + 1] != b'u' {
            return None;
        }
        b[at + 2..at + 6].iter().try_fold(0u32, |acc, &c| Some(acc << 4 | hex(c)? as u32))
    };
    let hi = unit(k)?;
    if (0xD800..0xDC00).contains(&hi) {
        let lo = unit(k + 6)?;
        let c = char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo.checked_sub(0xDC00)? & 0x3FF))?;
        return Some((c, 12));
    }
    Some((char::from_u32(hi)?, 6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_views_decode_and_map_back() {
        let line = b"GET /search?q=password%3Dhunter2xyz&page=2 HTTP/1.1";
        let v = percent_views(line);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].bytes, b"q=password=hunter2xyz");
        let at = v[0].bytes.windows(10).position(|w| w == b"hunter2xyz").unwrap();
        let (a, z) = v[0].original(at, at + 10);
        assert_eq!(&line[a..z], b"hunter2xyz");
        let (a, z) = v[0].original(2, 11);
        assert_eq!(&line[a..z], b"password%3D");
        assert_eq!(percent_views(b"100% sure")[..].len(), 0);
        assert_eq!(percent_views(b"q=a+b%21")[0].bytes, b"q=a b!");
    }

    proptest::proptest! {
        #[test]
        fn views_never_panic_and_map_inside_the_line(line in "[%\\\\u/\"0aFd8+ =&?x]{0,40}") {
            let b = line.as_bytes();
            for v in percent_views(b).into_iter().chain(json_views(b)) {
                for a in 0..=v.bytes.len() {
                    for z in a..=v.bytes.len() {
                        let (x, y) = v.original(a, z);
                        proptest::prop_assert!(x <= y && y <= b.len());
                    }
                }
            }
            let _ = decoded(b);
        }
    }

    #[test]
    fn json_views_decode_slashes_and_unicode() {
        let line = br#"{"h":"Bearer ab\/cd\u0065f","x":"plain"}"#;
        let v = json_views(line);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].bytes, b"Bearer ab/cdef");
        let (a, z) = v[0].original(7, v[0].bytes.len());
        assert_eq!(&line[a..z], br"ab\/cd\u0065f");
        assert_eq!(json_views(br#"{"e":"\ud83d\ude00"}"#)[0].bytes, "😀".as_bytes());
        assert!(json_views(br#"{"q":"say \"hi\""}"#).is_empty());
        assert_eq!(decoded(br"ab\/c%2Fd\u0065+"), b"ab/c/de+");
    }
}
