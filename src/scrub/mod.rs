//! Secret scrubbing. Nothing downstream of this stage sees a raw secret.
//!
//! A line is scanned once by one aho-corasick automaton holding every literal
//! that can start the work: secret-like *names* (`token`, `Key`, `PASS`, ...),
//! distinctive *prefixes* of secrets (`ghp_`, `eyJ`, `AKIA`, `-----BEGIN`, ...),
//! URL credentials (`://`), `Bearer `/`Basic `, `curl -u`, and existing markers.
//! Each hit runs only its own handler on a small window. A clean line costs one
//! automaton pass and is returned borrowed.
//!
//! - [`structural`]: values found by their name (headers, query, JSON keys, cookies, `k=v`).
//! - [`content`]: secrets found by their shape; [`rules`]: the rule data for both.
//! - [`entropy`]: "looks generated" and placeholder tests for keyed values.
//! - [`marker`]: `[REDACTED:<kind>:<fingerprint>]`; [`stats`]: counts by kind and place.
//! - [`config`]: the `[scrub]` section; [`fingerprint`]: the keyed fingerprint.

pub mod clean_cache;
pub mod config;
pub mod content;
pub mod decode;
pub mod entropy;
pub mod fingerprint;
pub mod marker;
pub mod message;
pub mod rules;
pub mod stats;
pub mod structural;

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, OnceLock};

use aho_corasick::{AhoCorasick, MatchKind};

pub use config::{ScrubConfig, UserRule};
pub use fingerprint::Fingerprinter;
pub use stats::{PlaceClass, ScrubStats};

use crate::bytes::LiteralSet;
use crate::config::ConfigError;
use crate::event::{Exposure, Fingerprint};
use content::ContentRule;
use structural::{Found, NameTable, NAME_TRIGGERS};

/// What a literal hit asks the scanner to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// An existing marker: skip it.
    Marker,
    /// Content rule by index.
    Rule(u16),
    /// A PEM private-key block.
    Pem,
    /// `scheme://user:pass@host`.
    Url,
    /// `curl -u` / `--user` (flag length).
    Curl(u8),
    /// `Bearer <token>` in free text (literal length).
    Bearer(u8),
    /// `Basic <base64>` in free text (literal length).
    Basic(u8),
    /// A secret-like name word: read the name, separator and value.
    Name,
}

/// A 64 Ki-bit set of hashed first-three-byte prefixes of every literal: a position
/// whose next three bytes are not in it cannot start a literal. Fits in L1 (8 KiB)
/// and skips >99 % of the positions of clean gateway lines before the automaton runs.
struct Trigrams {
    /// First two bytes of every literal, indexed by the little-endian u16 of the pair.
    pairs2: Box<[u64; 1024]>,
    bits: Box<[u64; 1024]>,
    /// Two-byte literals (`SK`, `Q~`), checked at the last position of a line.
    pairs: Vec<[u8; 2]>,
}

#[inline(always)]
fn tri_hash(a: u8, b: u8, c: u8) -> usize {
    ((a as usize).wrapping_mul(0x9E37) ^ (b as usize).wrapping_mul(0x85EB) ^ (c as usize).wrapping_mul(0xC2B2)) & 0xFFFF
}

impl Trigrams {
    fn new(literals: &[String]) -> Self {
        let mut bits = Box::new([0u64; 1024]);
        let mut pairs2 = Box::new([0u64; 1024]);
        let mut pairs = Vec::new();
        for l in literals {
            let b = l.as_bytes();
            if b.len() >= 2 {
                let k = u16::from_le_bytes([b[0], b[1]]) as usize;
                pairs2[k >> 6] |= 1 << (k & 63);
            } else if b.len() == 1 {
                for x in 0..=255u8 {
                    let k = u16::from_le_bytes([b[0], x]) as usize;
                    pairs2[k >> 6] |= 1 << (k & 63);
                }
            }
        }
        let mut set = |k: usize| bits[k >> 6] |= 1 << (k & 63);
        for l in literals {
            let b = l.as_bytes();
            match b.len() {
                0 => {}
                1 => {
                    for x in 0..=255u8 {
                        for y in 0..=255u8 {
                            set(tri_hash(b[0], x, y));
                        }
                    }
                }
                2 => {
                    pairs.push([b[0], b[1]]);
                    for x in 0..=255u8 {
                        set(tri_hash(b[0], b[1], x));
                    }
                }
                _ => set(tri_hash(b[0], b[1], b[2])),
            }
        }
        Trigrams { pairs2, bits, pairs }
    }

    /// The first position ≥ `from` where a literal may start.
    #[inline]
    fn next(&self, b: &[u8], from: usize) -> Option<usize> {
        if b.len() >= 3 && from + 2 < b.len() {
            // Two cheap filters: the exact first pair (one table, >94 % of positions
            // rejected), then the hashed first three bytes.
            for (j, w) in b[from..].windows(3).enumerate() {
                let k = u16::from_le_bytes([w[0], w[1]]) as usize;
                if self.pairs2[k >> 6] >> (k & 63) & 1 == 0 {
                    continue;
                }
                let k = tri_hash(w[0], w[1], w[2]);
                if self.bits[k >> 6] >> (k & 63) & 1 == 1 {
                    return Some(from + j);
                }
            }
        }
        let last = b.len().checked_sub(2)?;
        (last >= from && self.pairs.iter().any(|p| p[0] == b[last] && p[1] == b[last + 1])).then_some(last)
    }
}

/// Replaces secrets in log lines and values with `[REDACTED:<kind>:<fingerprint>]`.
pub struct Scrubber {
    fp: Fingerprinter,
    trigrams: Trigrams,
    ac: AhoCorasick,
    actions: Vec<Vec<Action>>,
    literals: Vec<String>,
    rules: Vec<ContentRule>,
    names: NameTable,
    /// [`SPANNING_LITERALS`] in one set: one pass a line rather than one search each.
    spanning: LiteralSet,
    /// This scrubber's name in its threads' [`clean_cache`]s.
    owner: u64,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scrubber({} literals, {} content rules)", self.actions.len(), self.rules.len())
    }
}

/// Kinds named in configs, kept for the life of the process so stats and
/// markers can hold `&'static str` (a closed set: what the configs name).
fn intern(kind: &str) -> &'static str {
    static KINDS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut set = KINDS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(k) = set.get(kind) {
        return k;
    }
    let k: &'static str = Box::leak(kind.to_string().into_boxed_str());
    set.insert(k);
    k
}

impl Scrubber {
    /// The built-in rules only.
    pub fn with_defaults(fp: Fingerprinter) -> Scrubber {
        Scrubber::new(fp, &ScrubConfig::default()).expect("built-in rules compile")
    }

    /// Built-in rules plus the configured names and rules, minus disabled kinds.
    pub fn new(fp: Fingerprinter, cfg: &ScrubConfig) -> Result<Scrubber, Vec<ConfigError>> {
        let file = std::path::Path::new("gatewatch.toml");
        let mut errs = Vec::new();
        let mut rules = Vec::new();
        let mut pats: Vec<(String, Action)> = Vec::new();
        for spec in rules::CONTENT_RULES {
            if cfg.disabled_kinds.iter().any(|k| k == spec.kind) {
                continue;
            }
            let idx = rules.len() as u16;
            rules.push(ContentRule::from_spec(spec));
            for p in spec.prefixes {
                pats.push((p.to_string(), Action::Rule(idx)));
            }
        }
        for (i, r) in cfg.rules.iter().enumerate() {
            if !config::valid_kind(&r.kind) {
                errs.push(ConfigError::new(file, format!("scrub.rules[{i}].kind"), "must match [a-z][a-z0-9_]{0,31}"));
                continue;
            }
            match ContentRule::user(intern(&r.kind), &r.regex) {
                Ok(rule) => {
                    let idx = rules.len() as u16;
                    rules.push(rule);
                    for p in &r.prefixes {
                        pats.push((p.clone(), Action::Rule(idx)));
                    }
                }
                Err(e) => errs.push(ConfigError::new(
                    file,
                    format!("scrub.rules[{i}].regex"),
                    format!("does not compile: {e}"),
                )),
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let mut words: Vec<String> = NAME_TRIGGERS.iter().map(|w| w.to_string()).collect();
        words.extend(cfg.names.iter().cloned());
        for w in words {
            let lower = w.to_ascii_lowercase();
            let upper = w.to_ascii_uppercase();
            let cap = format!("{}{}", &upper[..1], &lower[1..]);
            // `x-internal-auth` → `X-Internal-Auth` (header style).
            let mut title = String::with_capacity(lower.len());
            let mut up = true;
            for c in lower.chars() {
                title.push(if up { c.to_ascii_uppercase() } else { c });
                up = matches!(c, '-' | '_' | '.');
            }
            for v in [w, lower, upper, cap, title] {
                pats.push((v, Action::Name));
            }
        }
        pats.push((marker::MARKER_OPEN.to_string(), Action::Marker));
        pats.push(("[REDACTED]".to_string(), Action::Marker));
        pats.push(("-----BEGIN".to_string(), Action::Pem));
        pats.push(("://".to_string(), Action::Url));
        for p in ["-u ", "-u'", "-u\""] {
            pats.push((p.to_string(), Action::Curl(2)));
        }
        pats.push(("--user".to_string(), Action::Curl(6)));
        for p in ["Bearer ", "bearer ", "BEARER "] {
            pats.push((p.to_string(), Action::Bearer(7)));
        }
        for p in ["Basic ", "basic ", "BASIC "] {
            pats.push((p.to_string(), Action::Basic(6)));
        }
        // One entry per distinct literal; a literal also carries the actions of every
        // shorter literal it starts with (leftmost-longest reports only the longest).
        let mut literals: Vec<String> = Vec::new();
        let mut own: Vec<Vec<Action>> = Vec::new();
        for (p, a) in pats {
            match literals.iter().position(|l| *l == p) {
                Some(i) => {
                    if !own[i].contains(&a) {
                        own[i].push(a)
                    }
                }
                None => {
                    literals.push(p);
                    own.push(vec![a]);
                }
            }
        }
        let mut actions = own.clone();
        for (i, p) in literals.iter().enumerate() {
            for (j, q) in literals.iter().enumerate() {
                if i != j && p.starts_with(q.as_str()) {
                    for a in &own[j] {
                        if !actions[i].contains(a) {
                            actions[i].push(*a);
                        }
                    }
                }
            }
            // Content rules first, the name reading last.
            actions[i].sort_by_key(|a| matches!(a, Action::Name));
        }
        // A full DFA: one table lookup per byte. A few hundred literals make a DFA of a few
        // thousand states (well under a few MB), and it is what makes clean lines cheap. It is
        // only ever run anchored, at a position the trigram filter let through, so only the
        // anchored start is built: a third of every command's start-up (13 M instructions,
        // about 4 ms) went to the unanchored one.
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .start_kind(aho_corasick::StartKind::Anchored)
            .prefilter(false)
            .build(&literals)
            .map_err(|e| vec![ConfigError::new(file, "scrub", format!("cannot build the literal automaton: {e}"))])?;
        let trigrams = Trigrams::new(&literals);
        // Teddy (SIMD) over the six literals; `AhoCorasick::new` chose a DFA walk of every byte.
        let spanning = LiteralSet::new(&SPANNING_LITERALS.map(str::as_bytes));
        Ok(Scrubber {
            fp,
            trigrams,
            ac,
            actions,
            literals,
            rules,
            names: NameTable::new(&cfg.name_rules()),
            spanning,
            owner: clean_cache::new_owner(),
        })
    }

    /// Scrubs one line of any format. Every secret becomes `[REDACTED:<kind>:<fingerprint>]`;
    /// all other bytes are unchanged. Borrowed when nothing was found.
    pub fn scrub_line<'a>(&self, line: &'a str, stats: &mut ScrubStats) -> Cow<'a, str> {
        self.scrub_line_with(line, Vec::new(), stats)
    }

    /// [`Scrubber::scrub_line`] with finds already made from the lines before (a secret whose
    /// context is on an earlier line of a text file).
    fn scrub_line_with<'a>(&self, line: &'a str, mut found: Vec<Found>, stats: &mut ScrubStats) -> Cow<'a, str> {
        stats.lines += 1;
        stats.bytes += line.len() as u64;
        self.find(line.as_bytes(), &mut found);
        if found.is_empty() {
            return Cow::Borrowed(line);
        }
        stats.lines_changed += 1;
        let mut out = self.replace(line, found, |f| stats.record(f.kind, f.place), |_, _| {});
        // A replacement can change what its neighbours look like (a boundary where a
        // token ran on): scan again until nothing new is found, so scrubbing is idempotent.
        for _ in 0..4 {
            let mut more = Vec::new();
            self.find(out.as_bytes(), &mut more);
            if more.is_empty() {
                break;
            }
            out = self.replace(&out, more, |f| stats.record(f.kind, f.place), |_, _| {});
        }
        Cow::Owned(out)
    }

    /// Scrubs one field value (path, user agent, host, ...) and reports what it
    /// replaced as exposures at `place`.
    pub fn scrub_value<'a>(&self, v: &'a str, place: &str, stats: &mut ScrubStats) -> (Cow<'a, str>, Vec<Exposure>) {
        stats.lines += 1;
        stats.bytes += v.len() as u64;
        let mut found = Vec::new();
        self.find(v.as_bytes(), &mut found);
        if found.is_empty() {
            return (Cow::Borrowed(v), Vec::new());
        }
        stats.lines_changed += 1;
        let class = PlaceClass::of_place(place);
        let mut exposures = Vec::new();
        let mut out = self.replace(
            v,
            found,
            |f| stats.record(f.kind, class),
            |f, fp| exposures.push(Exposure { kind: f.kind.to_string(), place: place.to_string(), fingerprint: fp }),
        );
        for _ in 0..4 {
            let mut more = Vec::new();
            self.find(out.as_bytes(), &mut more);
            if more.is_empty() {
                break;
            }
            out = self.replace(
                &out,
                more,
                |f| stats.record(f.kind, class),
                |f, fp| {
                    exposures.push(Exposure { kind: f.kind.to_string(), place: place.to_string(), fingerprint: fp })
                },
            );
        }
        (Cow::Owned(out), exposures)
    }

    /// [`Self::scrub_value`] for a value that repeats from request to request (a user agent, a
    /// host, a referer): one this scrubber found clean before, on this thread, is not scanned
    /// again ([`clean_cache`]). The answer is the same.
    pub fn scrub_repeated_value<'a>(
        &self,
        v: &'a str,
        place: &str,
        stats: &mut ScrubStats,
    ) -> (Cow<'a, str>, Vec<Exposure>) {
        if clean_cache::known_clean(self.owner, v.as_bytes()) {
            stats.lines += 1;
            stats.bytes += v.len() as u64;
            return (Cow::Borrowed(v), Vec::new());
        }
        let scrubbed = self.scrub_value(v, place, stats);
        if matches!(scrubbed.0, Cow::Borrowed(_)) {
            clean_cache::remember_clean(self.owner, v.as_bytes());
        }
        scrubbed
    }

    /// Every kind this scrubber can report (content rules, user rules, named values): the
    /// label values of `gatewatch_secrets_scrubbed_total`, created at zero on start.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut k: Vec<&'static str> = self.rules.iter().map(|r| r.kind).collect();
        for (_, r) in rules::EXACT_NAMES {
            match r {
                rules::NameRule::Always(kind) | rules::NameRule::IfRandom(kind) => k.push(kind),
                rules::NameRule::Authorization | rules::NameRule::Cookie => {}
            }
        }
        k.extend([
            "password",
            "secret",
            "api_key",
            "session_token",
            "signature",
            "token",
            "bearer",
            "basic_auth",
            "discord_bot_token",
            "private_key",
            "session_cookie",
            "url_password",
            "url_token",
        ]);
        k.sort_unstable();
        k.dedup();
        k
    }

    /// The kind of a whole credential (`jwt`, `github_token`, ...) if a content rule covers it.
    pub fn classify_credential(&self, v: &[u8]) -> Option<&'static str> {
        let m = self.ac.find(aho_corasick::Input::new(v).anchored(aho_corasick::Anchored::Yes))?;
        for a in &self.actions[m.pattern().as_usize()] {
            if let Action::Rule(i) = a {
                let r = &self.rules[*i as usize];
                if let Some((0, e)) = r.match_at(v, 0, 0) {
                    if e == v.len() {
                        return Some(r.kind);
                    }
                }
            }
        }
        None
    }

    /// Every secret in `b`: as written, and as it reads once percent-encoding or JSON string
    /// escapes are undone (masked over the whole span it was written as).
    fn find(&self, b: &[u8], out: &mut Vec<Found>) {
        self.find_plain(b, out);
        self.find_decoded(b, out, 0);
    }

    /// The finds of the decoded views of `b` (a view of a view too: `%5C%2F`, JSON in a
    /// query), mapped back to `b`.
    fn find_decoded(&self, b: &[u8], out: &mut Vec<Found>, depth: u8) {
        if depth >= 2 {
            return;
        }
        let pct = memchr::memchr(b'%', b).is_some();
        // One pass over the backslashes (usually none) rather than a search per escape.
        let esc = memchr::memchr_iter(b'\\', b).any(|i| matches!(b.get(i + 1), Some(b'/' | b'u')));
        if !pct && !esc {
            return;
        }
        let mut views = Vec::new();
        if pct {
            views.extend(decode::percent_views(b));
        }
        if esc {
            views.extend(decode::json_views(b));
        }
        for v in views {
            let mut inner = Vec::new();
            self.find_plain(&v.bytes, &mut inner);
            self.find_decoded(&v.bytes, &mut inner, depth + 1);
            for f in inner {
                let (a, z) = v.original(f.start, f.end);
                if z > a {
                    out.push(Found { start: a, end: z, kind: f.kind, place: f.place });
                }
            }
        }
    }

    fn find_plain(&self, b: &[u8], out: &mut Vec<Found>) {
        let classify = |v: &[u8]| self.classify_credential(v);
        // Candidate positions from the trigram set, then an anchored leftmost-longest
        // match there: the same hits as an unanchored search, and a hit that found nothing
        // moves on by one byte, so a literal overlapping an earlier one (`SK` in
        // `ACCESSKEY`) is never hidden.
        let mut pos = 0usize;
        let mut floor = 0usize;
        let json = matches!(b.iter().find(|c| !c.is_ascii_whitespace()), Some(b'{' | b'['));
        'hits: while pos < b.len() {
            let Some(cand) = self.trigrams.next(b, pos) else { break };
            let input = aho_corasick::Input::new(b).span(cand..b.len()).anchored(aho_corasick::Anchored::Yes);
            let Some(m) = self.ac.find(input) else {
                pos = cand + 1;
                continue;
            };
            let (s, e) = (m.start(), m.end());
            let mut next = s + 1;
            for act in &self.actions[m.pattern().as_usize()] {
                let hit: Option<(usize, usize, &'static str, PlaceClass)> = match *act {
                    Action::Marker => {
                        if let Some(end) = marker::marker_end(b, s) {
                            pos = end;
                            floor = end;
                            continue 'hits;
                        }
                        None
                    }
                    Action::Rule(i) => {
                        let r = &self.rules[i as usize];
                        r.match_at(b, s, floor).map(|(a, z)| (a, z, r.kind, PlaceClass::Text))
                    }
                    Action::Pem => content::pem_at(b, s).map(|(a, z)| (a, z, "private_key", PlaceClass::Text)),
                    Action::Url => content::url_credentials(b, s).map(|(a, z, k)| (a, z, k, PlaceClass::Url)),
                    Action::Curl(n) => {
                        content::curl_user(b, s, n as usize, json).map(|(a, z)| (a, z, "basic_auth", PlaceClass::Text))
                    }
                    Action::Bearer(n) => content::bearer_token(b, s, n as usize)
                        .map(|(a, z)| (a, z, self.classify_credential(&b[a..z]).unwrap_or("bearer"), PlaceClass::Text)),
                    Action::Basic(n) => content::basic_credentials(b, s, n as usize)
                        .map(|(a, z)| (a, z, "basic_auth", PlaceClass::Text)),
                    Action::Name => {
                        let before = out.len();
                        let ident_end = structural::at_name(&self.names, &classify, b, floor, s, e, json, out);
                        if out.len() > before {
                            pos = ident_end.max(e);
                            floor = out.last().map_or(floor, |f| f.end.max(floor));
                            continue 'hits;
                        }
                        next = next.max(ident_end.min(e));
                        None
                    }
                };
                if let Some((a, z, kind, place)) = hit {
                    if z > a {
                        out.push(Found { start: a, end: z, kind, place });
                        pos = z.max(s + 1);
                        floor = floor.max(z);
                        continue 'hits;
                    }
                }
            }
            pos = next;
        }
        content::discord_bot_tokens(b, |a, z| {
            if !out.iter().any(|f| f.start < z && a < f.end) {
                out.push(Found { start: a, end: z, kind: "discord_bot_token", place: PlaceClass::Text });
            }
        });
    }

    /// Builds the scrubbed text: overlapping finds merge (the longer one names the kind).
    fn replace(
        &self,
        line: &str,
        mut found: Vec<Found>,
        mut count: impl FnMut(&Found),
        mut each: impl FnMut(&Found, Fingerprint),
    ) -> String {
        let b = line.as_bytes();
        if matches!(b.iter().find(|c| !c.is_ascii_whitespace()), Some(b'{' | b'[')) {
            for f in &mut found {
                (f.start, f.end) = whole_escapes(b, f.start, f.end);
            }
        }
        found.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
        let mut merged: Vec<Found> = Vec::with_capacity(found.len());
        for f in found {
            match merged.last_mut() {
                Some(last) if f.start < last.end => {
                    if f.end - f.start > last.end - last.start {
                        last.kind = f.kind;
                        last.place = f.place;
                    }
                    last.end = last.end.max(f.end);
                }
                _ => merged.push(f),
            }
        }
        let mut out = String::with_capacity(line.len() + merged.len() * marker::MAX_MARKER_LEN);
        let mut last = 0;
        for f in &merged {
            // Spans end on ASCII delimiters, so these are char boundaries; be safe anyway.
            let (Some(head), true) = (line.get(last..f.start), line.is_char_boundary(f.end)) else { continue };
            out.push_str(head);
            let fp = self.fingerprint_raw(&b[f.start..f.end]);
            marker::write_marker(&mut out, f.kind, fp);
            count(f);
            each(f, fp);
            last = f.end;
        }
        out.push_str(&line[last..]);
        out
    }

    /// Fingerprint of a secret as logged; JSON escapes (`\/`, `\"`, `\\`) are undone first
    /// so the fingerprint matches the one normalization computes from the decoded value.
    fn fingerprint_raw(&self, raw: &[u8]) -> Fingerprint {
        if memchr::memchr(b'%', raw).is_some() || memchr::memmem::find(raw, b"\\u").is_some() {
            // Written encoded: the fingerprint of what it stands for, as when written plain.
            return self.fp.fingerprint(&decode::decoded(raw));
        }
        self.fingerprint_raw_plain(raw)
    }

    fn fingerprint_raw_plain(&self, raw: &[u8]) -> Fingerprint {
        if memchr::memchr(b'\\', raw).is_none() {
            return self.fp.fingerprint(raw);
        }
        let mut v = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'\\' && i + 1 < raw.len() && matches!(raw[i + 1], b'/' | b'"' | b'\\') {
                v.push(raw[i + 1]);
                i += 2;
            } else {
                v.push(raw[i]);
                i += 1;
            }
        }
        self.fp.fingerprint(&v)
    }

    /// The literal set (for tuning experiments).
    pub fn debug_literals(&self) -> Vec<String> {
        self.literals.clone()
    }

    /// Size of the literal automaton (for tuning; no secrets inside).
    pub fn debug_automaton(&self) -> String {
        format!("{} literals, {} bytes, kind {:?}", self.actions.len(), self.ac.memory_usage(), self.ac.kind())
    }

    /// A stream of lines where a PEM key may span several of them (`gatewatch scrub` on raw text).
    pub fn stream(&self) -> LineStream<'_> {
        LineStream { sc: self, in_pem: false, context: String::new(), context_lines: 0 }
    }
}

/// Literals of content rules whose secret may sit on a later line than the literal
/// (`okta_api_token" {` then `default = "00…"`, a JSON-RPC method then its params).
const SPANNING_LITERALS: [&str; 6] =
    ["okta", "Okta", "OKTA", "DirectoryEntry(", "auth.login_with_api_key", "password to proceed to installation"];
/// Searchers built once: `memmem::find` builds its searcher again on every call.
static PEM_BEGIN: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new(b"-----BEGIN"));
static PEM_END: LazyLock<memchr::memmem::Finder<'static>> = LazyLock::new(|| memchr::memmem::Finder::new(b"-----END"));
/// Lines after a spanning literal that are read with it.
const SPANNING_LINES: u8 = 3;
/// Longest context kept (bytes): a longer line ends the context.
const SPANNING_BYTES: usize = 2048;

/// Scrubs consecutive lines, remembering an open PEM private-key block so its
/// body lines are replaced too, and the few lines after a rule's context literal so a
/// secret written on the next lines is found too.
pub struct LineStream<'s> {
    sc: &'s Scrubber,
    in_pem: bool,
    /// The lines since the last one holding a spanning literal (empty: none open).
    context: String,
    context_lines: u8,
}

impl LineStream<'_> {
    pub fn scrub<'a>(&mut self, line: &'a str, stats: &mut ScrubStats) -> Cow<'a, str> {
        if self.in_pem {
            if PEM_END.find(line.as_bytes()).is_some() || !content::is_pem_body_line(line.as_bytes()) {
                self.in_pem = false;
            } else {
                stats.lines += 1;
                stats.bytes += line.len() as u64;
                stats.lines_changed += 1;
                let t = line.trim();
                let start = line.find(t).unwrap_or(0);
                let f = Found { start, end: start + t.len(), kind: "private_key", place: PlaceClass::Text };
                return Cow::Owned(self.sc.replace(line, vec![f], |f| stats.record(f.kind, f.place), |_, _| {}));
            }
        }
        let mut carried = Vec::new();
        if !self.context.is_empty() {
            let off = self.context.len() + 1;
            let joined = format!("{}\n{line}", self.context);
            let mut f = Vec::new();
            self.sc.find(joined.as_bytes(), &mut f);
            carried.extend(f.into_iter().filter(|f| f.start >= off).map(|f| Found {
                start: f.start - off,
                end: f.end - off,
                ..f
            }));
        }
        self.remember(line);
        let out = self.sc.scrub_line_with(line, carried, stats);
        let b = out.as_bytes();
        if let Some(p) = PEM_BEGIN.find(b) {
            let rest = &b[p..];
            if memchr::memmem::find(rest, b"PRIVATE KEY").is_some() && PEM_END.find(rest).is_none() {
                self.in_pem = true;
            }
        }
        out
    }

    fn remember(&mut self, line: &str) {
        if line.len() <= SPANNING_BYTES && self.sc.spanning.find(line.as_bytes()).is_some() {
            self.context.clear();
            self.context.push_str(line);
            self.context_lines = 0;
        } else if !self.context.is_empty() {
            self.context_lines += 1;
            if self.context_lines >= SPANNING_LINES || self.context.len() + line.len() >= SPANNING_BYTES {
                self.context.clear();
            } else {
                self.context.push('\n');
                self.context.push_str(line);
            }
        }
    }
}

/// Widens a find `[a, z)` of a JSON line so it does not split a backslash escape: starting on a
/// character escaped by a backslash before it, or ending on a backslash whose character is
/// after it. Replacing half of `\\` or `\"` would leave a backslash that escapes the marker or
/// the string's closing quote: the line would no longer be JSON.
fn whole_escapes(b: &[u8], mut a: usize, mut z: usize) -> (usize, usize) {
    let backslashes_before = |i: usize| b[..i].iter().rev().take_while(|&&c| c == b'\\').count();
    if a > 0 && backslashes_before(a) % 2 == 1 {
        a -= 1;
    }
    // The escaped character is ASCII in JSON; past a non-ASCII byte the find stays as it is.
    if z > a && z < b.len() && b[z].is_ascii() && backslashes_before(z) % 2 == 1 {
        z += 1;
    }
    (a, z)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc() -> Scrubber {
        Scrubber::with_defaults(Fingerprinter::new(b"test-key-0123456789"))
    }

    fn scrub(s: &str) -> String {
        sc().scrub_line(s, &mut ScrubStats::default()).into_owned()
    }

    #[test]
    fn secrets_written_percent_encoded_or_json_escaped_are_masked_whole() {
        for (line, secret) in [
            ("GET /search?q=password%3Dhunter2xyz HTTP/1.1", "hunter2xyz"),
            ("GET /cb?next=https%3A%2F%2Fadmin%3AS3cr3tPassw0rd%40evil.example.com%2F HTTP/1.1", "S3cr3tPassw0rd"),
            (
                "GET /cb?q=Authorization%3A%20Bearer%20abcdefghijklmnopqrstuvwxyz012345 HTTP/1.1",
                "abcdefghijklmnopqrstuvwxyz012345",
            ),
            (
                "GET /cb?q=Authorization%253A%2520Bearer%2520Zk3mP9qR2sT5vW8xY1zA4bC7dE0fG HTTP/1.1",
                "Zk3mP9qR2sT5vW8xY1zA4bC7dE0fG",
            ),
            (r#"{"h":"Bearer oUNX0vi+1KS7N\/zeS6nn\/A3tuQk9xLm2Pq"}"#, "zeS6nn"),
            (r#"{"h":"Bearer \u0061bcdefghijklmnopqrstuvwxyz0123456"}"#, "bcdefghijklmnopqrstuvwxyz0123456"),
        ] {
            let out = scrub(line);
            assert!(!out.contains(secret), "{secret} left in {out}");
            assert!(out.contains("[REDACTED:"), "{out}");
        }
        // Idempotent, and clean encoded text stays as it is.
        let once = scrub("GET /search?q=password%3Dhunter2xyz&page=2");
        assert_eq!(scrub(&once), once);
        let plain = "GET /search?q=John%20Smith%2C%20Berlin&sort=name%3Aasc HTTP/1.1";
        assert_eq!(scrub(plain), plain);
    }

    proptest::proptest! {
        #[test]
        fn encoded_and_escaped_lines_never_panic_and_stay_idempotent(
            line in "(Bearer |password%3D|%2F|%25|\\\\/|\\\\u00|\"|q=|&|[A-Za-z0-9+]{1,12}|%[0-9A-F]{2}){0,16}"
        ) {
            static SC: OnceLock<Scrubber> = OnceLock::new();
            let sc = SC.get_or_init(sc);
            let once = sc.scrub_line(&line, &mut ScrubStats::default()).into_owned();
            let twice = sc.scrub_line(&once, &mut ScrubStats::default()).into_owned();
            proptest::prop_assert_eq!(once, twice);
        }
    }

    proptest::proptest! {
        /// A value scrubbed by `scrub_repeated_value` (cached when clean) gives what
        /// `scrub_value` gives, its exposures and its counts too, however values repeat.
        #[test]
        fn repeated_values_scrub_as_values_do(
            picks in proptest::collection::vec(0usize..8, 1..40)
        ) {
            static SC: OnceLock<Scrubber> = OnceLock::new();
            let sc = SC.get_or_init(sc);
            let values = [
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
                "curl/8.5.0 token=ghp_ZkmP9qR2sT5vW8xY1zA4bC7dE0fGhI2jK4lM",
                "api.example.com",
                "https://shop.example.com/cart?session=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJlc2lnbmF0dXJl",
                "https://shop.example.com/cart",
                "okhttp/4.12.0",
                "-",
                "ShopApp/4.12.0 (Android 13; SM-S911B) okhttp/4.12.0 AKIAIOSFODNN7EXAMPLE",
            ];
            let (mut a, mut b) = (ScrubStats::default(), ScrubStats::default());
            for i in picks {
                let (out_a, ex_a) = sc.scrub_value(values[i], "user_agent", &mut a);
                let (out_b, ex_b) = sc.scrub_repeated_value(values[i], "user_agent", &mut b);
                proptest::prop_assert_eq!(out_a, out_b);
                proptest::prop_assert_eq!(ex_a, ex_b);
            }
            proptest::prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn a_value_clean_for_one_scrubber_is_judged_again_by_another() {
        let plain = sc();
        let acme = Scrubber::new(
            Fingerprinter::new(b"k"),
            &ScrubConfig {
                rules: vec![UserRule {
                    kind: "acme_key".into(),
                    prefixes: vec!["acme_".into()],
                    regex: "acme_[A-Za-z0-9]{16}".into(),
                }],
                ..ScrubConfig::default()
            },
        )
        .unwrap();
        let v = "partner-agent/1.0 acme_0123456789abcdef";
        let mut st = ScrubStats::default();
        for _ in 0..2 {
            let (out, ex) = plain.scrub_repeated_value(v, "user_agent", &mut st);
            assert_eq!(out, v, "clean by the built-in rules");
            assert!(ex.is_empty());
        }
        let (out, ex) = acme.scrub_repeated_value(v, "user_agent", &mut st);
        assert!(out.contains("[REDACTED:acme_key:"), "{out}");
        assert_eq!(ex.len(), 1);
        // and back: the first scrubber's verdict is its own again
        assert_eq!(plain.scrub_repeated_value(v, "user_agent", &mut st).0, v);
    }

    #[test]
    fn an_encoded_token_has_the_fingerprint_of_the_plain_one() {
        let marker = |s: &str| s[s.find("[REDACTED:").unwrap()..].split(']').next().unwrap().to_string();
        let plain = scrub("Authorization: Bearer Zk3mP9qR2sT5vW8xY1zA4bC7dE0fGhI2");
        let encoded = scrub("GET /cb?q=Authorization%3A%20Bearer%20Zk3mP9qR2sT5vW8xY1zA4bC7dE0fGhI2");
        assert_eq!(marker(&plain), marker(&encoded));
    }

    #[test]
    fn clean_lines_are_borrowed() {
        let s = sc();
        let mut st = ScrubStats::default();
        for l in [
            r#"{"request":{"headers":{"accept":"*/*","user-agent":"HTTPie/3.2.3","host":"localhost:8000"},"uri":"/example-route","method":"GET"},"status":200}"#,
            r#"85.181.35.98 - - [07/Dec/2016:11:05:07 +0100] "GET /ocelot HTTP/1.1" 200 571 "-" "Mozilla/5.0""#,
            "traceparent: 00-512f26ada3c3d634ac3c6b12b7b33cb5-ec18eac8d758b1eb-01",
        ] {
            assert!(matches!(s.scrub_line(l, &mut st), Cow::Borrowed(_)), "{l}");
        }
        assert_eq!(st.total(), 0);
        assert_eq!(st.lines, 3);
    }

    #[test]
    fn bearer_keeps_scheme_and_fingerprint_matches_events() {
        let key = b"test-key-0123456789";
        let s = Scrubber::with_defaults(Fingerprinter::new(key));
        let tok = "abcDEF123456ghiJKL789";
        let line = format!(r#"{{"headers":{{"authorization":"Bearer {tok}"}}}}"#);
        let out = s.scrub_line(&line, &mut ScrubStats::default());
        let fp = Fingerprinter::new(key).fingerprint(tok.as_bytes()).to_hex();
        assert_eq!(out, format!(r#"{{"headers":{{"authorization":"Bearer [REDACTED:bearer:{fp}]"}}}}"#));
        assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok());
    }

    #[test]
    fn content_rules_in_text_and_json() {
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        let out = scrub(&format!("GET /cb?x=1#id_token={jwt} HTTP/1.1"));
        assert!(out.contains("[REDACTED:jwt:"), "{out}");
        assert!(!out.contains(jwt));
        let out = scrub(r#"{"msg":"key is AKIAIOSFODNN7EXAMPLE ok"}"#);
        assert!(out.contains("[REDACTED:aws_access_key:"), "{out}");
        let out = scrub("x 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 y");
        assert!(out.starts_with("x [REDACTED:github_token:") && out.ends_with(" y"), "{out}");
    }

    #[test]
    fn idempotent_and_json_stays_json() {
        let line = r#"{"uri":"/a?access_token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln&api_key=k-12345678","headers":{"cookie":"PHPSESSID=0123456789abcdef; _ga=GA1.2.3.4","authorization":"Basic YWxpY2U6aHVudGVyMg=="},"body":"postgres://app:Sup3rS3cret@db:5432/x"}"#;
        let s = sc();
        let once = s.scrub_line(line, &mut ScrubStats::default()).into_owned();
        let twice = s.scrub_line(&once, &mut ScrubStats::default()).into_owned();
        assert_eq!(once, twice);
        assert!(serde_json::from_str::<serde_json::Value>(&once).is_ok());
        for secret in ["eyJhbGciOiJIUzI1NiJ9", "k-12345678", "0123456789abcdef", "YWxpY2U6aHVudGVyMg", "Sup3rS3cret"] {
            assert!(!once.contains(secret), "leaked {secret}: {once}");
        }
        assert!(once.contains("_ga=GA1.2.3.4"));
        assert!(once.contains("postgres://app:[REDACTED:url_password:"));
    }

    #[test]
    fn a_find_never_splits_a_json_escape() {
        // Found by tests/scrub_props.rs: `"api_key":"\` written inside a JSON string. The
        // value's find ended between the two backslashes of `\\`, so the one left escaped
        // the closing quote.
        let s = sc();
        let l = "\"api_key\":\"\\";
        let rec = serde_json::json!({"request": {"uri": format!("/a?{l}"), "body": l}}).to_string();
        let out = s.scrub_line(&rec, &mut ScrubStats::default());
        assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok(), "{out}");
        assert_eq!(whole_escapes(br#"{"a":"x\\y"}"#, 6, 8), (6, 9), "ends inside `\\\\`");
        assert_eq!(whole_escapes(br#"{"a":"x\\y"}"#, 8, 10), (7, 10), "starts inside `\\\\`");
        assert_eq!(whole_escapes(br#"{"a":"x\\\\y"}"#, 6, 9), (6, 9), "a whole `\\\\` is left as it is");
    }

    #[test]
    fn scrub_value_reports_exposures() {
        let s = sc();
        let mut st = ScrubStats::default();
        let (v, ex) = s.scrub_value("/v1/hooks/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/run", "path", &mut st);
        assert!(v.starts_with("/v1/hooks/[REDACTED:github_token:"));
        assert_eq!(ex.len(), 1);
        assert_eq!(ex[0].kind, "github_token");
        assert_eq!(ex[0].place, "path");
        assert_eq!(st.place_count(PlaceClass::Path), 1);
        let (v, ex) = s.scrub_value("/v1/orders/6c40a97a-d345-44d3-a73b-46b8b130a936", "path", &mut st);
        assert!(matches!(v, Cow::Borrowed(_)));
        assert!(ex.is_empty());
    }

    #[test]
    fn user_rules_and_names_and_disable() {
        let cfg = ScrubConfig {
            names: vec!["x-internal".into()],
            rules: vec![UserRule {
                kind: "acme_key".into(),
                prefixes: vec!["acme_".into()],
                regex: "acme_[A-Za-z0-9]{16}".into(),
            }],
            disabled_kinds: vec!["aws_access_key".into()],
        };
        let s = Scrubber::new(Fingerprinter::new(b"k"), &cfg).unwrap();
        let out = s.scrub_line(
            "X-Internal: hello-world id=acme_0123456789abcdef AKIAIOSFODNN7EXAMPLE",
            &mut ScrubStats::default(),
        );
        assert!(out.starts_with("X-Internal: [REDACTED:secret:"), "{out}");
        assert!(out.contains("id=[REDACTED:acme_key:"), "{out}");
        assert!(out.ends_with("AKIAIOSFODNN7EXAMPLE"), "{out}");
    }

    #[test]
    fn pem_across_lines() {
        let s = sc();
        let mut st = ScrubStats::default();
        let mut stream = s.stream();
        let lines = [
            "-----BEGIN RSA PRIVATE KEY-----",
            "MIIEpQIBAAKCAQEAn6/O8li+SX4m98LLYt/PKSzEmQ++ZBD7Loh9P13f4yQ92EF3",
            "-----END RSA PRIVATE KEY-----",
            "next line",
        ];
        let out: Vec<String> = lines.iter().map(|l| stream.scrub(l, &mut st).into_owned()).collect();
        assert_eq!(out[0], lines[0]);
        assert!(out[1].starts_with("[REDACTED:private_key:"));
        assert_eq!(out[2], lines[2]);
        assert_eq!(out[3], "next line");
    }
}

#[cfg(test)]
mod recall_tests {
    //! One positive and one look-alike for each rule family added for recall. Every secret
    //! here is built from the published format, not copied from anywhere.
    use super::*;

    fn scrub(s: &str) -> String {
        Scrubber::with_defaults(Fingerprinter::new(b"test-key-0123456789"))
            .scrub_line(s, &mut ScrubStats::default())
            .into_owned()
    }

    fn caught(line: &str, secret: &str) {
        let out = scrub(line);
        assert!(!out.contains(secret) && out.contains("[REDACTED:"), "not scrubbed: {line}");
    }

    #[test]
    fn a_password_with_hash_or_question_mark_in_a_url_is_masked_whole() {
        let out = scrub("dsn=postgres://svc:ozUN4kq9#842@db.internal:5432/orders");
        assert!(!out.contains("ozUN4kq9") && !out.contains("842@"), "{out}");
        assert!(out.contains("@db.internal:5432/orders"), "{out}");
        let out = scrub("redis://:pa?ss#word77@cache:6379");
        assert!(!out.contains("pa?ss") && !out.contains("word77"), "{out}");
        // A fragment or query of a URL without credentials is left alone.
        let clean = "https://docs.example.com:443/guide#install and https://host:8080?q=a";
        assert_eq!(scrub(clean), clean);
    }

    #[test]
    fn an_aws_key_id_and_its_secret_key_are_masked_together() {
        let secret = "Zk3mP9qR2sT5vW8xY1zA4bC7dE0fG3hJ6kL9mN2p";
        for line in [
            format!("aws creds AKIAZ7Q4M2XK9WTR3PLB secret {secret}"),
            format!("AKIAZ7Q4M2XK9WTR3PLB:{secret}"),
            format!("key=AKIAZ7Q4M2XK9WTR3PLB, secret_key = \"{secret}\""),
        ] {
            let out = scrub(&line);
            assert!(!out.contains(secret) && !out.contains("AKIAZ7Q4M2XK9WTR3PLB"), "{out}");
        }
        // A key id alone is still its own kind; the example key with ordinary words after it stays readable.
        assert!(scrub("AKIAZ7Q4M2XK9WTR3PLB rotated yesterday").contains("[REDACTED:aws_access_key:"));
    }

    fn untouched(line: &str) {
        assert_eq!(scrub(line), line);
    }

    const B64: &str = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    fn crypt(n: usize, seed: usize) -> String {
        (0..n).map(|i| B64.as_bytes()[(i * 7 + seed * 13 + i * i) % 64] as char).collect()
    }

    #[test]
    fn password_hashes() {
        let md5 = format!("$1${}${}", crypt(8, 1), crypt(22, 2));
        let bcrypt = format!("$2b$10${}", crypt(53, 3));
        let sha512 = format!("$6$rounds=5000${}${}", crypt(16, 4), crypt(86, 5));
        let cisco = format!("$9${}${}", crypt(14, 6), crypt(43, 7));
        let krb = format!("$krb5tgs$23$*svc$CORP.EXAMPLE$http/web*${}${}", "ab12".repeat(8), "0f9e".repeat(40));
        for h in [&md5, &bcrypt, &sha512, &cisco, &krb] {
            caught(&format!("user:{h}:19000:0:99999:7:::"), h);
        }
        // A regex replacement and a price list are not hashes.
        untouched(r#"{"replace":"$1$2","note":"costs $5$ or $6$ per seat"}"#);
    }

    #[test]
    fn names_compared_or_described() {
        caught(r#"if creds.Secret != "open-sesame-42" {"#, "open-sesame-42");
        caught(r#"ok = password == "Tr1cky!Pass""#, "Tr1cky!Pass");
        caught("echo \"The password is 'Plum-Tree-77'\"", "Plum-Tree-77");
        caught(r#"<add key="SmtpPassword" value="Gr33n!Leaf"/>"#, "Gr33n!Leaf");
        caught("machine api.example.com login ci password 0a1b2c3d4e", "0a1b2c3d4e");
        caught(
            r#"buildConfigField 'String', 'API_KEY', '"8f14e45fceea167a5a36dedd4bea2543"'"#,
            "8f14e45fceea167a5a36dedd4bea2543",
        );
        untouched(r#"if password == "" { return Err("password is required") }"#);
        untouched(r#"{"fields":["username","password","remember_me"]}"#);
        untouched("password reset requested for user 42");
    }

    #[test]
    fn calls_and_tools() {
        caught(r#"var c = new NetworkCredential("svc", "Blue-Fox-93");"#, "Blue-Fox-93");
        caught(r"psexec \\host -u admin -p Sunny-Day-12 cmd", "Sunny-Day-12");
        caught(r#"Connect-VIServer vc01 -User root -Password "Vm-Ware-55""#, "Vm-Ware-55");
        let unseal = "q2Zx8Lr0Tn5Vb7Wm1Ks3Jh9Gf4Dd6Sa2Pq8Or0Ne3Mc=";
        caught(&format!("Unseal Key 1: {unseal}"), unseal);
        caught(&format!("vault operator unseal {unseal}"), unseal);
        untouched("psexec \\\\host -u admin -i cmd");
        untouched("Unseal Key Shares: 5");
    }

    #[test]
    fn vendor_prefixes() {
        let msteams = "https://example.webhook.office.com/webhookb2/0d3c2b1a-9f8e-4d7c-a6b5-4a3b2c1d0e9f@1a2b3c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d/IncomingWebhook/0123abcd4567ef890123abcd4567ef89/9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a";
        caught(&format!("notify url={msteams} ok"), msteams);
        let azdo = format!("{}AZDO{}", "Qw3rTy8uIo0pAs5dFg7hJk2lZx4cVb6nMq1wE9rT".repeat(2).get(..76).unwrap(), "x7Yz");
        caught(&format!("pat {azdo} end"), &azdo);
        let slack = "xoxp-523423-234243-234233-0f1e2d3c4b5a69788796";
        caught(&format!("token {slack}"), slack);
        let pypi = format!("pypi-AgEIcHlwaS5vcmc{}", "Qk9Xr2Lm7Tn4Vb8Wq".repeat(4));
        caught(&format!("password: ${{{{ secrets.{pypi} }}}}"), &pypi);
        caught("BUNDLE_ENTERPRISE__CONTRIBSYS__COM: 0a1b2c3d:4e5f6a7b", "0a1b2c3d:4e5f6a7b");
        let sumo = "su7Qk2Lm9Xr4Tn";
        caught(&format!("SUMO_ACCESS_ID = \"{sumo}\""), sumo);
        let postmark = "3f2e1d0c-9b8a-4765-b432-10fedcba9876";
        caught(&format!("postmark: \"{postmark}\""), postmark);
        // The same shapes without the vendor's name, and words that start like one.
        untouched(&format!("request_id={postmark} sumOfExposures = sumOfExposures;"));
        untouched(r#"{"id":"3286a508-a6ca-278a-c078-85b2b515d8d2","method":"auth.logout"}"#);
        untouched("AZDO pipelines: 12 runs, hooks.office.com/help");
    }

    #[test]
    fn pem_split_over_string_literals() {
        let body = "MIIEowIBAAKCAQEAx9Zk3Lm8Qr2Tn5Vb7Wc1Xd4Ye6Zf0Ag";
        let line = format!(r#"key = "-----BEGIN RSA PRIVATE KEY-----" + "{body}" + "{body}" + "{body}";"#);
        caught(&line, body);
        let mut st = ScrubStats::default();
        let sc = Scrubber::with_defaults(Fingerprinter::new(b"k"));
        let mut stream = sc.stream();
        stream.scrub("\"-----BEGIN RSA PRIVATE KEY-----\" +", &mut st);
        assert!(!stream.scrub(&format!("\"{body}\" +"), &mut st).contains(body));
        untouched(r#"msg = "-----BEGIN PUBLIC KEY-----" + "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA""#);
    }

    #[test]
    fn url_userinfo_words() {
        caught("https://deploy:hunter@git.example.com/x", "hunter@");
        untouched("https://user:${PASSWORD}@host/x");
        untouched("https://user:****@host/x");
    }

    #[test]
    fn discord_bot_tokens_have_no_prefix_but_a_shape() {
        // base64("198622483471925248") . 6-character timestamp . 27-character HMAC (made up).
        let tok = "MTk4NjIyNDgzNDcxOTI1MjQ4.Gq7Xw2.h4Kp9LmQ2rT8vZ1yB6nW3sE5cJ0aF7u";
        caught(&format!("bot started with {tok} on shard 0"), "h4Kp9LmQ2rT8vZ1yB6nW3sE5cJ0aF7u");
        caught(&format!(r#"{{"msg":"bot login {tok} ok"}}"#), "Gq7Xw2.h4Kp9");
        // Hostnames, versions and dotted identifiers with a 6-character middle part stay.
        untouched("GET https://abcdefghijklmnopqrstuvwx.cdn123.example-host-name-longer-than-27.com/x");
        untouched("Microsoft.AspNetCore.Routing.EndpointMiddleware.Invoke");
    }

    #[test]
    fn salesforce_and_thingsboard_tokens() {
        let sf = format!(
            "00D{}!{}",
            "Xk9mP2qR7sT4vW1",
            "AQ4Af9Kx2Lm8Pq3Rs7Tv1Wx5Yz0Bc6De.Fg2Hj8Kl4Mn9Pq3Rs7Tv1Wx5Yz0Bc6De.Fg2Hj8Kl4Mn9Pq3Rs7Tv1Wx5Yz0Bc6D"
        );
        caught(&format!("Authorization: OAuth {sf}"), "AQ4Af9Kx2Lm8");
        caught("POST https://tb.example.com/api/v1/Xk9mP2qR7sT4vW1yZ3bC/telemetry HTTP/1.1", "Xk9mP2qR7sT4vW1yZ3bC");
        untouched("POST /api/v1/organizations/telemetry HTTP/1.1");
    }

    #[test]
    fn a_connection_string_with_a_password_is_masked_whole() {
        let cs = "Server=db7.corp,1433;Database=Billing;User ID=svc_billing;Password=Wq8#rT2!mZ;Encrypt=True";
        let out = scrub(&format!(r#"<add name="Billing" connectionString="{cs}" />"#));
        assert!(!out.contains("Wq8#rT2") && !out.contains("db7.corp") && out.ends_with("\" />"), "{out}");
        untouched(r#"connectionString="Server=db7.corp;Database=Billing;Integrated Security=SSPI""#);
        untouched(r#"connectionString="Server=db7;Database=B;User ID=u;Password={0};""#);
    }

    #[test]
    fn config_lines_give_a_password_everything_to_the_next_space() {
        caught("db_pass: m{{h}o)p$x]nob(ody[finds>-_$#thisone}},", "nob(ody[finds");
        caught("secrete = A,.:-@*?!xq", ",.:-@*?!xq");
        untouched("api_key = getKey()");
        untouched("password = ${DB_PASSWORD}");
    }

    #[test]
    fn a_quoted_weak_password_is_still_the_password() {
        let out = scrub("credentials {\n  username 'user'\n  password 'password'\n}");
        assert!(out.contains("password '[REDACTED:"), "{out}");
        caught(r#"{"password":"changeme"}"#, "changeme");
        // Prose and placeholders are not values.
        untouched("curl -u username:password https://example.com");
        untouched("password reset requested for user=jane");
        untouched(r#"password = "<password>""#);
    }

    #[test]
    fn a_secret_on_the_line_after_its_context_is_masked() {
        let sc = Scrubber::with_defaults(Fingerprinter::new(b"k"));
        let mut st = ScrubStats::default();
        let mut stream = sc.stream();
        let okta = "00Ab3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7d";
        let lines = ["variable \"okta_api_token\" {", &format!("  default = \"{okta}\""), "}"];
        let out: Vec<String> = lines.iter().map(|l| stream.scrub(l, &mut st).into_owned()).collect();
        assert!(!out[1].contains(okta) && out[1].contains("[REDACTED:okta_token:"), "{out:?}");
        assert_eq!(out[2], "}");
        // The context is a few lines long: a 42-character value further down stays.
        for l in ["a", "b", "c"] {
            stream.scrub(l, &mut st);
        }
        let far = format!("  default = \"{okta}\"");
        assert_eq!(stream.scrub(&far, &mut st), far);
    }
}
