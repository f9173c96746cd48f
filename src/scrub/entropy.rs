//! Value heuristics: entropy, "looks random", placeholders. Used only where a
//! name already says the value is a secret (keyed contexts), never on free text.

/// Shannon entropy in bits per byte.
pub fn shannon(v: &[u8]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &c in v {
        counts[c as usize] += 1;
    }
    let n = v.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Values that stand for a secret without being one: empty, `-`, `null`, `${VAR}`,
/// `$VAR`, `{{ x }}`, `<your key>`, `[PASSWORD]`, `%s`, `****`, `xxxx`, an existing mask.
pub fn is_placeholder(v: &[u8]) -> bool {
    let v = trim(v);
    if v.is_empty() {
        return true;
    }
    if super::marker::is_masked(v) {
        return true;
    }
    // Every word and prefix below is at most 16 bytes: only that much is lowercased.
    let mut prefix = [0u8; 16];
    let n = v.len().min(prefix.len());
    prefix[..n].copy_from_slice(&v[..n]);
    prefix[..n].make_ascii_lowercase();
    let lower = &prefix[..n];
    const WORDS: &[&[u8]] = &[
        b"-",
        b"null",
        b"nil",
        b"none",
        b"undefined",
        b"true",
        b"false",
        b"redacted",
        b"<redacted>",
        b"(redacted)",
        b"filtered",
        b"[filtered]",
        b"hidden",
        b"masked",
        b"secret",
        b"password",
        b"changeme",
        b"token",
        b"xxx",
        b"example",
        b"placeholder",
        b"your_token",
        b"your_api_key",
        b"your-api-key",
        b"<token>",
        b"pass",
        b"user:pass",
        b"test",
        b"dummy",
        b"sample",
        b"n/a",
        b"na",
        b"empty",
        b"default",
        b"string",
    ];
    if v.len() <= prefix.len() && WORDS.contains(&lower) {
        return true;
    }
    let first = v[0];
    let last = v[v.len() - 1];
    // Template and variable references.
    if (first == b'$' && v.len() > 1 && (v[1] == b'{' || v[1] == b'(' || v[1].is_ascii_alphabetic() || v[1] == b'_'))
        || v.starts_with(b"{{")
        || v.starts_with(b"%(")
        || v.starts_with(b"#{")
        || v.starts_with(b"@{")
        || (first == b'%' && v.len() <= 3)
        || (first == b'<' && last == b'>')
        || (first == b'[' && last == b']')
        || (first == b'{' && last == b'}')
        || (first == b'{' && v.len() < 64 && memchr::memchr(b'(', v).is_some())
    {
        return true;
    }
    for p in [&b"process.env"[..], b"env.", b"os.environ", b"os.getenv", b"getenv(", b"env(", b"secrets."] {
        if lower.starts_with(p) {
            return true;
        }
    }
    for p in [&b"your"[..], b"insert", b"replace", b"put_your", b"enter_", b"<your"] {
        if lower.starts_with(p) && v.len() < 48 && !looks_random(v) {
            return true;
        }
    }
    // `my-token`, `my_api_key` stand for one; `my-team-api-token-for-prod` is a team's real
    // static token, as secret as a generated one.
    for p in [&b"my-"[..], b"my_"] {
        if lower.starts_with(p) && v.len() < 20 && !looks_random(v) {
            return true;
        }
    }
    // Mostly one masking character (****, xxxx, 0000, ####, ....), or a run of one.
    mostly_mask(v) || has_mask_run(v)
}

/// Bytes that mask a value when repeated: `*`, `x`, `X`, `#`, `.`, `0`, `-`, `_`, `?`.
const MASKISH: [bool; 256] = crate::bytes::byte_set(b"*xX#.0-_?");

/// At least 70 % of `v` is masking characters. Stops once more than 30 % are not, so a
/// random value is given up on after about a third of it.
fn mostly_mask(v: &[u8]) -> bool {
    let mut other = 0;
    for &c in v {
        other += usize::from(!MASKISH[c as usize]);
        if other * 10 > v.len() * 3 {
            return false;
        }
    }
    true
}

/// Placeholder words that are also passwords people really set (`password`, `changeme`):
/// a stand-in in prose, the password in use when quoted after a password name.
pub fn is_weak_literal(v: &[u8]) -> bool {
    const WEAK: &[&[u8]] = &[b"password", b"passwd", b"secret", b"changeme", b"pass", b"test", b"admin", b"default"];
    WEAK.iter().any(|w| v.eq_ignore_ascii_case(w))
}

/// `XXXXXX`, `******`, `000000` (6 of a masking character) or any byte but a digit `1`–`9`
/// 12 times in a row. Base64 of binary data has runs of `A` shorter than that; numeric id
/// segments of a token (`xoxa-…-3111111111111-…`) say nothing about its secret part.
pub fn has_mask_run(v: &[u8]) -> bool {
    // Every run that counts is at least 6 long. One starting anywhere in `s..=s + 4` covers
    // both `s + 4` and `s + 5`: where those two differ, the next start to try is `s + 5`.
    let n = v.len();
    let mut s = 0;
    while s + 6 <= n {
        if v[s + 4] != v[s + 5] {
            s += 5;
            continue;
        }
        let c = v[s + 5];
        let mut a = s + 4;
        while a > 0 && v[a - 1] == c {
            a -= 1;
        }
        let mut b = s + 6;
        while b < n && v[b] == c {
            b += 1;
        }
        let run = b - a;
        if (MASKISH[c as usize] && run >= 6) || (run >= 12 && !matches!(c, b'1'..=b'9')) {
            return true;
        }
        // runs are maximal: the next one starts at `b` or later
        s = b;
    }
    false
}

/// A run of the same byte at least `n` long (`XXXXXX`, `000000`).
pub fn has_long_run(v: &[u8], n: usize) -> bool {
    let mut run = 1;
    for w in v.windows(2) {
        if w[0] == w[1] {
            run += 1;
            if run >= n {
                return true;
            }
        } else {
            run = 1;
        }
    }
    false
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(v.len());
    let e = v.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(s, |i| i + 1);
    &v[s..e]
}

/// Whether a value reads like a generated secret rather than words, numbers or a
/// sequence: long enough, mixed character classes, high entropy, not wordy.
pub fn looks_random(v: &[u8]) -> bool {
    let n = v.len();
    if !(8..=4096).contains(&n) {
        return false;
    }
    let (mut up, mut lo, mut dig, mut other) = (0usize, 0usize, 0usize, 0usize);
    for &c in v {
        match c {
            b'A'..=b'Z' => up += 1,
            b'a'..=b'z' => lo += 1,
            b'0'..=b'9' => dig += 1,
            b' ' => return false,
            _ => other += 1,
        }
    }
    let letters = up + lo;
    if letters == 0 {
        return false; // numbers, timestamps, version strings
    }
    if dig == 0 {
        // Letters only: random when cases are well mixed and it is long.
        if n < 16 || up * 4 < letters || lo * 4 < letters {
            return false;
        }
    } else if up == 0 && lo == 0 {
        return false;
    }
    if other * 3 > n {
        return false;
    }
    let threshold = if n >= 32 {
        3.2
    } else if n >= 16 {
        3.0
    } else {
        2.6
    };
    if shannon(v) < threshold {
        return false;
    }
    if sequential(v) || wordy(v) {
        return false;
    }
    // Generated secrets have a long unbroken alphanumeric run; code identifiers
    // (`kVK_Return.u16`, `X25519.KeyPair`) are short pieces joined by punctuation.
    let mut best = 0;
    let mut run = 0;
    for &c in v {
        if c.is_ascii_alphanumeric() {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    best >= 12.min(n * 2 / 3)
}

/// `abcdef…`, `0123…`: more than four fifths of neighbours are consecutive.
fn sequential(v: &[u8]) -> bool {
    let steps = v.windows(2).filter(|w| w[1] == w[0].wrapping_add(1)).count();
    steps * 5 > v.len() * 4
}

/// Mostly dictionary-like pieces (`jetbrains.mps.v8_elimination`, `SalesResults-1.2`):
/// camel-case pieces of ≥ 4 letters, lower or Capitalised, with vowels, cover ≥ 60 %.
pub fn wordy(v: &[u8]) -> bool {
    let alnum = v.iter().filter(|c| c.is_ascii_alphanumeric()).count();
    if alnum == 0 {
        return true;
    }
    let mut covered = 0usize;
    let mut i = 0;
    while i < v.len() {
        if !v[i].is_ascii_alphabetic() {
            i += 1;
            continue;
        }
        // One camel piece: optional capital then lowercase letters.
        let start = i;
        let mut j = i;
        if v[j].is_ascii_uppercase() {
            j += 1;
            // A run of capitals: a piece of its own (acronym), not counted.
            if j < v.len() && v[j].is_ascii_uppercase() {
                while j < v.len() && v[j].is_ascii_uppercase() {
                    j += 1;
                }
                i = j;
                continue;
            }
        }
        while j < v.len() && v[j].is_ascii_lowercase() {
            j += 1;
        }
        let piece = &v[start..j];
        if (4..=14).contains(&piece.len()) {
            let vowels = piece.iter().filter(|c| b"aeiouAEIOU".contains(c)).count();
            if vowels >= 1 && vowels * 5 <= piece.len() * 4 {
                covered += piece.len();
            }
        }
        i = j.max(start + 1);
    }
    covered * 10 >= alnum * 6
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The checks as first written, byte by byte: the faster ones must agree with them.
    fn has_mask_run_reference(v: &[u8]) -> bool {
        let mut run = 1;
        for w in v.windows(2) {
            if w[0] == w[1] {
                run += 1;
                let maskish = matches!(w[0], b'x' | b'X' | b'*' | b'#' | b'.' | b'0' | b'-' | b'_' | b'?');
                if (maskish && run >= 6) || (run >= 12 && !matches!(w[0], b'1'..=b'9')) {
                    return true;
                }
            } else {
                run = 1;
            }
        }
        false
    }

    fn mostly_mask_reference(v: &[u8]) -> bool {
        let maskish =
            v.iter().filter(|&&c| matches!(c, b'*' | b'x' | b'X' | b'#' | b'.' | b'0' | b'-' | b'_' | b'?')).count();
        maskish * 10 >= v.len() * 7
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        // A small alphabet, so runs of every length turn up.
        #[test]
        fn mask_checks_agree_with_the_byte_by_byte_ones(v in proptest::collection::vec(prop::sample::select(b"xX*0a1-.".to_vec()), 0..60)) {
            prop_assert_eq!(has_mask_run(&v), has_mask_run_reference(&v));
            prop_assert_eq!(mostly_mask(&v), mostly_mask_reference(&v));
        }

        #[test]
        fn mask_checks_agree_on_runs_in_any_bytes(v in proptest::collection::vec(0u8..4, 0..80), c in any::<u8>()) {
            let v: Vec<u8> = v.iter().map(|k| if *k == 0 { c } else { c.wrapping_add(*k) }).collect();
            prop_assert_eq!(has_mask_run(&v), has_mask_run_reference(&v));
            prop_assert_eq!(mostly_mask(&v), mostly_mask_reference(&v));
        }
    }

    #[test]
    fn entropy_of_known_strings() {
        assert_eq!(shannon(b"aaaa"), 0.0);
        assert!((shannon(b"ab") - 1.0).abs() < 1e-9);
    }

    #[test]
    fn placeholders() {
        for p in [
            "${DB_PASSWORD}",
            "$API_KEY",
            "{{ secret }}",
            "<YOUR_ACCOUNT_KEY>",
            "********",
            "xxxxxxxxxxxxxxx",
            "[PASSWORD]",
            "00000000",
            "null",
            "-",
            "",
            "[REDACTED]",
            "process.env.TOKEN",
            "{base64(email:password)}",
        ] {
            assert!(is_placeholder(p.as_bytes()), "{p}");
        }
        for s in ["hunter2!", "Zf3D0LXCM3EIMbgJpUNnkRtOfOueHznB", "12345678-ABCD-4BCD-9BCD-1234567890AB"] {
            assert!(!is_placeholder(s.as_bytes()), "{s}");
        }
    }

    #[test]
    fn randomness() {
        for s in [
            "Zf3D0LXCM3EIMbgJpUNnkRtOfOueHznB",
            "34cebc81c056a21bc66e212f947d73ec",
            "s2s1gfcuatgbi61n8h5s",
            "jCBaQngSHiHDRYOcsMcifUcysGyaiybUWz",
            "df490bc6-ef6e-4f6a-99a0-b03d26cb56f9",
        ] {
            assert!(looks_random(s.as_bytes()), "{s}");
        }
        for s in [
            "jetbrains.mps.v8_elimination",
            "SalesResults-1.2",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            "1700000000000",
            "X25519.KeyPair",
            "kVK_Return.u16",
            "struct_X509_pubkey_st",
            "DOC_Vector_5_32",
            "APIOrganizationExist",
            "executed",
            "2024-05-01T10:10:00Z",
        ] {
            assert!(!looks_random(s.as_bytes()), "{s}");
        }
    }
}
