//! A hand-rolled scanner for space-separated access-log lines (NGINX, Envoy
//! text, Traefik CLF) and a `key=value` (logfmt) splitter. No regex, no
//! allocation: every piece is a slice of the line, found with `memchr`.

use memchr::memchr;

/// Walks a text line field by field. Delimiters are ASCII, so every slice
/// boundary is a char boundary.
pub struct Scanner<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Scanner<'a> {
    pub fn new(s: &'a str) -> Self {
        Scanner { s, i: 0 }
    }

    fn bytes(&self) -> &'a [u8] {
        self.s.as_bytes()
    }

    fn skip_spaces(&mut self) {
        let b = self.bytes();
        while self.i < b.len() && (b[self.i] == b' ' || b[self.i] == b'\t') {
            self.i += 1;
        }
    }

    /// The next byte after any spaces, without consuming it.
    pub fn peek(&mut self) -> Option<u8> {
        self.skip_spaces();
        self.bytes().get(self.i).copied()
    }

    pub fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// The rest of the line, after any spaces.
    pub fn rest(&mut self) -> &'a str {
        self.skip_spaces();
        &self.s[self.i..]
    }

    /// A run of non-space bytes.
    pub fn word(&mut self) -> Option<&'a str> {
        self.skip_spaces();
        let b = self.bytes();
        if self.i >= b.len() {
            return None;
        }
        let start = self.i;
        let end = crate::bytes::find2(b' ', b'\t', &b[start..]).map_or(b.len(), |p| start + p);
        self.i = end;
        Some(&self.s[start..end])
    }

    /// A word that may be an NGINX list: `a, b, c` or `a : b` (upstream retries
    /// and internal redirects). Returns the whole list as one slice.
    pub fn list(&mut self) -> Option<&'a str> {
        self.skip_spaces();
        let start = self.i;
        let mut end;
        let first = self.word()?;
        end = self.i;
        let mut last = first;
        loop {
            let save = self.i;
            let continues = last.ends_with(',');
            let next = self.word();
            match next {
                Some(":") => {
                    // `a : b` — take the separator and the following word.
                    if self.word().is_none() {
                        self.i = save;
                        break;
                    }
                    end = self.i;
                    last = &self.s[start..end];
                }
                Some(w) if continues => {
                    end = self.i;
                    last = w;
                }
                _ => {
                    self.i = save;
                    break;
                }
            }
        }
        self.i = end;
        Some(&self.s[start..end])
    }

    /// A `"…"` field. The closing quote is a `"` followed by a space or the end
    /// of the line, so an unescaped quote inside (Envoy does not escape) does not
    /// cut the field short; `\"` is skipped as an escape.
    pub fn quoted(&mut self) -> Option<&'a str> {
        self.skip_spaces();
        let b = self.bytes();
        if b.get(self.i) != Some(&b'"') {
            return None;
        }
        let start = self.i + 1;
        let mut j = start;
        loop {
            let p = j + crate::bytes::find2(b'"', b'\\', &b[j..])?;
            if b[p] == b'\\' {
                j = p + 2;
                if j > b.len() {
                    return None;
                }
                continue;
            }
            match b.get(p + 1) {
                None | Some(b' ') | Some(b'\t') => {
                    self.i = p + 1;
                    return Some(&self.s[start..p]);
                }
                _ => j = p + 1,
            }
        }
    }

    /// A `[…]` field (CLF time, ingress-nginx upstream names).
    pub fn bracketed(&mut self) -> Option<&'a str> {
        self.skip_spaces();
        let b = self.bytes();
        if b.get(self.i) != Some(&b'[') {
            return None;
        }
        let start = self.i + 1;
        let end = start + memchr(b']', &b[start..])?;
        self.i = end + 1;
        Some(&self.s[start..end])
    }

    /// A `{…}` field (HAProxy's header captures, which write a `{`, `|` or `}` inside a
    /// value as `#7B`, `#7C`, `#7D`, so the first `}` closes the field).
    pub fn braced(&mut self) -> Option<&'a str> {
        self.skip_spaces();
        let b = self.bytes();
        if b.get(self.i) != Some(&b'{') {
            return None;
        }
        let start = self.i + 1;
        let end = start + memchr(b'}', &b[start..])?;
        self.i = end + 1;
        Some(&self.s[start..end])
    }
}

/// Splits a `"METHOD URI PROTO"` request line. An empty or garbled line (a TLS
/// handshake on a plain port, a bare `-`) gives no method and no URI.
pub fn split_request_line(r: &str) -> (Option<&str>, Option<&str>) {
    let r = r.trim();
    let Some((method, rest)) = r.split_once(' ') else {
        return (None, None);
    };
    if method.is_empty()
        || method.len() > 20
        || !method.bytes().all(|c| c.is_ascii_uppercase() || c == b'-' || c == b'_')
    {
        return (None, None);
    }
    let uri = match rest.rsplit_once(' ') {
        Some((u, proto)) if proto.starts_with("HTTP/") => u.trim(),
        _ => rest.trim(),
    };
    let uri = (!uri.is_empty()).then_some(uri);
    (Some(method), uri)
}

/// All digits, fits in a u64 — the strict reading used for text columns.
pub fn int(s: &str) -> Option<f64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok().map(|v| v as f64)
}

/// One `key=value` pair of a logfmt line; `value` still carries its quotes'
/// escapes when `escaped` is set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair<'a> {
    pub key: &'a str,
    pub value: &'a str,
    pub escaped: bool,
}

/// Iterates the `key=value` pairs of a logfmt line (logrus / Go `%q` quoting).
/// A bare word without `=` is a key with an empty value. Malformed quoting ends
/// the iteration (the caller sees fewer pairs, never a panic).
pub struct Logfmt<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Logfmt<'a> {
    pub fn new(s: &'a str) -> Self {
        Logfmt { s, i: 0 }
    }
}

impl<'a> Iterator for Logfmt<'a> {
    type Item = Pair<'a>;

    fn next(&mut self) -> Option<Pair<'a>> {
        let b = self.s.as_bytes();
        while self.i < b.len() && (b[self.i] == b' ' || b[self.i] == b'\t') {
            self.i += 1;
        }
        if self.i >= b.len() {
            return None;
        }
        let ks = self.i;
        while self.i < b.len() && b[self.i] != b'=' && b[self.i] != b' ' && b[self.i] != b'\t' {
            self.i += 1;
        }
        let key = &self.s[ks..self.i];
        if self.i >= b.len() || b[self.i] != b'=' {
            return Some(Pair { key, value: "", escaped: false });
        }
        self.i += 1; // '='
        if b.get(self.i) == Some(&b'"') {
            let vs = self.i + 1;
            let mut j = vs;
            let mut escaped = false;
            loop {
                let Some(p) = crate::bytes::find2(b'"', b'\\', &b[j..]).map(|p| j + p) else {
                    self.i = b.len();
                    return None;
                };
                if b[p] == b'\\' {
                    escaped = true;
                    j = p + 2;
                    if j > b.len() {
                        self.i = b.len();
                        return None;
                    }
                    continue;
                }
                self.i = p + 1;
                return Some(Pair { key, value: &self.s[vs..p], escaped });
            }
        }
        let vs = self.i;
        let end = crate::bytes::find2(b' ', b'\t', &b[vs..]).map_or(b.len(), |p| vs + p);
        self.i = end;
        Some(Pair { key, value: &self.s[vs..end], escaped: false })
    }
}

/// Undoes Go `%q` / JSON-style backslash escapes (`\"`, `\\`, `\n`, `\t`, `\xHH`).
pub fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut it = v.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('x') => {
                let h: String = it.by_ref().take(2).collect();
                match u8::from_str_radix(&h, 16) {
                    Ok(b) if b.is_ascii() => out.push(b as char),
                    _ => out.push('\u{fffd}'),
                }
            }
            Some(o) => out.push(o),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_reads_lists_quotes_and_brackets() {
        let mut s = Scanner::new(
            r#"1.2.3.4 [07/Feb/2020:11:48:51 +0000] "GET /a?b=1 HTTP/1.1" 10.0.0.1:80, 10.0.0.2:80 : 10.0.0.3:80 0.1, 0.2 "ua with "quoted"part" end"#,
        );
        assert_eq!(s.word(), Some("1.2.3.4"));
        assert_eq!(s.bracketed(), Some("07/Feb/2020:11:48:51 +0000"));
        assert_eq!(s.quoted(), Some("GET /a?b=1 HTTP/1.1"));
        assert_eq!(s.list(), Some("10.0.0.1:80, 10.0.0.2:80 : 10.0.0.3:80"));
        assert_eq!(s.list(), Some("0.1, 0.2"));
        assert_eq!(s.quoted(), Some(r#"ua with "quoted"part"#));
        assert_eq!(s.word(), Some("end"));
        assert!(s.at_end());
        assert_eq!(s.word(), None);
    }

    #[test]
    fn unterminated_fields_give_none() {
        assert_eq!(Scanner::new(r#""abc"#).quoted(), None);
        assert_eq!(Scanner::new("[abc").bracketed(), None);
        assert_eq!(Scanner::new(r#""abc\"#).quoted(), None);
        assert_eq!(Scanner::new("{abc").braced(), None);
        let mut s = Scanner::new("{a|b} {} x");
        assert_eq!((s.braced(), s.braced(), s.braced(), s.word()), (Some("a|b"), Some(""), None, Some("x")));
    }

    #[test]
    fn request_lines() {
        assert_eq!(split_request_line("GET /x?y HTTP/1.1"), (Some("GET"), Some("/x?y")));
        assert_eq!(split_request_line(""), (None, None));
        assert_eq!(split_request_line("\\x16\\x03\\x01"), (None, None));
        assert_eq!(split_request_line("GET /x"), (Some("GET"), Some("/x")));
    }

    #[test]
    fn logfmt_pairs() {
        let v: Vec<_> = Logfmt::new(r#"time="Jan 29 08:27:09" a=1 b="x \"y\"" flag c="#).collect();
        assert_eq!(v[0], Pair { key: "time", value: "Jan 29 08:27:09", escaped: false });
        assert_eq!(v[1], Pair { key: "a", value: "1", escaped: false });
        assert_eq!(v[2], Pair { key: "b", value: r#"x \"y\""#, escaped: true });
        assert_eq!(unescape(v[2].value), r#"x "y""#);
        assert_eq!(v[3], Pair { key: "flag", value: "", escaped: false });
        assert_eq!(v[4], Pair { key: "c", value: "", escaped: false });
        assert_eq!(Logfmt::new(r#"a="unterminated"#).count(), 0);
    }
}
