//! 128-bit state keys hashed from the bytes that name an entity, so that a detector keys its
//! state without formatting or allocating anything per event. Not a secret hash: keys only
//! need to be apart, and 128 bits keep them apart for any number of keys a detector holds.

const OFFSET_A: u64 = 0xcbf2_9ce4_8422_2325;
const OFFSET_B: u64 = 0x6c62_272e_07bb_0142;
const PRIME: u64 = 0x100_0000_01b3;
/// Follows each part, so `["ab", "c"]` and `["a", "bc"]` are different keys.
const SEPARATOR: u8 = 0xff;

/// Two FNV-1a sums (different offsets, the second rotated at each step) over `parts`.
#[inline]
pub fn key128(parts: &[&[u8]]) -> u128 {
    let (mut a, mut b) = (OFFSET_A, OFFSET_B);
    let mut step = |x: u8| {
        a = (a ^ x as u64).wrapping_mul(PRIME);
        b = (b ^ x as u64).wrapping_mul(PRIME).rotate_left(5);
    };
    for part in parts {
        for &x in *part {
            step(x);
        }
        step(SEPARATOR);
    }
    ((a as u128) << 64) | b as u128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_kept_apart() {
        assert_ne!(key128(&[b"ab", b"c"]), key128(&[b"a", b"bc"]));
        assert_ne!(key128(&[b"t", b"x"]), key128(&[b"c", b"x"]));
        assert_eq!(key128(&[b"route", b"fp"]), key128(&[b"route", b"fp"]));
        let keys: std::collections::HashSet<u128> = (0..100_000u32).map(|i| key128(&[&i.to_le_bytes()])).collect();
        assert_eq!(keys.len(), 100_000);
    }
}
