//! Byte-level work every record goes through: its UTF-8 check, and literals looked for in it.

pub mod literals;

pub use literals::LiteralSet;

/// `bytes` as a `str` if it is UTF-8, as [`std::str::from_utf8`] answers, checked with SIMD
/// (simdutf8): on log lines, which are nearly all ASCII, several times faster.
#[inline]
pub fn utf8(bytes: &[u8]) -> Option<&str> {
    simdutf8::basic::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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
