//! Byte-level work every record goes through: its line, its UTF-8 check, and literals looked
//! for in it.

pub mod literals;

pub use literals::LiteralSet;

/// `bytes` as a `str` if it is UTF-8, as [`std::str::from_utf8`] answers, checked with SIMD
/// (simdutf8): on log lines, which are nearly all ASCII, several times faster.
#[inline]
pub fn utf8(bytes: &[u8]) -> Option<&str> {
    simdutf8::basic::from_utf8(bytes).ok()
}

/// A lookup table: which bytes are in `set` (a `const`, built at compile time).
pub const fn byte_set(set: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < set.len() {
        t[set[i] as usize] = true;
        i += 1;
    }
    t
}

/// Which of the first 16 bytes of `hay` are `a` or `b` (bit k for byte k), compared at once
/// (SSE2 on x86-64, by `wide`); `None` when `hay` is shorter than 16 bytes.
#[inline(always)]
pub fn mask16(a: u8, b: u8, hay: &[u8]) -> Option<u32> {
    use wide::u8x16;
    let block: [u8; 16] = hay.get(..16)?.try_into().ok()?;
    let v = u8x16::new(block);
    Some((v.simd_eq(u8x16::splat(a)) | v.simd_eq(u8x16::splat(b))).to_bitmask())
}

/// The first `a` or `b` in `hay`, as `memchr::memchr2` finds it. Most of what is searched
/// is short (a JSON string, a quoted NGINX field), where `memchr2`'s set-up is most of its
/// cost: the first 32 bytes are checked here 16 at a time ([`mask16`]), and only what is
/// longer goes to `memchr2`.
#[inline]
pub fn find2(a: u8, b: u8, hay: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at < 32 {
        let Some(m) = mask16(a, b, &hay[at..]) else {
            // fewer than 16 bytes left
            return hay[at..].iter().position(|&c| c == a || c == b).map(|i| at + i);
        };
        if m != 0 {
            return Some(at + m.trailing_zeros() as usize);
        }
        at += 16;
    }
    memchr::memchr2(a, b, &hay[at..]).map(|i| at + i)
}

/// `text.split(|&b| b == b'\n')`, each newline found by `memchr` (SIMD) rather than by a
/// comparison per byte: a reading thread splits every chunk of a replay into lines.
pub fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memchr(b'\n', r) {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn lines_are_what_split_gives(text in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'a'), any::<u8>()], 0..300)) {
            let ours: Vec<&[u8]> = super::lines(&text).collect();
            let split: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
            prop_assert_eq!(ours, split);
        }
    }

    proptest! {
        #[test]
        fn find2_finds_what_memchr2_finds(
            hay in proptest::collection::vec(prop_oneof![Just(b'"'), Just(b'\\'), Just(b'a'), any::<u8>()], 0..120),
            skip in 0usize..100,
        ) {
            // mostly-plain haystacks of every length, so the match falls in each 16-byte block
            let hay: Vec<u8> = hay.iter().enumerate().map(|(i, &c)| if i < skip { b'x' } else { c }).collect();
            prop_assert_eq!(super::find2(b'"', b'\\', &hay), memchr::memchr2(b'"', b'\\', &hay));
            let first = memchr::memchr2(b'"', b'\\', &hay[..hay.len().min(16)]);
            let mask = super::mask16(b'"', b'\\', &hay);
            prop_assert_eq!(mask.is_some(), hay.len() >= 16);
            if let Some(m) = mask {
                prop_assert_eq!((m != 0).then(|| m.trailing_zeros() as usize), first);
                prop_assert_eq!(m.count_ones() as usize, hay[..16].iter().filter(|&&c| c == b'"' || c == b'\\').count());
            }
        }
    }

    proptest! {
        #[test]
        fn utf8_answers_as_the_standard_library(bytes in proptest::collection::vec(any::<u8>(), 0..200), cut in 0usize..200) {
            prop_assert_eq!(super::utf8(&bytes), std::str::from_utf8(&bytes).ok());
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let cut = cut.min(text.len());
            prop_assert_eq!(super::utf8(&text.as_bytes()[cut..]), std::str::from_utf8(&text.as_bytes()[cut..]).ok());
        }
    }
}
