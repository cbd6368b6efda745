//! The entropy-coded data: Huffman tables and the bit reader.

use super::err;
use crate::ImagingError;

/// A Huffman table as lookups by code length.
#[derive(Clone, Default)]
pub(crate) struct Huffman {
    /// For each length 1..=16: the largest code of that length (or -1).
    max_code: [i32; 18],
    /// For each length: the index into `values` of its first code, minus that code.
    offset: [i32; 17],
    values: Vec<u8>,
    /// Codes of up to 9 bits: (length, value) by the next 9 bits.
    fast: Vec<(u8, u8)>,
}

const FAST_BITS: u32 = 9;

impl Huffman {
    pub(crate) fn new(counts: &[u8; 16], values: Vec<u8>) -> Result<Huffman, ImagingError> {
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        if total != values.len() || total > 256 {
            return Err(err("huffman table: its counts do not match its values"));
        }
        let mut h = Huffman {
            max_code: [-1; 18],
            offset: [0; 17],
            values,
            fast: vec![(0, 0); 1 << FAST_BITS],
        };
        let mut code: i32 = 0;
        let mut k: i32 = 0;
        for len in 1..=16usize {
            let n = counts[len - 1] as i32;
            h.offset[len] = k - code;
            if code + n > 1 << len {
                return Err(err("huffman table: more codes than its lengths allow"));
            }
            if n > 0 {
                for i in 0..n {
                    let c = code + i;
                    if len as u32 <= FAST_BITS {
                        let shift = FAST_BITS - len as u32;
                        let start = (c as usize) << shift;
                        for slot in &mut h.fast[start..start + (1 << shift)] {
                            *slot = (len as u8, h.values[(k + i) as usize]);
                        }
                    }
                }
                code += n;
                k += n;
                h.max_code[len] = code - 1;
            }
            code <<= 1;
        }
        h.max_code[17] = i32::MAX;
        Ok(h)
    }
}

/// Reads the entropy-coded bits of a scan; a marker ends them (zeros follow,
/// as libjpeg feeds them).
pub(crate) struct Bits<'a> {
    data: &'a [u8],
    pub(super) pos: usize,
    acc: u64,
    count: u32,
    /// A marker was met: no more bytes are read until the next restart.
    marker: bool,
}

impl<'a> Bits<'a> {
    pub(crate) fn new(data: &'a [u8], pos: usize) -> Bits<'a> {
        Bits {
            data,
            pos,
            acc: 0,
            count: 0,
            marker: false,
        }
    }

    fn fill(&mut self) {
        while self.count <= 56 {
            let mut byte = 0u8;
            if !self.marker {
                match self.data.get(self.pos) {
                    Some(&0xFF) => match self.data.get(self.pos + 1) {
                        Some(0x00) => {
                            byte = 0xFF;
                            self.pos += 2;
                        }
                        _ => self.marker = true,
                    },
                    Some(&b) => {
                        byte = b;
                        self.pos += 1;
                    }
                    None => self.marker = true,
                }
            }
            self.acc |= u64::from(byte) << (56 - self.count);
            self.count += 8;
        }
    }

    pub(crate) fn bits(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        if self.count < n {
            self.fill();
        }
        let v = (self.acc >> (64 - n)) as u32;
        self.acc <<= n;
        self.count -= n;
        v
    }

    pub(crate) fn bit(&mut self) -> u32 {
        self.bits(1)
    }

    /// `n` bits as a signed value (the standard's EXTEND).
    pub(crate) fn receive_extend(&mut self, n: u32) -> i32 {
        if n == 0 {
            return 0;
        }
        if n > 16 {
            return 0;
        }
        let v = self.bits(n) as i32;
        if v < 1 << (n - 1) {
            v - (1 << n) + 1
        } else {
            v
        }
    }

    pub(crate) fn decode(&mut self, h: &Huffman) -> Result<u8, ImagingError> {
        if self.count < 16 {
            self.fill();
        }
        let peek = (self.acc >> (64 - FAST_BITS)) as usize;
        let (len, value) = h.fast[peek];
        if len > 0 {
            self.acc <<= len;
            self.count -= u32::from(len);
            return Ok(value);
        }
        let mut code = 0i32;
        for len in 1..=16usize {
            code = (code << 1) | self.bit() as i32;
            if code <= h.max_code[len] {
                let i = (code + h.offset[len]) as usize;
                return h
                    .values
                    .get(i)
                    .copied()
                    .ok_or_else(|| err("corrupt huffman code"));
            }
        }
        Err(err("corrupt huffman code (longer than 16 bits)"))
    }

    /// Skips to the restart marker that should come next and past it.
    pub(crate) fn restart(&mut self, expected: u8) -> Result<(), ImagingError> {
        self.acc = 0;
        self.count = 0;
        self.marker = false;
        // Padding bits were dropped with the accumulator; find the marker.
        while self.pos + 1 < self.data.len()
            && !(self.data[self.pos] == 0xFF && (0xD0..=0xD7).contains(&self.data[self.pos + 1]))
        {
            if self.data[self.pos] == 0xFF && self.data[self.pos + 1] != 0 {
                break;
            }
            self.pos += 1;
        }
        match self.data.get(self.pos..self.pos + 2) {
            Some([0xFF, m]) if *m == 0xD0 + expected => {
                self.pos += 2;
                Ok(())
            }
            _ => Err(err(format!("restart marker RST{expected} is missing"))),
        }
    }
}
