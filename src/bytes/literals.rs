//! A few literals looked for in one pass over a text, where a `memmem` search per literal
//! would read the text once for each.
//!
//! The searcher is aho-corasick's packed (Teddy) one, which compares 16 or 32 bytes at a time
//! with SIMD shuffles. It needs SSSE3 (x86-64) or NEON (aarch64); elsewhere the same set is
//! searched with an Aho-Corasick automaton, slower but with the same answers.

use aho_corasick::{packed, AhoCorasick, Input};

/// At most 64 literals, none of which is a prefix of another.
pub struct LiteralSet {
    searcher: Searcher,
}

enum Searcher {
    Packed(packed::Searcher),
    Automaton(AhoCorasick),
}

impl LiteralSet {
    /// # Panics
    /// When there are more than 64 literals, an empty one, or one that is a prefix of another:
    /// the set is made of constants, so that is a bug, found by the first test that builds it.
    pub fn new(literals: &[&[u8]]) -> LiteralSet {
        assert!(literals.len() <= 64, "a literal set holds at most 64 literals");
        for (i, a) in literals.iter().enumerate() {
            assert!(!a.is_empty(), "an empty literal");
            for (j, b) in literals.iter().enumerate() {
                assert!(i == j || !b.starts_with(a), "a literal may not be a prefix of another");
            }
        }
        let searcher = match packed::Searcher::new(literals.iter()) {
            Some(s) => Searcher::Packed(s),
            None => Searcher::Automaton(AhoCorasick::new(literals).expect("a few short literals make an automaton")),
        };
        LiteralSet { searcher }
    }

    /// Where the first literal in `hay` starts, if any does.
    pub fn find(&self, hay: &[u8]) -> Option<usize> {
        match &self.searcher {
            Searcher::Packed(s) => s.find(hay).map(|m| m.start()),
            Searcher::Automaton(a) => a.find(hay).map(|m| m.start()),
        }
    }

    /// Which literals occur in `hay`, anywhere, overlapping or not: bit `i` for literal `i`.
    pub fn present(&self, hay: &[u8]) -> u64 {
        let mut found = 0u64;
        match &self.searcher {
            Searcher::Packed(s) => {
                // Each search starts one byte after the last match began. As no literal is a
                // prefix of another, no two of them start at the same byte, so none is missed.
                let mut at = 0;
                while let Some(m) = s.find_in(hay, aho_corasick::Span::from(at..hay.len())) {
                    found |= 1 << m.pattern().as_usize();
                    at = m.start() + 1;
                }
            }
            Searcher::Automaton(a) => {
                for m in a.find_overlapping_iter(Input::new(hay)) {
                    found |= 1 << m.pattern().as_usize();
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SET: &[&[u8]] = &[b"\"logEvents\"", b"\"records\"", b"\"log\"", b"ab", b"ba"];

    fn reference(hay: &[u8]) -> u64 {
        let mut found = 0;
        for (i, l) in SET.iter().enumerate() {
            if hay.windows(l.len()).any(|w| w == *l) {
                found |= 1 << i;
            }
        }
        found
    }

    /// The set as it is searched where the CPU has no packed searcher.
    fn automaton() -> LiteralSet {
        LiteralSet { searcher: Searcher::Automaton(AhoCorasick::new(SET).unwrap()) }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_packed_searcher_is_used_where_the_cpu_has_ssse3() {
        assert!(
            !std::is_x86_feature_detected!("ssse3") || matches!(LiteralSet::new(SET).searcher, Searcher::Packed(_))
        );
    }

    #[test]
    fn overlapping_literals_are_each_found() {
        for set in [LiteralSet::new(SET), automaton()] {
            overlapping_literals_are_each_found_by(&set);
        }
    }

    fn overlapping_literals_are_each_found_by(set: &LiteralSet) {
        assert_eq!(set.present(b"xxaba"), 0b11000);
        assert_eq!(set.present(b"{\"log\":1,\"records\":[]}"), 0b00110);
        assert_eq!(set.present(b"{\"logEvents\":[]}"), 0b00001);
        assert_eq!(set.present(b""), 0);
        assert_eq!(set.find(b"..\"log\""), Some(2));
        assert_eq!(set.find(b"nothing"), None);
    }

    #[test]
    #[should_panic(expected = "prefix")]
    fn a_literal_that_is_a_prefix_of_another_is_refused() {
        LiteralSet::new(&[b"\"log", b"\"logEvents\""]);
    }

    proptest! {
        #[test]
        fn present_is_a_substring_check_per_literal(
            parts in proptest::collection::vec(prop_oneof![
                Just(b"\"logEvents\"".to_vec()), Just(b"\"records\"".to_vec()), Just(b"\"log\"".to_vec()),
                Just(b"a".to_vec()), Just(b"b".to_vec()), Just(b"\"".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..40),
            ], 0..30)
        ) {
            let hay = parts.concat();
            let first = SET.iter().filter_map(|l| hay.windows(l.len()).position(|w| w == *l)).min();
            for set in [LiteralSet::new(SET), automaton()] {
                prop_assert_eq!(set.present(&hay), reference(&hay));
                prop_assert_eq!(set.find(&hay), first);
            }
        }
    }
}
