//! Hot loops compiled twice on x86-64: for the baseline (SSE2) and for AVX2,
//! the second chosen at run time when the processor has it. The loops are
//! plain Rust written so that the compiler vectorises them; the AVX2 copy
//! lets it use wide registers, 32-bit multiplies and byte shuffles (pixels of
//! three channels). Stages built for wasm32 have simd128 on, and the same
//! loops vectorise to it. The arithmetic is the same in every copy, so the
//! results are the same bytes.

/// Defines `fn name(args) body` as a function that runs an AVX2 build of
/// `body` when the processor has AVX2 and the baseline build otherwise.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident: $t:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        $vis fn $name($($a: $t),*) {
            #[inline(always)]
            fn imp($($a: $t),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2($($a: $t),*) {
                    imp($($a),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // The crate's one unsafe call: a function built for AVX2
                    // may only run where AVX2 is.
                    #[allow(unsafe_code)]
                    // SAFETY: the processor was just found to have AVX2.
                    return unsafe { avx2($($a),*) };
                }
            }
            imp($($a),*)
        }
    };
}
