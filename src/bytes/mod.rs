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
        fn utf8_answers_as_the_standard_library(bytes in proptest::collection::vec(any::<u8>(), 0..200), cut in 0usize..200) {
            prop_assert_eq!(super::utf8(&bytes), std::str::from_utf8(&bytes).ok());
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let cut = cut.min(text.len());
            prop_assert_eq!(super::utf8(&text.as_bytes()[cut..]), std::str::from_utf8(&text.as_bytes()[cut..]).ok());
        }
    }
}
