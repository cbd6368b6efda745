//! SHA-256 whose state can be stored between a blob's parts: the eight words
//! of the running state, the bytes hashed so far and the partial block left
//! over. An upload keeps it in its record, so the digest of every byte
//! received is known at the end without reading the assembled blob back, and
//! an upload resumed on another replica or after a restart goes on from it.

use serde::{Deserialize, Serialize};
use sha2::digest::generic_array::GenericArray;

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const INITIAL: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// A SHA-256 computation under way, as stored in an upload's record.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct HashState {
    state: [u32; 8],
    /// Bytes fed so far.
    len: u64,
    /// The bytes of the last, incomplete block (fewer than 64), in hex.
    tail: String,
}

impl Default for HashState {
    fn default() -> Self {
        HashState {
            state: INITIAL,
            len: 0,
            tail: String::new(),
        }
    }
}

/// Runs the compression function over whole 64-byte blocks.
fn compress(state: &mut [u32; 8], blocks: &[u8]) {
    debug_assert!(blocks.len().is_multiple_of(64));
    for block in blocks.chunks_exact(64) {
        sha2::compress256(state, std::slice::from_ref(GenericArray::from_slice(block)));
    }
}

impl HashState {
    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Feeds `data`. A stored tail that is not hex (a damaged record) fails.
    pub fn update(&mut self, data: &[u8]) -> Result<(), String> {
        let mut tail =
            hex::decode(&self.tail).map_err(|e| format!("hash state's tail is not hex: {e}"))?;
        if tail.len() >= 64 {
            return Err(format!("hash state's tail has {} bytes", tail.len()));
        }
        let mut rest = data;
        if !tail.is_empty() {
            let take = (64 - tail.len()).min(rest.len());
            tail.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if tail.len() == 64 {
                compress(&mut self.state, &tail);
                tail.clear();
            }
        }
        let whole = rest.len() / 64 * 64;
        compress(&mut self.state, &rest[..whole]);
        tail.extend_from_slice(&rest[whole..]);
        self.len += data.len() as u64;
        self.tail = hex::encode(tail);
        Ok(())
    }

    /// The digest of everything fed.
    pub fn finish(&self) -> Result<[u8; 32], String> {
        let mut state = self.state;
        let mut last =
            hex::decode(&self.tail).map_err(|e| format!("hash state's tail is not hex: {e}"))?;
        if last.len() >= 64 {
            return Err(format!("hash state's tail has {} bytes", last.len()));
        }
        // Padding: 0x80, zeros to 56 bytes mod 64, the length in bits (big-endian).
        last.push(0x80);
        while last.len() % 64 != 56 {
            last.push(0);
        }
        last.extend_from_slice(&(self.len.wrapping_mul(8)).to_be_bytes());
        compress(&mut state, &last);
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(state) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sha2::Digest as _;

    #[test]
    fn fed_in_any_pieces_and_through_its_record_it_gives_sha256() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 31 + i / 7) as u8).collect();
        for cuts in [
            vec![],
            vec![0],
            vec![1, 2, 3],
            vec![63, 64, 65],
            vec![55, 56, 119, 120],
            vec![100, 1000, 4999],
        ] {
            for end in [0usize, 1, 55, 56, 63, 64, 65, 4096, 5000] {
                let mut h = HashState::default();
                let mut at = 0;
                for &c in cuts.iter().filter(|&&c| c <= end) {
                    h.update(&data[at..c]).unwrap();
                    // As stored in a record and read back.
                    h = serde_json::from_slice(&serde_json::to_vec(&h).unwrap()).unwrap();
                    at = c;
                }
                h.update(&data[at..end]).unwrap();
                let want: [u8; 32] = sha2::Sha256::digest(&data[..end]).into();
                assert_eq!(h.finish().unwrap(), want, "cuts {cuts:?}, end {end}");
                assert_eq!(h.len(), end as u64);
            }
        }
    }

    #[test]
    fn a_damaged_tail_is_an_error_not_a_wrong_digest() {
        let mut h = HashState {
            tail: "zz".into(),
            ..Default::default()
        };
        assert!(h.update(b"x").unwrap_err().contains("not hex"));
        let h = HashState {
            tail: "00".repeat(64),
            ..Default::default()
        };
        assert!(h.finish().unwrap_err().contains("64 bytes"));
    }
}
