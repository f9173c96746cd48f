//! Structural rules: a value is a secret because of the name in front of it —
//! a header, a query parameter, a JSON key, a `name=value` pair, a cookie.
//!
//! The scrubber's aho-corasick pass reports a secret-like word (`token`, `Key`,
//! `PASS`, `auth`, ...); from there this module reads the whole name, the
//! separator and the value, without parsing the rest of the line.

use std::collections::{HashMap, HashSet};

use super::content::escape_len_before;
use super::entropy::{is_placeholder, is_weak_literal, looks_random};
use super::rules::{
    NameRule, ANALYTICS_COOKIE_PREFIXES, AUTH_SCHEMES_WITH_PARAMS, EXACT_NAMES, NON_SECRET_LAST, NON_SECRET_QUALIFIERS,
    PASSWORD_SUFFIXES, PASSWORD_WORDS, SESSION_COOKIES, TOKEN_SUFFIXES, TOKEN_WORDS,
};
use super::stats::PlaceClass;

/// Words whose occurrence (lower, Capitalised, UPPER) sends the scanner here.
pub const NAME_TRIGGERS: &[&str] =
    &["token", "key", "secret", "pass", "pwd", "auth", "cred", "sig", "sess", "cookie", "jwt", "login", "code", "dsn"];

/// A small multiplicative hasher for short names (SipHash costs more than the lookup).
#[derive(Default, Clone, Copy)]
pub struct NameHasher(u64);

impl std::hash::Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FastBuild = std::hash::BuildHasherDefault<NameHasher>;

/// What a name says about its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameClass {
    Rule(NameRule),
    /// Contains a password word: any non-placeholder value.
    Password(&'static str),
    /// Contains a token word: values that look generated.
    Token(&'static str),
}

/// Exact names (built-in + configured) and the word lists.
pub struct NameTable {
    exact: HashMap<Vec<u8>, NameRule, FastBuild>,
    password_words: HashSet<&'static [u8], FastBuild>,
    token_words: HashSet<&'static [u8], FastBuild>,
    qualifiers: HashSet<&'static [u8], FastBuild>,
    non_secret_last: HashSet<&'static [u8], FastBuild>,
}

impl NameTable {
    pub fn new(extra: &[(String, NameRule)]) -> Self {
        let mut exact: HashMap<Vec<u8>, NameRule, FastBuild> =
            EXACT_NAMES.iter().map(|(n, r)| (n.as_bytes().to_vec(), *r)).collect();
        for (n, r) in extra {
            exact.insert(normalise(n.as_bytes()), *r);
        }
        let set = |l: &[&'static str]| l.iter().map(|w| w.as_bytes()).collect::<HashSet<&'static [u8], FastBuild>>();
        NameTable {
            exact,
            password_words: set(PASSWORD_WORDS),
            token_words: set(TOKEN_WORDS),
            qualifiers: set(NON_SECRET_QUALIFIERS),
            non_secret_last: set(NON_SECRET_LAST),
        }
    }

    /// Classifies a name (the last dotted part of an identifier). Allocation-free:
    /// it runs on every name-word hit of every line.
    pub fn classify(&self, name: &[u8]) -> Option<NameClass> {
        if name.is_empty() || name.len() > 96 {
            return None;
        }
        let mut norm = [0u8; 96];
        let mut lower = [0u8; 96];
        for (i, c) in name.iter().enumerate() {
            lower[i] = c.to_ascii_lowercase();
            norm[i] = if matches!(c, b'-' | b'.') { b'_' } else { lower[i] };
        }
        let (norm, lower) = (&norm[..name.len()], &lower[..name.len()]);
        if let Some(r) = self.exact.get(norm) {
            return Some(NameClass::Rule(*r));
        }
        let mut comps: [(usize, usize); 16] = [(0, 0); 16];
        let n = components(name, &mut comps);
        if n == 0 {
            return None;
        }
        let comp = |i: usize| &lower[comps[i].0..comps[i].1];
        let ends =
            |c: &[u8], suffixes: &[&str]| suffixes.iter().any(|w| c.len() > w.len() && c.ends_with(w.as_bytes()));
        let password = (0..n).any(|i| self.password_words.contains(comp(i)) || ends(comp(i), PASSWORD_SUFFIXES));
        let token = !password && (0..n).any(|i| self.token_words.contains(comp(i)) || ends(comp(i), TOKEN_SUFFIXES));
        if !password && !token {
            return None;
        }
        if (0..n).any(|i| self.qualifiers.contains(comp(i))) {
            return None;
        }
        if n > 1 && self.non_secret_last.contains(comp(n - 1)) {
            return None;
        }
        // A name is a few bytes: a plain scan, not a searcher built per call.
        let contains = |w: &[u8]| lower.windows(w.len()).any(|x| x == w);
        if password {
            return Some(NameClass::Password(if contains(b"secret") { "secret" } else { "password" }));
        }
        let kind = if contains(b"key") {
            "api_key"
        } else if contains(b"sess") || contains(b"cookie") {
            "session_token"
        } else if contains(b"sig") {
            "signature"
        } else if contains(b"token") || contains(b"jwt") || contains(b"bearer") {
            "token"
        } else {
            "secret"
        };
        Some(NameClass::Token(kind))
    }
}

/// Lower-case, `-` and `.` as `_`.
pub fn normalise(name: &[u8]) -> Vec<u8> {
    name.iter()
        .map(|c| match c {
            b'-' | b'.' => b'_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Splits `aws_secretAccessKey` / `X-API-Key` / `APIKey` into components.
fn components(name: &[u8], out: &mut [(usize, usize); 16]) -> usize {
    let mut n = 0;
    let mut start = None::<usize>;
    let mut push = |s: usize, e: usize, n: &mut usize| {
        if e > s && *n < 16 {
            out[*n] = (s, e);
            *n += 1;
        }
    };
    for i in 0..name.len() {
        let c = name[i];
        if !c.is_ascii_alphanumeric() {
            if let Some(s) = start.take() {
                push(s, i, &mut n);
            }
            continue;
        }
        match start {
            None => start = Some(i),
            Some(s) => {
                let prev = name[i - 1];
                let boundary = (prev.is_ascii_lowercase() && c.is_ascii_uppercase())
                    || (prev.is_ascii_uppercase()
                        && c.is_ascii_uppercase()
                        && name.get(i + 1).is_some_and(u8::is_ascii_lowercase));
                if boundary {
                    push(s, i, &mut n);
                    start = Some(i);
                }
            }
        }
    }
    if let Some(s) = start {
        push(s, name.len(), &mut n);
    }
    n
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')
}

/// A secret found by its name: the value span, its kind and place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub start: usize,
    pub end: usize,
    pub kind: &'static str,
    pub place: PlaceClass,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    Plain(u8),
    Escaped,
}

/// Handles a name-word hit at `hit`. Pushes what it finds to `out` and returns
/// the index scanning may skip to.
#[allow(clippy::too_many_arguments)]
pub fn at_name(
    table: &NameTable,
    classify_token: &dyn Fn(&[u8]) -> Option<&'static str>,
    b: &[u8],
    floor: usize,
    hit: usize,
    hit_end: usize,
    json: bool,
    out: &mut Vec<Found>,
) -> usize {
    // 1. The whole identifier around the word; never reaching back into a secret
    //    already replaced (`floor`), so a second pass reads the same name.
    let mut s = hit;
    while s > floor && is_ident(b[s - 1]) && escape_len_before(b, s) == 0 {
        s -= 1;
    }
    let mut e = hit_end;
    while e < b.len() && is_ident(b[e]) {
        e += 1;
    }
    let ident_end = e;
    let raw = &b[s..e];
    let cli = raw.first() == Some(&b'-');
    let trimmed = {
        let k = raw.iter().position(|c| !matches!(c, b'-' | b'.')).unwrap_or(raw.len());
        &raw[k..]
    };
    let trimmed = trimmed.strip_suffix(b".").unwrap_or(trimmed);
    let name = match memchr::memrchr(b'.', trimmed) {
        Some(d) if d + 1 < trimmed.len() => &trimmed[d + 1..],
        _ => trimmed,
    };
    let Some(class) = table.classify(name) else { return ident_end };

    // 2. Separator and value.
    let Some(v) = value_after(b, s, e, cli, class, json) else { return ident_end };
    let place = if s > 0 && matches!(b[s - 1], b'?' | b'&' | b';') && v.sep == b'=' {
        PlaceClass::Query
    } else if v.key_quoted {
        if matches!(class, NameClass::Rule(NameRule::Authorization | NameRule::Cookie))
            || name.starts_with(b"x-")
            || name.starts_with(b"X-")
        {
            PlaceClass::Header
        } else {
            PlaceClass::JsonField
        }
    } else if v.sep == b':'
        && (memchr::memchr(b'-', name).is_some()
            || matches!(class, NameClass::Rule(NameRule::Authorization | NameRule::Cookie)))
    {
        PlaceClass::Header
    } else {
        PlaceClass::KeyValue
    };
    let before = out.len();
    if v.weak {
        // `'"951bc…"'`: quotes inside the quotes belong to the code, not to the value.
        let (mut vs, mut ve) = (v.start, v.end);
        loop {
            if ve >= vs + 2 && b[vs] == b'\\' && b[vs + 1] == b'"' {
                vs += 2;
            } else if ve > vs && b[vs] == b'"' {
                vs += 1;
            } else {
                break;
            }
        }
        loop {
            if ve >= vs + 2 && b[ve - 2] == b'\\' && b[ve - 1] == b'"' {
                ve -= 2;
            } else if ve > vs && b[ve - 1] == b'"' {
                ve -= 1;
            } else {
                break;
            }
        }
        let val = &b[vs..ve];
        if !super::marker::holds_marker(val) && !is_placeholder(val) {
            if let Some(k) = classify_token(val) {
                out.push(Found { start: vs, end: ve, kind: k, place });
            } else if val.len() >= 8 && looks_random(val) {
                let kind = match class {
                    NameClass::Rule(NameRule::Always(k) | NameRule::IfRandom(k))
                    | NameClass::Password(k)
                    | NameClass::Token(k) => k,
                    _ => "secret",
                };
                out.push(Found { start: vs, end: ve, kind, place });
            }
        }
        return if out.len() > before { ve.max(ident_end) } else { ident_end };
    }
    // Holds a secret replaced earlier: what is left around it is not a secret of its own.
    if super::marker::holds_marker(&b[v.start..v.end])
        && !matches!(class, NameClass::Rule(NameRule::Authorization | NameRule::Cookie))
    {
        return ident_end;
    }
    match class {
        NameClass::Rule(NameRule::Authorization) => authorization(b, v.start, v.end, place, classify_token, out),
        NameClass::Rule(NameRule::Cookie) => cookies(table, b, v.start, v.end, out),
        NameClass::Rule(NameRule::Always(kind)) | NameClass::Password(kind) => {
            let val = &b[v.start..v.end];
            let min = if matches!(class, NameClass::Password(_)) { 3 } else { 1 };
            // `password 'password'`, `"secret": "changeme"`: a quoted literal given to a
            // password is the password in use, however weak; `<password>`, `${PW}` stay.
            let quoted = v.start > 0 && matches!(b[v.start - 1], b'"' | b'\'');
            let password = matches!(class, NameClass::Password(_) | NameClass::Rule(NameRule::Always("password")));
            if val.len() >= min && (!is_placeholder(val) || (quoted && password && is_weak_literal(val))) {
                let kind = classify_token(val).unwrap_or(kind);
                out.push(Found { start: v.start, end: v.end, kind, place });
            }
        }
        NameClass::Rule(NameRule::IfRandom(kind)) | NameClass::Token(kind) => {
            let val = &b[v.start..v.end];
            if !is_placeholder(val) {
                if let Some(k) = classify_token(val) {
                    out.push(Found { start: v.start, end: v.end, kind: k, place });
                } else if val.len() >= 12 && looks_random(val) {
                    out.push(Found { start: v.start, end: v.end, kind, place });
                }
            }
        }
    }
    if out.len() > before {
        out[out.len() - 1].end.max(ident_end)
    } else {
        ident_end
    }
}

fn next_non_space(b: &[u8], mut i: usize) -> Option<u8> {
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    b.get(i).copied()
}

struct Value {
    start: usize,
    end: usize,
    sep: u8,
    key_quoted: bool,
    /// A loose pairing (`"name", "value"`, `password <word>`): the value must look generated.
    weak: bool,
}

/// `getKey()`, `os.Getenv("PW")`, `Buffer.from(k, "base64"),`: an identifier path then `(`.
fn is_call(v: &[u8]) -> bool {
    let ident = v.iter().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':')).count();
    ident > 0 && v.get(ident) == Some(&b'(') && v[0].is_ascii_alphabetic()
}

/// Whether `class` says any non-placeholder value is a secret (a password word or an `Always` name).
fn strong(class: NameClass) -> bool {
    matches!(class, NameClass::Password(_) | NameClass::Rule(NameRule::Always(_)))
}

/// A quote at `i`: plain (`"`, `'`), or JSON-escaped once or twice (`\"`, `\\\"`).
/// Returns the bytes that open (and so close) the quoted value.
fn quote_at(b: &[u8], i: usize) -> Option<&[u8]> {
    match b.get(i)? {
        b'"' | b'\'' => Some(&b[i..i + 1]),
        b'\\' => {
            let k = b[i..].iter().take_while(|c| **c == b'\\').count();
            (k % 2 == 1 && k <= 3 && b.get(i + k) == Some(&b'"')).then(|| &b[i..i + k + 1])
        }
        _ => None,
    }
}

/// `json`: the line is a JSON document, so a bare `"` can only be JSON structure.
fn value_after(b: &[u8], s: usize, e: usize, cli: bool, class: NameClass, json: bool) -> Option<Value> {
    let len = b.len();
    // Quoted key: "name", 'name' or \"name\".
    let mut key_quote = None;
    let mut i = e;
    if s >= 2 && b[s - 2] == b'\\' && b[s - 1] == b'"' && b[e..].starts_with(b"\\\"") {
        key_quote = Some(Quote::Escaped);
        i = e + 2;
    } else if s >= 1 && matches!(b[s - 1], b'"' | b'\'') && b.get(e) == Some(&b[s - 1]) {
        key_quote = Some(Quote::Plain(b[s - 1]));
        i = e + 1;
    } else if b[e..].starts_with(b"\\\"") && next_non_space(b, e + 2) == Some(b':') {
        // The end of a quoted key with spaces: `\"facebook access_token\":`.
        key_quote = Some(Quote::Escaped);
        i = e + 2;
    } else if b.get(e) == Some(&b'"') && next_non_space(b, e + 1) == Some(b':') {
        key_quote = Some(Quote::Plain(b'"'));
        i = e + 1;
    }
    let mut spaces = 0;
    while i < len && matches!(b[i], b' ' | b'\t') && spaces < 8 {
        i += 1;
        spaces += 1;
    }
    // `<add key="DbPassword" value="…"/>` (.NET config): the attribute after a quoted key.
    if key_quote.is_some()
        && s >= 5
        && (b[..s].ends_with(b"key=\"") || b[..s].ends_with(b"key=\\\"") || b[..s].ends_with(b"key='"))
        && b[i..].starts_with(b"value=")
    {
        i += 5;
    }
    let mut weak = false;
    let sep = match b.get(i) {
        // `password == "…"`, `creds.Secret != '…'`: a comparison with a literal.
        Some(b'=' | b'!') if b.get(i + 1) == Some(&b'=') && strong(class) => {
            i += 2;
            if b.get(i) == Some(&b'=') {
                i += 1;
            }
            b'c'
        }
        // `the password is 'Secret123'`.
        Some(b'i')
            if spaces > 0
                && strong(class)
                && b[i..].starts_with(b"is ")
                && quote_at(b, i + 3 + b[i + 3..].iter().take_while(|c| **c == b' ').count()).is_some() =>
        {
            i += 2;
            b'c'
        }
        // `"API_KEY", "…"`: a quoted name, a comma and a quoted value (argument lists, tuples).
        Some(b',') if key_quote.is_some() => {
            i += 1;
            weak = true;
            b'c'
        }
        Some(b':') => {
            match b.get(i + 1) {
                Some(b':') => return None,
                Some(b'=') => i += 2,
                Some(b'/') if b.get(i + 2) == Some(&b'/') => return None,
                _ => i += 1,
            }
            b':'
        }
        Some(b'=') => {
            match b.get(i + 1) {
                Some(b'=') => return None,
                Some(b'>') => i += 2,
                _ => i += 1,
            }
            b'='
        }
        Some(b'"' | b'\'' | b'\\')
            if spaces > 0 && key_quote.is_none() && (cli || strong(class)) && quote_at(b, i).is_some() =>
        {
            b' '
        }
        // netrc (`machine h login u password p`) and `password <generated>`: a bare word after
        // exactly `password`; outside netrc it must look generated.
        Some(c)
            if spaces > 0
                && key_quote.is_none()
                && strong(class)
                && c.is_ascii_alphanumeric()
                && matches!(&b[s..e], b"password" | b"passwd" | b"PASSWORD" | b"Password") =>
        {
            let from = s.saturating_sub(240);
            let line_start = b[from..s].iter().rposition(|c| *c == b'\n').map_or(from, |p| from + p + 1);
            weak = memchr::memmem::find(&b[line_start..s], b"login ").is_none();
            b' '
        }
        Some(c) if cli && spaces > 0 && !c.is_ascii_whitespace() && *c != b'-' => b' ',
        _ => return None,
    };
    let mut k = 0;
    while i < len && matches!(b[i], b' ' | b'\t') && k < 32 {
        i += 1;
        k += 1;
    }
    if i < len && b[i] == b'[' && matches!(b.get(i + 1), Some(b'"' | b'\'')) {
        i += 1;
    }
    if sep == b'c' && quote_at(b, i).is_none() {
        return None;
    }
    let whole_line = matches!(class, NameClass::Rule(NameRule::Authorization | NameRule::Cookie));
    if let Some(q) = quote_at(b, i).filter(|q| q.len() > 1) {
        let vs = i + q.len();
        let ve = vs + memchr::memmem::find(&b[vs..], q)?;
        if json && b[vs..ve].iter().enumerate().any(|(k, c)| *c == b'"' && (k == 0 || b[vs + k - 1] != b'\\')) {
            return None;
        }
        return Some(Value { start: vs, end: ve, sep, key_quoted: key_quote.is_some(), weak });
    }
    if let Some(&q) = b.get(i) {
        if matches!(q, b'"' | b'\'' | b'`') {
            let vs = i + 1;
            let mut j = vs;
            while j < len {
                if b[j] == b'\\' && q == b'"' {
                    j += 2;
                    continue;
                }
                if b[j] == q {
                    // A quote right after `=` may be the end of the JSON string the name sits in
                    // (`"uri":"/a?password=","h":…`): what it "encloses" is then JSON structure.
                    let inner = &b[vs..j];
                    let structural = inner.is_empty()
                        || matches!(inner[0], b',' | b':' | b'}' | b']')
                        || memchr::memmem::find(inner, b"\":").is_some()
                        || memchr::memmem::find(inner, b"\",\"").is_some();
                    if structural && q == b'"' {
                        return None;
                    }
                    // Inside a JSON string every `"` is escaped: a bare one means the quote
                    // pair spans JSON structure, not a value.
                    if json
                        && q != b'"'
                        && inner.iter().enumerate().any(|(k, c)| *c == b'"' && (k == 0 || inner[k - 1] != b'\\'))
                    {
                        return None;
                    }
                    return Some(Value { start: vs, end: j, sep, key_quoted: key_quote.is_some(), weak });
                }
                j += 1;
            }
            // No closing quote: read it as unquoted from after the quote.
            i = vs;
        }
    }
    let vs = i;
    // `{3}`, `$VAR`, `<token>`, `(expr)`: a reference, not a literal (whole-line header values excepted).
    if !whole_line && matches!(b.get(vs), Some(b'{' | b'[' | b'(' | b'<' | b'$' | b'%')) {
        return None;
    }
    // `db_pass: m{{h}o)p$…`, `apikey = A,.:-@*?!`: a config line (spaces around the `=` or
    // after the `:`) gives a password name everything up to the next space, punctuation
    // included; a call (`getKey()`) or a reference (checked above) is still not a value.
    let config_line =
        strong(class) && !whole_line && k > 0 && matches!(sep, b'=' | b':') && (spaces > 0 || sep == b':');
    let mut j = vs;
    while j < len {
        let c = b[j];
        let stop = if config_line {
            c.is_ascii_whitespace() || matches!(c, b'"' | b'\'' | b'`' | b'\\')
        } else if whole_line {
            matches!(c, b'"' | b'\'' | b'\n' | b'\r' | b'\\' | b'`')
        } else {
            c.is_ascii_whitespace()
                || matches!(
                    c,
                    b'"' | b'\'' | b'`' | b',' | b';' | b'&' | b'(' | b')' | b']' | b'}' | b'<' | b'>' | b'\\' | b'|'
                )
        };
        if stop {
            break;
        }
        j += 1;
    }
    // A call (`Buffer.from(...)`) is code, not a value.
    if b.get(j) == Some(&b'(') || (config_line && is_call(&b[vs..j])) {
        return None;
    }
    (j > vs).then_some(Value { start: vs, end: j, sep, key_quoted: key_quote.is_some(), weak })
}

/// `Authorization: <scheme> <credentials>`: keeps the scheme, replaces the credentials.
/// Where a credential after its scheme ends: a space, a quote, a backslash, `,` or `;`.
const ENDS_CREDENTIAL: [bool; 256] = crate::bytes::byte_set(b" \"'\\,;");

fn authorization(
    b: &[u8],
    vs: usize,
    ve: usize,
    place: PlaceClass,
    classify_token: &dyn Fn(&[u8]) -> Option<&'static str>,
    out: &mut Vec<Found>,
) {
    let mut i = vs;
    while i < ve && b[i] == b' ' {
        i += 1;
    }
    let w = b[i..ve].iter().position(|c| !(c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')).unwrap_or(ve - i);
    let word = &b[i..i + w];
    let mut cred_s = i;
    let mut scheme: &[u8] = b"";
    if w > 0 && w <= 30 && i + w < ve && b[i + w] == b' ' && word[0].is_ascii_alphabetic() {
        let mut j = i + w;
        while j < ve && b[j] == b' ' {
            j += 1;
        }
        if j < ve {
            scheme = word;
            cred_s = j;
        }
    }
    let params = AUTH_SCHEMES_WITH_PARAMS.iter().any(|s| s.as_bytes().eq_ignore_ascii_case(scheme));
    let mut cred_e = if params {
        ve
    } else {
        cred_s + b[cred_s..ve].iter().position(|c| ENDS_CREDENTIAL[*c as usize]).unwrap_or(ve - cred_s)
    };
    while cred_e > cred_s && b[cred_e - 1] == b' ' {
        cred_e -= 1;
    }
    let cred = &b[cred_s..cred_e];
    if cred.is_empty() || is_placeholder(cred) {
        return;
    }
    let kind = if scheme.eq_ignore_ascii_case(b"basic") {
        "basic_auth"
    } else if params {
        "authorization"
    } else {
        classify_token(cred).unwrap_or("bearer")
    };
    out.push(Found { start: cred_s, end: cred_e, kind, place });
}

const COOKIE_ATTRS: &[&str] = &[
    "path",
    "domain",
    "expires",
    "max-age",
    "samesite",
    "secure",
    "httponly",
    "priority",
    "partitioned",
    "version",
    "comment",
];

/// `Cookie: a=b; c=d` / `Set-Cookie: a=b; Path=/`: replaces session-like values.
fn cookies(table: &NameTable, b: &[u8], vs: usize, ve: usize, out: &mut Vec<Found>) {
    let mut i = vs;
    while i < ve {
        let seg_end = i + b[i..ve].iter().position(|c| *c == b';').unwrap_or(ve - i);
        let mut ns = i;
        while ns < seg_end && b[ns] == b' ' {
            ns += 1;
        }
        if let Some(eq) = b[ns..seg_end].iter().position(|c| *c == b'=') {
            let name = &b[ns..ns + eq];
            let (mut v_s, mut v_e) = (ns + eq + 1, seg_end);
            while v_e > v_s && b[v_e - 1] == b' ' {
                v_e -= 1;
            }
            if v_e > v_s + 1 && b[v_s] == b'"' && b[v_e - 1] == b'"' {
                v_s += 1;
                v_e -= 1;
            }
            let val = &b[v_s..v_e];
            let lname: Vec<u8> = name.iter().map(u8::to_ascii_lowercase).collect();
            let bare = lname.strip_prefix(b"__secure-").or_else(|| lname.strip_prefix(b"__host-")).unwrap_or(&lname);
            let attr = COOKIE_ATTRS.iter().any(|a| a.as_bytes() == lname.as_slice());
            let analytics = ANALYTICS_COOKIE_PREFIXES.iter().any(|p| lname.starts_with(p.as_bytes()));
            if !attr && !analytics && !val.is_empty() && !is_placeholder(val) {
                let session = SESSION_COOKIES.iter().any(|c| c.as_bytes() == bare)
                    || matches!(
                        table.classify(&name[name.len() - bare.len()..]),
                        Some(NameClass::Password(_) | NameClass::Token(_) | NameClass::Rule(_))
                    );
                if (session && val.len() >= 6) || (val.len() >= 16 && looks_random(val)) {
                    out.push(Found { start: v_s, end: v_e, kind: "session_cookie", place: PlaceClass::Cookie });
                }
            }
        }
        i = seg_end + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(line: &str) -> Vec<(String, &'static str, PlaceClass)> {
        let t = NameTable::new(&[]);
        let none = |_: &[u8]| None;
        let b = line.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let hit = NAME_TRIGGERS
                .iter()
                .flat_map(|w| {
                    let cap = format!("{}{}", w[..1].to_uppercase(), &w[1..]);
                    [w.to_string(), w.to_uppercase(), cap]
                })
                .filter_map(|w| line[i..].find(&w).map(|p| (i + p, w.len())))
                .min();
            let Some((h, l)) = hit else { break };
            let json = line.starts_with('{');
            i = at_name(&t, &none, b, 0, h, h + l, json, &mut out).max(h + l);
        }
        out.iter().map(|f| (line[f.start..f.end].to_string(), f.kind, f.place)).collect()
    }

    #[test]
    fn components_split_camel_and_separators() {
        let mut c = [(0, 0); 16];
        let name = b"aws_secretAccessKey";
        let n = components(name, &mut c);
        let parts: Vec<&[u8]> = c[..n].iter().map(|(s, e)| &name[*s..*e]).collect();
        assert_eq!(parts, vec![&b"aws"[..], b"secret", b"Access", b"Key"]);
        let name = b"APIKey";
        let n = components(name, &mut c);
        assert_eq!(c[..n].iter().map(|(s, e)| &name[*s..*e]).collect::<Vec<_>>(), vec![&b"API"[..], b"Key"]);
    }

    #[test]
    fn classification() {
        let t = NameTable::new(&[("x-internal-auth".into(), NameRule::Always("secret"))]);
        assert_eq!(t.classify(b"Authorization"), Some(NameClass::Rule(NameRule::Authorization)));
        assert_eq!(t.classify(b"X-Internal-Auth"), Some(NameClass::Rule(NameRule::Always("secret"))));
        assert_eq!(t.classify(b"DB_PASSWORD"), Some(NameClass::Password("password")));
        assert_eq!(t.classify(b"clientSecret"), Some(NameClass::Password("secret")));
        assert_eq!(t.classify(b"SUMOLOGIC_ACCESSKEY"), Some(NameClass::Token("api_key")));
        for n in [
            "token_type",
            "kms_key_id",
            "bucket_key",
            "tokenizer",
            "authority",
            "x-kong-request-id",
            "public_key",
            "LLM_SECRET_NAME",
            "keyboard",
        ] {
            assert_eq!(t.classify(n.as_bytes()), None, "{n}");
        }
    }

    #[test]
    fn json_header_query_and_kv_values() {
        let got = scan(
            r#"{"headers":{"authorization":"Bearer abc.def-123_XYZ","x-api-key":"k3y"},"uri":"/a?access_token=tok123&page=2"}"#,
        );
        assert_eq!(
            got,
            vec![
                ("abc.def-123_XYZ".to_string(), "bearer", PlaceClass::Header),
                ("k3y".to_string(), "api_key", PlaceClass::Header),
                ("tok123".to_string(), "token", PlaceClass::Query),
            ]
        );
        let got =
            scan("export SUMOLOGIC_ACCESSKEY=\"3HSa1hQfz6BYzlxf7Yb1WKG3Hyovm56LMFChV2y9LgkRipsXCujcLb5ej3oQUJlx\"");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].2, PlaceClass::KeyValue);
    }

    #[test]
    fn look_alikes_stay() {
        for l in [
            r#"{"fields":["username","password","remember_me"],"errors":["password too short"]}"#,
            r#"<entry key="jetbrains.mps.v8_elimination" value="executed" />"#,
            "config loaded: DB_PASSWORD=${DB_PASSWORD} API_KEY=$API_KEY",
            "POST /oauth/token grant_type=password&username=alice&password=********",
            r#"{"headers":{"authorization":"Bearer [REDACTED]","cookie":"session=[REDACTED]"}}"#,
            "Cookie: _ga=GA1.2.1843052398.1700000000; _gid=GA1.2.998877665.1700000000",
            r#"{"token_type":"Bearer","expires_in":3600,"token_fingerprint":"9b1e44c07f2a1d3e"}"#,
            "user=jane.doe+billing@example.com action=password_reset_requested",
        ] {
            assert_eq!(scan(l), vec![], "{l}");
        }
    }

    #[test]
    fn cookies_and_schemes() {
        let got = scan("Cookie: _ga=GA1.2.1.2; PHPSESSID=abcdef0123456789; theme=dark");
        assert_eq!(got, vec![("abcdef0123456789".to_string(), "session_cookie", PlaceClass::Cookie)]);
        let got = scan("Authorization: Digest username=\"a\", response=\"6629fae49393a05397450978507c4ef1\"");
        assert_eq!(got.len(), 1);
        assert!(got[0].0.starts_with("username="));
        let got = scan("Authorization: Basic YWxpY2U6aHVudGVyMg==");
        assert_eq!(got, vec![("YWxpY2U6aHVudGVyMg==".to_string(), "basic_auth", PlaceClass::Header)]);
    }
}
