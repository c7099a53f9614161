//! Argon2 (RFC 9106) computed on 128-bit lanes, so that inside a component
//! it runs on WebAssembly SIMD.
//!
//! The `argon2` crate's compression function works on 64-bit words. In a
//! component, Cranelift spills that code's sixteen live words and the copies
//! of whole blocks become `memory.copy` calls into the host, so a hash took
//! about 1.7x its native time. Here a block is 64 pairs of words ([`Lanes`]):
//! one BLAKE2 round keeps eight pairs in vector registers, and no block is ever
//! copied whole (the input of the compression is read again at the end
//! instead of being saved).
//!
//! [`Lanes`] is `v128` when the build has `simd128` (route components,
//! `.cargo/config.toml`) and a pair of `u64` otherwise, so the same algorithm
//! is tested natively and under wasmtime. The `argon2` crate still parses and
//! formats PHC strings and is the reference the tests compare against.

use argon2::{Algorithm, Version};
use blake2::digest::{Digest, Update, VariableOutput};
use blake2::{Blake2b512, Blake2bVar};

/// Words in a block.
const BLOCK_WORDS: usize = 128;
/// Pairs of words in a block.
const BLOCK_LANES: usize = BLOCK_WORDS / 2;
/// Bytes in a block.
const BLOCK_BYTES: usize = BLOCK_WORDS * 8;
/// Segments per pass of a lane (RFC 9106 "slices").
const SYNC_POINTS: usize = 4;
/// Pseudo-random indices one address block yields.
const ADDRESSES_PER_BLOCK: usize = BLOCK_WORDS;

/// Inputs of one Argon2 computation, as RFC 9106 section 3.1 names them.
pub(super) struct Inputs<'a> {
    pub algorithm: Algorithm,
    pub version: Version,
    /// Memory size `m` in KiB (blocks).
    pub memory_kib: u32,
    /// Passes `t`.
    pub passes: u32,
    /// Parallelism `p` (lanes of memory; computed here one after another).
    pub lanes: u32,
    pub password: &'a [u8],
    pub salt: &'a [u8],
    /// Secret value `K` (Latch uses none; the RFC vectors do).
    pub secret: &'a [u8],
    /// Associated data `X` (a PHC string's `data=`).
    pub associated_data: &'a [u8],
}

/// Why a computation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum Argon2Error {
    /// Parameters outside RFC 9106's ranges.
    #[error("argon2 parameters out of range")]
    Params,
}

/// Fills `out` with the Argon2 tag of `inputs` (its length is the tag length
/// `T`, at least 4 bytes).
pub(super) fn hash_into(inputs: &Inputs<'_>, out: &mut [u8]) -> Result<(), Argon2Error> {
    let lanes = inputs.lanes as usize;
    if lanes == 0
        || inputs.passes == 0
        || out.len() < 4
        || u32::try_from(out.len()).is_err()
        || (inputs.memory_kib as usize) < 8 * lanes
    {
        return Err(Argon2Error::Params);
    }
    // m' = 4p * floor(m / 4p): whole segments in every lane.
    let lane_length = (inputs.memory_kib as usize / (SYNC_POINTS * lanes)) * SYNC_POINTS;
    let segment_length = lane_length / SYNC_POINTS;
    let mut memory = vec![Block::ZERO; lane_length * lanes];

    let h0 = initial_hash(inputs, out.len());
    for lane in 0..lanes {
        for column in 0..2u32 {
            let mut seed = [0u8; 72];
            seed[..64].copy_from_slice(&h0);
            seed[64..68].copy_from_slice(&column.to_le_bytes());
            seed[68..].copy_from_slice(&(lane as u32).to_le_bytes());
            let mut bytes = [0u8; BLOCK_BYTES];
            variable_hash(&[&seed], &mut bytes);
            memory[lane * lane_length + column as usize] = Block::from_bytes(&bytes);
        }
    }

    let shape = Shape {
        algorithm: inputs.algorithm,
        version: inputs.version,
        lanes,
        lane_length,
        segment_length,
        total_blocks: (lane_length * lanes) as u64,
        passes: u64::from(inputs.passes),
    };
    for pass in 0..inputs.passes as usize {
        for slice in 0..SYNC_POINTS {
            for lane in 0..lanes {
                shape.fill_segment(&mut memory, pass, slice, lane)?;
            }
        }
    }

    let mut last = Block::ZERO;
    for lane in 0..lanes {
        last.xor_assign(&memory[lane * lane_length + lane_length - 1]);
    }
    variable_hash(&[&last.to_bytes()], out);
    Ok(())
}

/// H0 (RFC 9106 section 3.2, step 1).
fn initial_hash(inputs: &Inputs<'_>, tag_len: usize) -> [u8; 64] {
    let mut h = Blake2b512::new();
    for word in [
        inputs.lanes,
        tag_len as u32,
        inputs.memory_kib,
        inputs.passes,
        inputs.version as u32,
        inputs.algorithm as u32,
    ] {
        Digest::update(&mut h, word.to_le_bytes());
    }
    for field in [
        inputs.password,
        inputs.salt,
        inputs.secret,
        inputs.associated_data,
    ] {
        // Lengths fit: the callers bound every field far below 4 GiB.
        Digest::update(&mut h, (field.len() as u32).to_le_bytes());
        Digest::update(&mut h, field);
    }
    h.finalize().into()
}

/// H' (RFC 9106 section 3.3): BLAKE2b stretched to `out.len()` bytes.
fn variable_hash(input: &[&[u8]], out: &mut [u8]) {
    let len_prefix = (out.len() as u32).to_le_bytes();
    if out.len() <= 64 {
        // Cannot fail: 1..=64 is BLAKE2b's output range, and `out` has that length.
        if let Ok(mut h) = Blake2bVar::new(out.len()) {
            h.update(&len_prefix);
            for part in input {
                h.update(part);
            }
            let _ = h.finalize_variable(out);
        }
        return;
    }
    let mut h = Blake2b512::new();
    Digest::update(&mut h, len_prefix);
    for part in input {
        Digest::update(&mut h, part);
    }
    let mut v: [u8; 64] = h.finalize().into();
    out[..32].copy_from_slice(&v[..32]);
    let mut written = 32;
    while out.len() - written > 64 {
        v = Blake2b512::digest(v).into();
        out[written..written + 32].copy_from_slice(&v[..32]);
        written += 32;
    }
    let rest = out.len() - written;
    if let Ok(mut h) = Blake2bVar::new(rest) {
        h.update(&v);
        let _ = h.finalize_variable(&mut out[written..]);
    }
}

/// What every segment needs to know about the memory.
struct Shape {
    algorithm: Algorithm,
    version: Version,
    lanes: usize,
    lane_length: usize,
    segment_length: usize,
    total_blocks: u64,
    passes: u64,
}

impl Shape {
    /// Computes one segment (RFC 9106 section 3.4).
    fn fill_segment(
        &self,
        memory: &mut [Block],
        pass: usize,
        slice: usize,
        lane: usize,
    ) -> Result<(), Argon2Error> {
        let data_independent = match self.algorithm {
            Algorithm::Argon2i => true,
            Algorithm::Argon2id => pass == 0 && slice < SYNC_POINTS / 2,
            Algorithm::Argon2d => false,
        };
        let mut addresses = Block::ZERO;
        let mut address_input = Block::ZERO;
        if data_independent {
            address_input.set_words(&[
                pass as u64,
                lane as u64,
                slice as u64,
                self.total_blocks,
                self.passes,
                self.algorithm as u64,
            ]);
        }
        let first = if pass == 0 && slice == 0 { 2 } else { 0 };
        if data_independent && first != 0 {
            next_addresses(&mut address_input, &mut addresses);
        }
        let lane_start = lane * self.lane_length;
        for index in first..self.segment_length {
            let column = slice * self.segment_length + index;
            let current = lane_start + column;
            let previous = if column == 0 {
                lane_start + self.lane_length - 1
            } else {
                current - 1
            };
            let pseudo_random = if data_independent {
                if index % ADDRESSES_PER_BLOCK == 0 {
                    next_addresses(&mut address_input, &mut addresses);
                }
                addresses.word(index % ADDRESSES_PER_BLOCK)
            } else {
                memory[previous].word(0)
            };
            let reference_lane = if pass == 0 && slice == 0 {
                lane
            } else {
                ((pseudo_random >> 32) % self.lanes as u64) as usize
            };
            let reference = reference_lane * self.lane_length
                + self.reference_column(
                    pass,
                    slice,
                    index,
                    pseudo_random & 0xffff_ffff,
                    reference_lane == lane,
                );
            let xor_old = pass > 0 && self.version == Version::V0x13;
            let [previous, reference, current] = memory
                .get_disjoint_mut([previous, reference, current])
                .map_err(|_| Argon2Error::Params)?;
            compress(previous, reference, current, xor_old);
        }
        Ok(())
    }

    /// The column of the reference block within its lane (RFC 9106 section
    /// 3.4.1.2, the reference implementation's `index_alpha`).
    fn reference_column(
        &self,
        pass: usize,
        slice: usize,
        index: usize,
        j1: u64,
        same_lane: bool,
    ) -> usize {
        let (segment, lane_length) = (self.segment_length as u64, self.lane_length as u64);
        let (slice_u, index_u) = (slice as u64, index as u64);
        let area = if pass == 0 {
            if slice == 0 || same_lane {
                slice_u * segment + index_u - 1
            } else {
                slice_u * segment - u64::from(index == 0)
            }
        } else if same_lane {
            lane_length - segment + index_u - 1
        } else {
            lane_length - segment - u64::from(index == 0)
        };
        let x = (j1 * j1) >> 32;
        let relative = area - 1 - ((area * x) >> 32);
        let start = if pass == 0 || slice == SYNC_POINTS - 1 {
            0
        } else {
            (slice_u + 1) * segment
        };
        ((start + relative) % lane_length) as usize
    }
}

/// The next block of pseudo-random indices for data-independent addressing:
/// G(0, G(0, input)) with the input's counter advanced.
fn next_addresses(input: &mut Block, addresses: &mut Block) {
    input.increment_counter();
    let mut first = Block::ZERO;
    compress(&Block::ZERO, input, &mut first, false);
    compress(&Block::ZERO, &first, addresses, false);
}

/// The compression function G (RFC 9106 section 3.5):
/// `out = P(x ^ y) ^ (x ^ y)`, also `^ out` when `xor_old` (passes after the
/// first, version 0x13). `P` is eight BLAKE2 rounds over rows of sixteen
/// words, then eight over columns.
fn compress(x: &Block, y: &Block, out: &mut Block, xor_old: bool) {
    let mut r: [Lanes; BLOCK_LANES] = core::array::from_fn(|k| x.0[k].xor(y.0[k]));
    for row in 0..8 {
        let base = 8 * row;
        let mut v: [Lanes; 8] = core::array::from_fn(|k| r[base + k]);
        blake2_round(&mut v);
        r[base..base + 8].copy_from_slice(&v);
    }
    for column in 0..8 {
        let mut v: [Lanes; 8] = core::array::from_fn(|k| r[column + 8 * k]);
        blake2_round(&mut v);
        for (k, lanes) in v.into_iter().enumerate() {
            r[column + 8 * k] = lanes;
        }
    }
    // `x ^ y` is read again rather than kept: no 1 KiB copy per block.
    for (k, (mixed, old)) in r.iter().zip(out.0.iter_mut()).enumerate() {
        let fresh = mixed.xor(x.0[k]).xor(y.0[k]);
        *old = if xor_old { fresh.xor(*old) } else { fresh };
    }
}

/// One BLAKE2b round without message words, on sixteen words held as eight
/// pairs: `v = [(v0,v1), (v2,v3), (v4,v5), ..., (v14,v15)]`.
#[inline(always)]
fn blake2_round(v: &mut [Lanes; 8]) {
    let [a0, a1, b0, b1, c0, c1, d0, d1] = *v;
    // Columns: G(v0,v4,v8,v12) and G(v1,v5,v9,v13) in the first pair of
    // each argument, G(v2,v6,v10,v14) and G(v3,v7,v11,v15) in the second.
    let [a, b, c, d] = mix([a0, a1], [b0, b1], [c0, c1], [d0, d1]);
    // Diagonals: G(v0,v5,v10,v15), G(v1,v6,v11,v12), G(v2,v7,v8,v13) and
    // G(v3,v4,v9,v14), after moving the pairs into place, then back.
    let [a, b, c, d] = mix(
        a,
        [b[0].cross(b[1]), b[1].cross(b[0])],
        [c[1], c[0]],
        [d[1].cross(d[0]), d[0].cross(d[1])],
    );
    *v = [
        a[0],
        a[1],
        b[1].cross(b[0]),
        b[0].cross(b[1]),
        c[1],
        c[0],
        d[0].cross(d[1]),
        d[1].cross(d[0]),
    ];
}

/// BLAKE2b's G with Argon2's multiplication (`GB` in RFC 9106 section 3.6)
/// on four independent columns: each argument is two pairs of lanes.
#[inline(always)]
fn mix(a: [Lanes; 2], b: [Lanes; 2], c: [Lanes; 2], d: [Lanes; 2]) -> [[Lanes; 2]; 4] {
    let xor = |x: [Lanes; 2], y: [Lanes; 2]| [x[0].xor(y[0]), x[1].xor(y[1])];
    let a = Lanes::blamka(a, b);
    let d = xor(d, a).map(Lanes::rotate_right_32);
    let c = Lanes::blamka(c, d);
    let b = xor(b, c).map(Lanes::rotate_right_24);
    let a = Lanes::blamka(a, b);
    let d = xor(d, a).map(Lanes::rotate_right_16);
    let c = Lanes::blamka(c, d);
    let b = xor(b, c).map(Lanes::rotate_right_63);
    [a, b, c, d]
}

/// One 1 KiB block of Argon2's memory.
#[derive(Clone, Copy)]
#[repr(align(64))]
struct Block([Lanes; BLOCK_LANES]);

impl Block {
    const ZERO: Block = Block([Lanes::ZERO; BLOCK_LANES]);

    fn from_bytes(bytes: &[u8; BLOCK_BYTES]) -> Block {
        let word = |i: usize| {
            let mut le = [0u8; 8];
            le.copy_from_slice(&bytes[8 * i..8 * i + 8]);
            u64::from_le_bytes(le)
        };
        Block(core::array::from_fn(|k| {
            Lanes::new(word(2 * k), word(2 * k + 1))
        }))
    }

    fn to_bytes(self) -> [u8; BLOCK_BYTES] {
        let mut bytes = [0u8; BLOCK_BYTES];
        for (k, lanes) in self.0.iter().enumerate() {
            let [low, high] = lanes.words();
            bytes[16 * k..16 * k + 8].copy_from_slice(&low.to_le_bytes());
            bytes[16 * k + 8..16 * k + 16].copy_from_slice(&high.to_le_bytes());
        }
        bytes
    }

    fn word(&self, i: usize) -> u64 {
        self.0[i / 2].words()[i % 2]
    }

    /// Sets the first words, two at a time (`words.len()` is even).
    fn set_words(&mut self, words: &[u64]) {
        for (k, pair) in words.chunks_exact(2).enumerate() {
            self.0[k] = Lanes::new(pair[0], pair[1]);
        }
    }

    /// Advances word 6, the counter of an address generator's input block.
    fn increment_counter(&mut self) {
        let [counter, other] = self.0[3].words();
        self.0[3] = Lanes::new(counter.wrapping_add(1), other);
    }

    fn xor_assign(&mut self, other: &Block) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0.iter()) {
            *mine = mine.xor(*theirs);
        }
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
use portable::Lanes;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use simd::Lanes;

/// Two 64-bit words in one `v128`.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use core::arch::wasm32::{
        i8x16_shuffle, i32x4_shuffle, i64x2_add, i64x2_shuffle, u64x2, u64x2_extmul_high_u32x4,
        u64x2_extmul_low_u32x4, u64x2_extract_lane, u64x2_shr, v128, v128_xor,
    };

    #[derive(Clone, Copy)]
    pub(super) struct Lanes(v128);

    impl Lanes {
        pub(super) const ZERO: Lanes = Lanes(u64x2(0, 0));

        #[inline(always)]
        pub(super) fn new(low: u64, high: u64) -> Lanes {
            Lanes(u64x2(low, high))
        }

        #[inline(always)]
        pub(super) fn words(self) -> [u64; 2] {
            [
                u64x2_extract_lane::<0>(self.0),
                u64x2_extract_lane::<1>(self.0),
            ]
        }

        #[inline(always)]
        pub(super) fn xor(self, other: Lanes) -> Lanes {
            Lanes(v128_xor(self.0, other.0))
        }

        /// `x + y + 2 * lo32(x) * lo32(y)` per lane, on two pairs of lanes.
        /// The low halves of both pairs are gathered into one vector, and
        /// the products are the widening multiplies of its low and high
        /// halves. (With one pair, LLVM rewrites the product as a masked
        /// `i64x2.mul`, which Cranelift lowers to three multiplies.)
        #[inline(always)]
        pub(super) fn blamka(x: [Lanes; 2], y: [Lanes; 2]) -> [Lanes; 2] {
            let x_low = i32x4_shuffle::<0, 2, 4, 6>(x[0].0, x[1].0);
            let y_low = i32x4_shuffle::<0, 2, 4, 6>(y[0].0, y[1].0);
            let products = [
                u64x2_extmul_low_u32x4(x_low, y_low),
                u64x2_extmul_high_u32x4(x_low, y_low),
            ];
            core::array::from_fn(|k| {
                Lanes(i64x2_add(
                    i64x2_add(x[k].0, y[k].0),
                    i64x2_add(products[k], products[k]),
                ))
            })
        }

        #[inline(always)]
        pub(super) fn rotate_right_32(self) -> Lanes {
            Lanes(i32x4_shuffle::<1, 0, 3, 2>(self.0, self.0))
        }

        #[inline(always)]
        pub(super) fn rotate_right_24(self) -> Lanes {
            Lanes(i8x16_shuffle::<
                3,
                4,
                5,
                6,
                7,
                0,
                1,
                2,
                11,
                12,
                13,
                14,
                15,
                8,
                9,
                10,
            >(self.0, self.0))
        }

        #[inline(always)]
        pub(super) fn rotate_right_16(self) -> Lanes {
            Lanes(i8x16_shuffle::<
                2,
                3,
                4,
                5,
                6,
                7,
                0,
                1,
                10,
                11,
                12,
                13,
                14,
                15,
                8,
                9,
            >(self.0, self.0))
        }

        /// `x + x` is `x << 1`, and it cannot carry into the bit shifted down.
        #[inline(always)]
        pub(super) fn rotate_right_63(self) -> Lanes {
            Lanes(v128_xor(u64x2_shr(self.0, 63), i64x2_add(self.0, self.0)))
        }

        /// `(self.high, other.low)`.
        #[inline(always)]
        pub(super) fn cross(self, other: Lanes) -> Lanes {
            Lanes(i64x2_shuffle::<1, 2>(self.0, other.0))
        }
    }
}

/// Two 64-bit words, for builds without WebAssembly SIMD (native tests).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod portable {
    #[derive(Clone, Copy)]
    pub(super) struct Lanes([u64; 2]);

    impl Lanes {
        pub(super) const ZERO: Lanes = Lanes([0, 0]);

        #[inline(always)]
        pub(super) fn new(low: u64, high: u64) -> Lanes {
            Lanes([low, high])
        }

        #[inline(always)]
        pub(super) fn words(self) -> [u64; 2] {
            self.0
        }

        #[inline(always)]
        fn map(self, other: Lanes, f: impl Fn(u64, u64) -> u64) -> Lanes {
            Lanes([f(self.0[0], other.0[0]), f(self.0[1], other.0[1])])
        }

        #[inline(always)]
        pub(super) fn xor(self, other: Lanes) -> Lanes {
            self.map(other, |x, y| x ^ y)
        }

        #[inline(always)]
        pub(super) fn blamka(x: [Lanes; 2], y: [Lanes; 2]) -> [Lanes; 2] {
            core::array::from_fn(|k| {
                x[k].map(y[k], |x, y| {
                    let product = (x & 0xffff_ffff) * (y & 0xffff_ffff);
                    x.wrapping_add(y).wrapping_add(product.wrapping_mul(2))
                })
            })
        }

        #[inline(always)]
        pub(super) fn rotate_right_32(self) -> Lanes {
            Lanes(self.0.map(|x| x.rotate_right(32)))
        }

        #[inline(always)]
        pub(super) fn rotate_right_24(self) -> Lanes {
            Lanes(self.0.map(|x| x.rotate_right(24)))
        }

        #[inline(always)]
        pub(super) fn rotate_right_16(self) -> Lanes {
            Lanes(self.0.map(|x| x.rotate_right(16)))
        }

        #[inline(always)]
        pub(super) fn rotate_right_63(self) -> Lanes {
            Lanes(self.0.map(|x| x.rotate_right(63)))
        }

        #[inline(always)]
        pub(super) fn cross(self, other: Lanes) -> Lanes {
            Lanes([self.0[1], other.0[0]])
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rfc_inputs(algorithm: Algorithm) -> Inputs<'static> {
        Inputs {
            algorithm,
            version: Version::V0x13,
            memory_kib: 32,
            passes: 3,
            lanes: 4,
            password: &[0x01; 32],
            salt: &[0x02; 16],
            secret: &[0x03; 8],
            associated_data: &[0x04; 12],
        }
    }

    fn tag_hex(inputs: &Inputs<'_>, len: usize) -> String {
        let mut out = vec![0u8; len];
        hash_into(inputs, &mut out).unwrap();
        hex::encode(out)
    }

    /// RFC 9106 section 5: the three test vectors.
    #[test]
    fn rfc_9106_test_vectors() {
        assert_eq!(
            tag_hex(&rfc_inputs(Algorithm::Argon2d), 32),
            "512b391b6f1162975371d30919734294f868e3be3984f3c1a13a4db9fabe4acb"
        );
        assert_eq!(
            tag_hex(&rfc_inputs(Algorithm::Argon2i), 32),
            "c814d9d1dc7f37aa13f0d77f2494bda1c8de6b016dd388d29952a4c4672b6ce8"
        );
        assert_eq!(
            tag_hex(&rfc_inputs(Algorithm::Argon2id), 32),
            "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"
        );
    }

    /// What the `argon2` crate computes for the same inputs.
    fn reference(inputs: &Inputs<'_>, len: usize) -> Vec<u8> {
        let mut params = argon2::ParamsBuilder::new();
        params
            .m_cost(inputs.memory_kib)
            .t_cost(inputs.passes)
            .p_cost(inputs.lanes)
            .output_len(len);
        if !inputs.associated_data.is_empty() {
            params.data(argon2::AssociatedData::new(inputs.associated_data).unwrap());
        }
        let params = params.build().unwrap();
        let hasher = if inputs.secret.is_empty() {
            argon2::Argon2::new(inputs.algorithm, inputs.version, params)
        } else {
            argon2::Argon2::new_with_secret(inputs.secret, inputs.algorithm, inputs.version, params)
                .unwrap()
        };
        let mut out = vec![0u8; len];
        hasher
            .hash_password_into(inputs.password, inputs.salt, &mut out)
            .unwrap();
        out
    }

    #[test]
    fn matches_the_argon2_crate_at_latchs_parameters() {
        let inputs = Inputs {
            algorithm: Algorithm::Argon2id,
            version: Version::V0x13,
            memory_kib: super::super::ARGON2_MEMORY_KIB,
            passes: super::super::ARGON2_ITERATIONS,
            lanes: super::super::ARGON2_PARALLELISM,
            password: b"correct horse battery",
            salt: b"0123456789abcdef",
            secret: &[],
            associated_data: &[],
        };
        let mut out = [0u8; 32];
        hash_into(&inputs, &mut out).unwrap();
        assert_eq!(out.to_vec(), reference(&inputs, 32));
    }

    #[test]
    fn long_tags_use_the_stretched_hash() {
        // Tags over 64 bytes go through H' with chained BLAKE2b blocks; the
        // lengths straddle its 32-byte steps.
        for len in [4, 63, 64, 65, 96, 97, 128, 129, 200] {
            let inputs = rfc_inputs(Algorithm::Argon2id);
            let inputs = Inputs {
                secret: &[],
                associated_data: &[],
                ..inputs
            };
            assert_eq!(
                tag_hex(&inputs, len),
                hex::encode(reference(&inputs, len)),
                "{len}"
            );
        }
    }

    #[test]
    fn out_of_range_parameters_are_refused() {
        let base = rfc_inputs(Algorithm::Argon2id);
        let mut out = [0u8; 32];
        for inputs in [
            Inputs {
                lanes: 0,
                ..rfc_inputs(Algorithm::Argon2id)
            },
            Inputs {
                passes: 0,
                ..rfc_inputs(Algorithm::Argon2id)
            },
            Inputs {
                memory_kib: 31,
                ..rfc_inputs(Algorithm::Argon2id)
            },
        ] {
            assert_eq!(hash_into(&inputs, &mut out), Err(Argon2Error::Params));
        }
        assert_eq!(hash_into(&base, &mut [0u8; 3]), Err(Argon2Error::Params));
    }

    fn algorithm() -> impl Strategy<Value = Algorithm> {
        prop_oneof![
            Just(Algorithm::Argon2d),
            Just(Algorithm::Argon2i),
            Just(Algorithm::Argon2id)
        ]
    }

    fn version() -> impl Strategy<Value = Version> {
        prop_oneof![Just(Version::V0x10), Just(Version::V0x13)]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Differential: any algorithm, version, memory, passes, lanes, tag
        /// length, password, salt, secret and associated data give the
        /// `argon2` crate's tag. Memory spans several address blocks (over
        /// 128 blocks per segment) and odd sizes that m' rounds down.
        #[test]
        fn matches_the_argon2_crate(
            algorithm in algorithm(),
            version in version(),
            lanes in 1u32..=4,
            extra_kib in 0u32..600,
            passes in 1u32..=3,
            len in 4usize..=80,
            password in proptest::collection::vec(any::<u8>(), 0..64),
            salt in proptest::collection::vec(any::<u8>(), 8..24),
            secret in proptest::collection::vec(any::<u8>(), 0..16),
            associated_data in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let inputs = Inputs {
                algorithm,
                version,
                memory_kib: 8 * lanes + extra_kib,
                passes,
                lanes,
                password: &password,
                salt: &salt,
                secret: &secret,
                associated_data: &associated_data,
            };
            let mut out = vec![0u8; len];
            hash_into(&inputs, &mut out).unwrap();
            let expected = reference(&inputs, len);
            prop_assert_eq!(hex::encode(out), hex::encode(expected));
        }
    }
}
