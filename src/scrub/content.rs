//! Content rules: secrets recognised by their shape wherever they appear.
//!
//! Nothing here scans a whole line: the scrubber's single aho-corasick pass
//! reports a literal (`ghp_`, `eyJ`, `-----BEGIN`, `://`, ...) and the handler
//! for that literal looks only at a small window around the hit.

use std::sync::OnceLock;

use base64::Engine as _;
use regex::bytes::Regex;

use super::entropy::{is_placeholder, looks_random};
use super::rules::{Check, RuleSpec};

/// A content rule ready to run.
///
/// A built-in rule's regex is compiled the first time its literal is seen, not at start:
/// compiling the few hundred built-in rules was nine tenths of the start-up of every command
/// (0.32 G instructions, about 40 ms), and a given log stream only ever hits a few of them.
/// A test compiles every built-in rule, so the first hit cannot fail. A user's rule is
/// compiled at load, so a bad regex is a configuration error.
pub(crate) struct ContentRule {
    pub kind: &'static str,
    source: &'static str,
    /// The regex, and whether it has a capture group: then the secret is group 1 and the rest
    /// is context (`NetworkCredential("user", "<secret>")`).
    compiled: OnceLock<(Regex, bool)>,
    back: usize,
    max_len: usize,
    left_boundary: bool,
    right_boundary: bool,
    check: Check,
}

impl ContentRule {
    pub fn from_spec(s: &RuleSpec) -> Self {
        ContentRule {
            kind: s.kind,
            source: s.regex,
            compiled: OnceLock::new(),
            back: s.back,
            max_len: s.max_len,
            left_boundary: s.left_boundary,
            right_boundary: s.right_boundary,
            check: s.check,
        }
    }

    /// A user rule: `regex` must match starting at its literal prefix.
    pub fn user(kind: &'static str, regex: &str) -> Result<Self, regex::Error> {
        let re = Regex::new(&format!("^(?:{regex})"))?;
        Ok(ContentRule {
            kind,
            source: "",
            compiled: OnceLock::from((re, false)),
            back: 0,
            max_len: 4096,
            left_boundary: true,
            right_boundary: true,
            check: Check::NotPlaceholder,
        })
    }

    /// The compiled regex and whether it has a capture group; compiled on first use.
    fn compiled(&self) -> &(Regex, bool) {
        self.compiled.get_or_init(|| {
            // Every built-in regex compiles: `rules::tests` compiles them all.
            let re = Regex::new(self.source).unwrap_or_else(|e| panic!("built-in rule {}: {e}", self.kind));
            let group = re.captures_len() > 1;
            (re, group)
        })
    }

    /// The secret this rule finds around a literal hit at `hit`, if any.
    /// `floor` is the end of a secret already found: a boundary, as its marker will be.
    pub fn match_at(&self, b: &[u8], hit: usize, floor: usize) -> Option<(usize, usize)> {
        if self.back == 0 {
            if self.left_boundary && hit != floor && !left_ok(b, hit) {
                return None;
            }
            let (re, group) = self.compiled();
            let end = (hit + self.max_len + 1).min(b.len());
            let (s, e) = if *group {
                let g = re.captures(&b[hit..end])?.get(1)?;
                (hit + g.start(), hit + g.end())
            } else {
                (hit, hit + re.find(&b[hit..end])?.end())
            };
            self.accept(b, s, e).then_some((s, e))
        } else {
            let ws = hit.saturating_sub(self.back).max(floor);
            let we = (hit + self.max_len + 1).min(b.len());
            let (re, group) = self.compiled();
            if *group {
                for c in re.captures_iter(&b[ws..we]) {
                    let (Some(m), Some(g)) = (c.get(0), c.get(1)) else { continue };
                    let (s, e) = (ws + g.start(), ws + g.end());
                    if ws + m.start() <= hit && hit < ws + m.end() && self.accept(b, s, e) {
                        return Some((s, e));
                    }
                }
                return None;
            }
            for m in re.find_iter(&b[ws..we]) {
                let (s, e) = (ws + m.start(), ws + m.end());
                if s <= hit && hit < e && (!self.left_boundary || s == floor || left_ok(b, s)) && self.accept(b, s, e) {
                    return Some((s, e));
                }
            }
            None
        }
    }

    fn accept(&self, b: &[u8], s: usize, e: usize) -> bool {
        if self.right_boundary && e < b.len() && b[e].is_ascii_alphanumeric() {
            return false;
        }
        let v = &b[s..e];
        // `XXXXXXXX`, `00000000`: a template, whatever the prefix says.
        if super::entropy::has_mask_run(v) {
            return false;
        }
        match self.check {
            Check::None => true,
            Check::NotPlaceholder => !is_placeholder(v),
            Check::Random => !is_placeholder(v) && looks_random(v),
            Check::Jwt => jwt_header_ok(v),
            Check::GithubCrc => github_crc_ok(v) || (!is_placeholder(v) && looks_random(&v[4..])),
            Check::Base64Pem => base64_pem_ok(v),
            Check::Base64Prefix(p, want) => base64_prefix_ok(&v[p as usize..], want),
        }
    }
}

/// Whether a secret may start at `s`: the byte before is not part of a word,
/// or is the tail of an escape (`\n`, `\u0026`, `%3D`).
pub fn left_ok(b: &[u8], s: usize) -> bool {
    if s == 0 {
        return true;
    }
    let c = b[s - 1];
    if !(c.is_ascii_alphanumeric() || c == b'_' || c == b'.') {
        return true;
    }
    c != b'.' && escape_len_before(b, s) > 0
}

/// Length of a JSON or URL escape ending just before `s` (`\n` = 2, `\u003d` = 6, `%3D` = 3), else 0.
pub fn escape_len_before(b: &[u8], s: usize) -> usize {
    if s >= 2 && b[s - 2] == b'\\' && matches!(b[s - 1], b'n' | b't' | b'r' | b'b' | b'f') {
        return 2;
    }
    if s >= 6 && b[s - 6] == b'\\' && b[s - 5] == b'u' && b[s - 4..s].iter().all(u8::is_ascii_hexdigit) {
        return 6;
    }
    if s >= 3 && b[s - 3] == b'%' && b[s - 2].is_ascii_hexdigit() && b[s - 1].is_ascii_hexdigit() {
        return 3;
    }
    0
}

/// A JWT's first segment decodes to a JSON object header (or, when damaged,
/// still names a JOSE header field).
pub fn jwt_header_ok(t: &[u8]) -> bool {
    let Some(dot) = memchr::memchr(b'.', t) else { return false };
    let seg: Vec<u8> = t[..dot].iter().copied().filter(|c| *c != b'=').collect();
    let Ok(hdr) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&seg) else {
        // Damaged padding: decode the longest valid prefix.
        let cut = seg.len() / 4 * 4;
        return match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&seg[..cut]) {
            Ok(h) => names_jose_field(&h),
            Err(_) => false,
        };
    };
    if matches!(serde_json::from_slice::<serde_json::Value>(&hdr), Ok(serde_json::Value::Object(_))) {
        return true;
    }
    names_jose_field(&hdr)
}

fn names_jose_field(h: &[u8]) -> bool {
    h.starts_with(b"{")
        && [&b"\"alg\""[..], b"\"typ\"", b"\"kid\"", b"\"enc\"", b"\"alg", b"\"typ"]
            .iter()
            .any(|f| memchr::memmem::find(h, f).is_some())
}

/// GitHub classic tokens: `gh?_` + 30 base62 + 6 base62 digits of CRC32(the 30).
pub fn github_crc_ok(t: &[u8]) -> bool {
    if t.len() != 40 {
        return false;
    }
    let crc = crc32(&t[4..34]);
    let mut want = [b'0'; 6];
    let mut n = crc as u64;
    const B62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    for i in (0..6).rev() {
        want[i] = B62[(n % 62) as usize];
        n /= 62;
    }
    want == t[34..40]
}

/// CRC-32 (IEEE), bitwise: only run on 30 bytes after a `gh?_` hit.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

fn base64_pem_ok(v: &[u8]) -> bool {
    let cut = v.len().min(96) / 4 * 4;
    match base64::engine::general_purpose::STANDARD.decode(&v[..cut]) {
        Ok(d) => memchr::memmem::find(&d, b"PRIVATE KEY").is_some(),
        Err(_) => false,
    }
}

fn base64_prefix_ok(v: &[u8], want: &[u8]) -> bool {
    let cut = v.len().min(64) / 4 * 4;
    match base64::engine::general_purpose::STANDARD.decode(&v[..cut]) {
        Ok(d) => d.starts_with(want) || want.starts_with(&d),
        Err(_) => false,
    }
}

/// A PEM private-key block starting at `hit` (`-----BEGIN … PRIVATE KEY-----`),
/// through its END line or the end of its body. Newlines may be real or `\n` escapes.
pub fn pem_at(b: &[u8], hit: usize) -> Option<(usize, usize)> {
    let after = hit + "-----BEGIN".len();
    let hdr_end = after + memchr::memmem::find(&b[after..(after + 80).min(b.len())], b"-----")?;
    memchr::memmem::find(&b[after..hdr_end], b"PRIVATE KEY")?;
    let mut i = hdr_end + 5;
    let mut body = 0usize;
    let mut end = None;
    while i < b.len() {
        let c = b[i];
        if c == b'-' && b[i..].starts_with(b"-----END") {
            let tail = i + 8;
            let close = memchr::memmem::find(&b[tail..(tail + 80).min(b.len())], b"-----")?;
            end = Some(tail + close + 5);
            break;
        }
        match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=' => body += 1,
            b' ' | b'\t' | b'\r' | b'\n' | b':' | b',' | b'-' => {}
            // `\n` escapes, once or twice JSON-escaped (`\\r\\n`).
            b'\\' => {
                let k = b[i..].iter().take_while(|c| **c == b'\\').count();
                if !matches!(b.get(i + k), Some(b'n' | b'r' | b't')) {
                    match concat_joint(b, i) {
                        Some(j) => {
                            i = j;
                            continue;
                        }
                        None => break,
                    }
                }
                i += k;
            }
            // A key split over string literals: `…" +\n"…`.
            b'"' | b'\'' => match concat_joint(b, i) {
                Some(j) => {
                    i = j;
                    continue;
                }
                None => break,
            },
            _ => break,
        }
        i += 1;
    }
    if body < 40 {
        return None;
    }
    let mut e = end.unwrap_or(i);
    while e > hit && matches!(b[e - 1], b' ' | b'\t' | b'\r' | b'\n') {
        e -= 1;
    }
    Some((hit, e))
}

/// A string-concatenation joint at `i` (`" +\n  "`, `\" +\n\"`, `' + '`): the index after it.
fn concat_joint(b: &[u8], i: usize) -> Option<usize> {
    let quote = |j: usize| -> Option<usize> {
        match b.get(j)? {
            b'"' | b'\'' => Some(j + 1),
            b'\\' if b.get(j + 1) == Some(&b'"') => Some(j + 2),
            _ => None,
        }
    };
    let skip_space = |mut j: usize| {
        while j < b.len() {
            match b[j] {
                b' ' | b'\t' | b'\r' | b'\n' => j += 1,
                b'\\' if matches!(b.get(j + 1), Some(b'n' | b'r' | b't')) => j += 2,
                _ => break,
            }
        }
        j
    };
    let j = skip_space(quote(i)?);
    if b.get(j) != Some(&b'+') {
        return None;
    }
    quote(skip_space(j + 1))
}

/// Whether a whole line is PEM body text (used when a key spans several input lines).
pub fn is_pem_body_line(line: &[u8]) -> bool {
    let t: &[u8] = {
        let s = line.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(line.len());
        let e = line.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(s, |i| i + 1);
        &line[s..e]
    };
    // A line of a key split over string literals: `"MIIE…" +`, `'MIIE…\n',`.
    let t = match t.first() {
        Some(q @ (b'"' | b'\'')) => {
            let mut u = &t[1..];
            for tail in [&b"+"[..], b",", b";", b" ", b"\t"] {
                u = u.strip_suffix(tail).unwrap_or(u);
            }
            let u = u.strip_suffix(b" ").unwrap_or(u).strip_suffix(&[*q][..]).unwrap_or(u);
            let u = u.strip_suffix(b"\\n").unwrap_or(u);
            u.strip_suffix(b"\\r").unwrap_or(u)
        }
        _ => t,
    };
    (t.len() >= 16 && t.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=')))
        || t.starts_with(b"Proc-Type:")
        || t.starts_with(b"DEK-Info:")
}

/// Password (or, without one, token) in `scheme://user:pass@host`, for a hit on `://`.
pub fn url_credentials(b: &[u8], hit: usize) -> Option<(usize, usize, &'static str)> {
    // A scheme of letters before `://`.
    if hit == 0 || !b[hit - 1].is_ascii_alphanumeric() {
        return None;
    }
    let u = hit + 3;
    let limit = (u + 512).min(b.len());
    let mut at = None;
    let mut colon = None;
    for (k, &c) in b[u..limit].iter().enumerate() {
        match c {
            b'@' => {
                at = Some(u + k);
                break;
            }
            b':' if colon.is_none() => colon = Some(u + k),
            // In the password (after `user:`), `#` and `?` are characters people put in
            // passwords and forget to encode; an `@` still has to follow before a `/` or a space.
            b'?' | b'#' if colon.is_some() => {}
            b'/' | b'?' | b'#' | b' ' | b'\t' | b'"' | b'\'' | b'<' | b'>' | b'\\' | b'`' | b'\n' | b'\r' => {
                return None
            }
            _ => {}
        }
    }
    let at = at?;
    if !b.get(at + 1).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'[') {
        return None;
    }
    match colon {
        Some(c) => {
            let (user, pass) = (&b[u..c], &b[c + 1..at]);
            // A plain word (`user:password@`) is still a password written into a URL; templates
            // (`${PASSWORD}`, `<pass>`, `****`, `%s`) are not.
            let word = pass.len() >= 4 && pass.iter().all(|c| c.is_ascii_alphanumeric());
            if pass.is_empty() || (is_placeholder(pass) && !word) || (user == pass && !looks_random(pass)) {
                return None;
            }
            Some((c + 1, at, "url_password"))
        }
        None => {
            let tok = &b[u..at];
            (looks_random(tok) && !is_placeholder(tok)).then_some((u, at, "url_token"))
        }
    }
}

/// `curl -u user:pass` / `--user user:pass`, for a hit on `-u` or `--user`.
pub fn curl_user(b: &[u8], hit: usize, flag_len: usize, json: bool) -> Option<(usize, usize)> {
    if hit > 0 && !matches!(b[hit - 1], b' ' | b'\t' | b'\n' | b'\r') && escape_len_before(b, hit) == 0 {
        return None;
    }
    let mut i = hit + flag_len;
    while i < b.len() && matches!(b[i], b' ' | b'=') {
        i += 1;
    }
    let (vs, ve) = match b.get(i) {
        Some(b'\\') if b.get(i + 1) == Some(&b'"') => {
            let close = memchr::memmem::find(&b[i + 2..], b"\\\"")?;
            (i + 2, i + 2 + close)
        }
        Some(q @ (b'\'' | b'"')) => {
            let close = memchr::memchr(*q, &b[i + 1..])?;
            (i + 1, i + 1 + close)
        }
        Some(_) => {
            let n = b[i..]
                .iter()
                .position(|c| c.is_ascii_whitespace() || matches!(c, b'\\' | b'"' | b'\'' | b'`'))
                .unwrap_or(b.len() - i);
            (i, i + n)
        }
        None => return None,
    };
    let v = &b[vs..ve];
    if is_placeholder(v) || super::marker::holds_marker(v) {
        return None;
    }
    // Inside a JSON string every `"` is escaped: a bare one means the quotes span JSON structure.
    if json && v.iter().enumerate().any(|(k, c)| *c == b'"' && (k == 0 || v[k - 1] != b'\\')) {
        return None;
    }
    let c = memchr::memchr(b':', v)?;
    let (user, pass) = (&v[..c], &v[c + 1..]);
    if memchr::memmem::find(v, b"${").is_some() || v.starts_with(b"$") || pass.starts_with(b"$") {
        return None;
    }
    if user == pass && !looks_random(pass) {
        return None;
    }
    // `xxx:yyy`, `a:b`: a template.
    let trivial = |p: &[u8]| p.len() < 4 && p.windows(2).all(|w| w[0] == w[1]);
    if trivial(user) && trivial(pass) {
        return None;
    }
    if !pass.is_empty() {
        if is_placeholder(pass) {
            return None;
        }
        return Some((vs + c + 1, ve));
    }
    if !user.is_empty() && !is_placeholder(user) {
        return Some((vs, vs + c));
    }
    None
}

/// `Bearer <token>` in free text: the token, if it looks like one.
pub fn bearer_token(b: &[u8], hit: usize, len: usize) -> Option<(usize, usize)> {
    if !left_ok(b, hit) {
        return None;
    }
    let mut s = hit + len;
    while s < b.len() && b[s] == b' ' {
        s += 1;
    }
    let n = b[s..].iter().position(|c| !is_token_byte(*c)).unwrap_or(b.len() - s);
    let t = &b[s..s + n];
    // A static token a team made up (`my-team-api-token-for-prod`) is as secret as a
    // generated one: long, one word, with a separator or digit, it is no prose.
    let made_up = t.len() >= 16 && t.iter().any(|c| matches!(c, b'-' | b'_' | b'.' | b'0'..=b'9'));
    (t.len() >= 8 && !is_placeholder(t) && (looks_random(t) || t.starts_with(b"eyJ") || made_up)).then_some((s, s + n))
}

/// `Basic <base64 of user:pass>` in free text.
pub fn basic_credentials(b: &[u8], hit: usize, len: usize) -> Option<(usize, usize)> {
    if !left_ok(b, hit) {
        return None;
    }
    let mut s = hit + len;
    while s < b.len() && b[s] == b' ' {
        s += 1;
    }
    let n = b[s..]
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=')))
        .unwrap_or(b.len() - s);
    let t = &b[s..s + n];
    if t.len() < 4 || is_placeholder(t) {
        return None;
    }
    decodes_to_user_pass(t).then_some((s, s + n))
}

/// Standard base64 whose text holds `user:password`.
pub fn decodes_to_user_pass(t: &[u8]) -> bool {
    let eng = base64::engine::general_purpose::STANDARD;
    let d = eng
        .decode(t)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(t.strip_suffix(b"=").unwrap_or(t)));
    match d {
        Ok(d) => memchr::memchr(b':', &d).is_some() && d.len() >= 2,
        Err(_) => false,
    }
}

/// Discord bot tokens (`MTk4NjIy…NDg.Cl2FMQ.ZnCj…`): the base64 of the bot's numeric id
/// (23–27 characters, so it starts `M`, `N` or `O`), a 6-character timestamp and an HMAC of
/// 27–38. No literal marks them, so this looks at each `.` that has another 7 bytes on.
pub fn discord_bot_tokens(b: &[u8], mut push: impl FnMut(usize, usize)) {
    let tok = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    let mut after = 0;
    for d in memchr::memchr_iter(b'.', b) {
        if d < 23 || d < after || b.get(d + 7) != Some(&b'.') || !b[d + 1..d + 7].iter().all(|&c| tok(c)) {
            continue;
        }
        let id_len = b[..d].iter().rev().take(28).take_while(|&&c| tok(c)).count();
        let start = d - id_len;
        if !(23..=27).contains(&id_len) || !matches!(b[start], b'M' | b'N' | b'O') || !left_ok(b, start) {
            continue;
        }
        let mac = b[d + 8..].iter().take(39).take_while(|&&c| tok(c)).count();
        let end = d + 8 + mac;
        if !(27..=38).contains(&mac) || b.get(end).is_some_and(|&c| tok(c)) {
            continue;
        }
        if looks_random(&b[start..d]) && looks_random(&b[d + 8..end]) {
            push(start, end);
            after = end;
        }
    }
}

/// Characters a bearer token is made of (RFC 6750 b64token, plus `%`).
pub fn is_token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=' | b'%')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_known_answer() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn github_checksum_roundtrip() {
        // Build a token whose checksum is right, then damage it.
        let body = b"AbCdEfGhIjKlMnOpQrStUvWxYz0123";
        let crc = crc32(body);
        let mut n = crc as u64;
        let mut ck = [b'0'; 6];
        const B62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        for i in (0..6).rev() {
            ck[i] = B62[(n % 62) as usize];
            n /= 62;
        }
        let mut t = b"ghp_".to_vec();
        t.extend_from_slice(body);
        t.extend_from_slice(&ck);
        assert!(github_crc_ok(&t));
        t[10] = b'z';
        assert!(!github_crc_ok(&t));
    }

    #[test]
    fn a_made_up_bearer_token_is_masked_and_prose_is_not() {
        fn masked(text: &str) -> Option<&str> {
            let hit = text.find("Bearer").unwrap();
            bearer_token(text.as_bytes(), hit, "Bearer".len()).map(|(s, e)| &text[s..e])
        }
        assert_eq!(masked("auth: Bearer my-team-api-token-for-prod ok"), Some("my-team-api-token-for-prod"));
        assert_eq!(masked("Bearer authentication is used here"), None);
        assert_eq!(masked("Bearer token"), None);
        assert_eq!(masked("Bearer ${API_TOKEN_FOR_PROD}"), None);
    }

    #[test]
    fn jwt_header_validation() {
        assert!(jwt_header_ok(b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.sig"));
        // base64 of {"page": 2}: JSON, but a cursor has no dots so never reaches here; a header must be an object.
        assert!(!jwt_header_ok(b"eyJBB.eyJCC.eyJDDDD"));
    }

    #[test]
    fn pem_blocks() {
        let body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDAC4AWkdwKYSd8";
        let line = format!(r#"{{"k":"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"}}"#);
        let hit = line.find("-----BEGIN").unwrap();
        let (s, e) = pem_at(line.as_bytes(), hit).unwrap();
        assert_eq!(&line[s..e], &line[hit..line.find("KEY-----\\n\"").unwrap() + 8]);
        assert!(pem_at(b"-----BEGIN PRIVATE KEY-----\nanything\n-----END PRIVATE KEY-----", 0).is_none());
        assert!(pem_at(b"-----BEGIN PUBLIC KEY----- MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA", 0).is_none());
    }

    #[test]
    fn url_and_curl_credentials() {
        let l = b"mongodb://admin:S3cr3tP4ss@db.internal:27017/app";
        let hit = 7;
        let (s, e, k) = url_credentials(l, hit).unwrap();
        assert_eq!(&l[s..e], b"S3cr3tP4ss");
        assert_eq!(k, "url_password");
        assert!(url_credentials(b"https://user:${PASSWORD}@host", 5).is_none());
        assert!(url_credentials(b"https://example.com/a@b", 5).is_none());
        let c = b"curl -u elastic:P@ssw0rd$1 https://x";
        assert_eq!(curl_user(c, 5, 2, false).map(|(s, e)| &c[s..e]), Some(&b"P@ssw0rd$1"[..]));
        for neg in
            [&b"curl -u 'test:test'"[..], b"curl -u \":\" x", b"curl --user user:pass x", b"curl -u \"${u}:${p}\""]
        {
            let at = memchr::memmem::find(neg, b"-u").or_else(|| memchr::memmem::find(neg, b"--user")).unwrap();
            let len = if neg[at..].starts_with(b"--user") { 6 } else { 2 };
            assert!(curl_user(neg, at, len, false).is_none(), "{}", String::from_utf8_lossy(neg));
        }
    }

    #[test]
    fn basic_and_bearer_in_text() {
        let l = b"Basic YnJvd3Nlcjo= x";
        assert_eq!(basic_credentials(l, 0, 6), Some((6, 18)));
        assert!(basic_credentials(b"Basic authentication", 0, 6).is_none());
        assert!(bearer_token(b"Bearer token", 0, 7).is_none());
        assert!(bearer_token(b"Bearer eIdWHQqRfFmvP5LDDh-IGxPUzi7I27HthzCPAVmS", 0, 7).is_some());
    }
}
