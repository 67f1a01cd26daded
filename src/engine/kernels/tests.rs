//! The kernels against candle, the scalar reference and each other, on every format and
//! instruction set.

mod matvec {
    use crate::engine::kernels::blocks::*;
    use crate::engine::kernels::matvec::*;
    use crate::engine::kernels::quant::*;
    use crate::engine::kernels::{Isa, isa};
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// A matrix quantized by candle (as GGUF files are), and its raw bytes.
    fn matrix(dtype: GgmlDType, rows: usize, cols: usize, seed: u64) -> QMatrix {
        let w = Tensor::from_vec(random(rows * cols, seed), (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let f = QFormat::of(dtype).unwrap();
        QMatrix::from_bytes(f, rows, cols, q.data().unwrap().to_vec()).unwrap()
    }

    /// Every format: dequantization agrees with candle's; the SIMD and scalar kernels agree
    /// exactly on the integer part (float rounding only); the product matches the dequantized
    /// weights times the dequantized activations.
    #[test]
    fn every_format_matches_candle_and_the_scalar_reference() {
        for (dtype, cols) in [
            (GgmlDType::Q4_0, 512),
            (GgmlDType::Q4_1, 544),
            (GgmlDType::Q2K, 512),
            (GgmlDType::Q3K, 768),
            (GgmlDType::F16, 96),
            (GgmlDType::BF16, 96),
            (GgmlDType::F32, 64),
            (GgmlDType::Q5_0, 576),
            (GgmlDType::Q5_1, 576),
            (GgmlDType::Q8_0, 512),
            (GgmlDType::Q4K, 512),
            (GgmlDType::Q5K, 768),
            (GgmlDType::Q6K, 768),
        ] {
            let rows = 37;
            let m = matrix(dtype, rows, cols, 7);
            let w = Tensor::from_vec(random(rows * cols, 7), (rows, cols), &Device::Cpu).unwrap();
            let theirs: Vec<f32> = QTensor::quantize(&w, dtype)
                .unwrap()
                .dequantize(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let ours = m.dequantize();
            for (a, b) in ours.iter().zip(&theirs) {
                assert!(
                    (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                    "{dtype:?}: {a} vs {b}"
                );
            }
            let x = random(2 * cols, 9);
            let mut y = vec![0f32; 2 * rows];
            m.matvec(&x, &mut y);
            for bi in 0..2 {
                let xv = &x[bi * cols..(bi + 1) * cols];
                let (acts, xd): (Acts, Vec<f32>) = match m.format {
                    f if f.is_float() => (Acts::F32(xv.to_vec()), xv.to_vec()),
                    QFormat::Q2K | QFormat::Q3K => {
                        let a = crate::engine::kernels::gemm::GemmActs::quantize(xv, cols);
                        (Acts::Q8(Vec::new()), a.dequantized())
                    }
                    QFormat::Q4_0
                    | QFormat::Q4_1
                    | QFormat::Q5_0
                    | QFormat::Q5_1
                    | QFormat::Q8_0 => {
                        let q = quantize_q8_1(xv);
                        let d = q
                            .iter()
                            .flat_map(|b| b.qs.iter().map(move |v| *v as f32 * b.d))
                            .collect();
                        (Acts::Q8(q), d)
                    }
                    _ => {
                        let q = quantize_q8_k(xv);
                        let d = q
                            .iter()
                            .flat_map(|b| b.qs.iter().map(move |v| *v as f32 * b.d))
                            .collect();
                        (Acts::Q8K(q), d)
                    }
                };
                for r in 0..rows {
                    let want: f32 = (0..cols).map(|c| ours[r * cols + c] * xd[c]).sum();
                    let got = y[bi * rows + r];
                    if !m.format.has_dot() {
                        continue;
                    }
                    let scalar = dot(m.format, &m.row(r), &acts, Isa::Scalar);
                    assert!(
                        (got - want).abs() < 2e-3 * (1.0 + want.abs()),
                        "{dtype:?} {bi},{r}: {got} vs {want}"
                    );
                    assert!(
                        (got - scalar).abs() <= 1e-4 * (1.0 + scalar.abs()),
                        "{dtype:?}: simd {got} vs scalar {scalar}"
                    );
                }
            }
        }
    }

    /// The four-row kernels (and Q8_0's row kernel) give the same bits with `vpdpbusd` as with
    /// AVX2 (the integer sums are exact and the float steps run in the same order), and the
    /// scalar reference's value.
    #[test]
    fn four_row_kernels_agree_across_instruction_sets() {
        let best = isa();
        if best < Isa::Avx2 {
            eprintln!("skipped: no AVX2 here");
            return;
        }
        for dtype in [
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::Q5_0,
            GgmlDType::Q5_1,
            GgmlDType::Q8_0,
        ] {
            let cols = 576;
            let four = has_dot4(QFormat::of(dtype).unwrap(), best);
            let mut m = matrix(dtype, 8, cols, 11);
            if dtype == GgmlDType::Q8_0 {
                // Codes -128 and 127 (a file may hold them; candle's quantizer never writes -128).
                let mut b = m.bytes().to_vec();
                b[2] = 0x80;
                b[3] = 0x7f;
                m = QMatrix::from_bytes(m.format, 8, cols, b).unwrap();
            }
            let mut xv = random(cols, 13);
            // Extremes: the largest activations quantize to +-127.
            xv[0] = 40.0;
            xv[1] = -40.0;
            let acts = Acts::Q8(quantize_q8_1(&xv));
            // A kernel's value for row `r` against the scalar reference (float rounding only).
            let near_scalar = |v: f32, r: usize| {
                let want = dot(m.format, &m.row(r), &acts, Isa::Scalar);
                assert!(
                    (v - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{dtype:?} row {r}: {v} vs scalar {want}"
                );
            };
            for r in [0, 4] {
                let rows = [m.row(r), m.row(r + 1), m.row(r + 2), m.row(r + 3)];
                let w = [&*rows[0], &*rows[1], &*rows[2], &*rows[3]];
                if !four {
                    // One row at a time (Q8_0): the AVX2 and VNNI row kernels.
                    for (k, row) in w.iter().enumerate() {
                        let avx2 = dot(m.format, row, &acts, Isa::Avx2);
                        near_scalar(avx2, r + k);
                        if best >= Isa::Avx512Vnni {
                            let vnni = dot(m.format, row, &acts, Isa::Avx512Vnni);
                            assert_eq!(avx2.to_bits(), vnni.to_bits(), "{dtype:?} row {}", r + k);
                        }
                    }
                    continue;
                }
                let avx2 = dot4(m.format, w, &acts, Isa::Avx2).unwrap();
                for (k, v) in avx2.iter().enumerate() {
                    near_scalar(*v, r + k);
                }
                if best >= Isa::Avx512Vnni {
                    let vnni = dot4(m.format, w, &acts, Isa::Avx512Vnni).unwrap();
                    assert_eq!(
                        avx2.map(f32::to_bits),
                        vnni.map(f32::to_bits),
                        "{dtype:?} rows {r}..: avx2 {avx2:?} vs vnni {vnni:?}"
                    );
                }
            }
        }
        if best < Isa::Avx512Vnni {
            eprintln!("the VNNI kernels were not run: this CPU lacks AVX-512 VNNI");
        }
    }

    /// A matrix interleaved eight rows at a time gives what the file's layout gives: the same
    /// rows, dequantized values and products (decode's eight-row kernel and prefill's tiles,
    /// float rounding only), on AVX2 and VNNI alike; row counts that are not a multiple of 8,
    /// and formats without the kernel, keep the file's layout.
    #[test]
    fn interleaved_matrices_give_what_the_files_layout_gives() {
        let best = isa();
        for dtype in [
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::Q5_0,
            GgmlDType::Q5_1,
            GgmlDType::Q8_0,
            GgmlDType::Q4K,
        ] {
            let (rows, cols) = (24, 768);
            let plain = matrix(dtype, rows, cols, 21);
            let inter = plain.clone().interleaved();
            let expect = has_dot8(plain.format, best);
            assert_eq!(inter.is_interleaved(), expect, "{dtype:?}");
            assert_eq!(
                inter.kernel_name(1).contains(" x8 "),
                expect,
                "{dtype:?}: {}",
                inter.kernel_name(1)
            );
            for r in 0..rows {
                assert_eq!(plain.row(r), inter.row(r), "{dtype:?} row {r}");
            }
            assert_eq!(plain.dequantize(), inter.dequantize(), "{dtype:?}");
            // Not a multiple of 8: left as it is.
            assert!(!matrix(dtype, 20, cols, 3).interleaved().is_interleaved());
            for batch in [1, 3, 5, 16] {
                let mut x = random(batch * cols, 23 + batch as u64);
                x[0] = 40.0;
                x[1] = -40.0;
                let (mut a, mut b) = (vec![0f32; batch * rows], vec![0f32; batch * rows]);
                plain.matvec(&x, &mut a);
                inter.matvec(&x, &mut b);
                for (i, (u, v)) in a.iter().zip(&b).enumerate() {
                    assert!(
                        (u - v).abs() <= 1e-4 * (1.0 + u.abs()),
                        "{dtype:?} batch {batch} value {i}: file layout {u}, interleaved {v}"
                    );
                }
            }
            if expect && best >= Isa::Avx512Vnni {
                let acts = Acts::Q8(quantize_q8_1(&random(cols, 5)));
                let group = &inter.bytes()[..inter.bytes().len() / (rows / 8)];
                let (a, v) = (
                    dot8_on(&inter, group, &acts, Isa::Avx2),
                    dot8_on(&inter, group, &acts, Isa::Avx512Vnni),
                );
                assert_eq!(a.map(f32::to_bits), v.map(f32::to_bits), "{dtype:?}");
            }
        }
        if best < Isa::Avx2 {
            eprintln!("no AVX2 here: nothing was interleaved");
        }
    }

    /// The word-at-a-time unpacking of a K block's scales and mins gives what the byte-wise
    /// reference gives, for every sub-block, on random and extreme bytes.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn k_scales_unpack_as_the_reference_does() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut cases: Vec<[u8; 12]> = vec![[0; 12], [0xFF; 12], [0xC0; 12], [0x3F; 12]];
        for _ in 0..2000 {
            cases.push(std::array::from_fn(|_| rng.random::<u8>()));
        }
        for p in cases {
            let (sc, mn) = crate::engine::kernels::x86::dot::k4_scales_mins(&p);
            for j in 0..8 {
                let (s, m) = crate::engine::kernels::blocks::scale_min_k4(j, &p);
                assert_eq!(((sc >> (8 * j)) & 0xFF) as u8, s, "{p:?} scale {j}");
                assert_eq!(((mn >> (8 * j)) & 0xFF) as u8, m, "{p:?} min {j}");
            }
        }
    }

    #[test]
    fn wrong_sizes_are_refused() {
        assert!(QMatrix::from_bytes(QFormat::Q4K, 2, 255, vec![]).is_err());
        assert!(QMatrix::from_bytes(QFormat::Q6K, 1, 256, vec![0; 209]).is_err());
        assert!(QMatrix::from_bytes(QFormat::Q6K, 1, 256, vec![0; 210]).is_ok());
    }
}

mod accuracy {
    use crate::engine::kernels::matvec::*;
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    /// Error against exact f32 math (dequantized weights x unquantized activations), ours and
    /// candle's quantized matmul, on the same blocks.
    #[test]
    fn error_is_no_larger_than_candles() {
        for dtype in [
            GgmlDType::Q5_1,
            GgmlDType::Q5_0,
            GgmlDType::Q5K,
            GgmlDType::Q6K,
            GgmlDType::Q4K,
        ] {
            let (rows, cols) = (256, 1536);
            let w = Tensor::randn(0f32, 1.0, (rows, cols), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let deq: Vec<f32> = q
                .dequantize(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let m = QMatrix::from_bytes(
                QFormat::of(dtype).unwrap(),
                rows,
                cols,
                q.data().unwrap().to_vec(),
            )
            .unwrap();
            let x: Vec<f32> = (0..cols)
                .map(|i| ((i as f32) * 0.37).sin() * (1.0 + (i % 7) as f32))
                .collect();
            let mut ours = vec![0f32; rows];
            m.matvec(&x, &mut ours);
            let xt = Tensor::from_vec(x.clone(), (1, cols), &Device::Cpu).unwrap();
            let theirs: Vec<f32> = QMatMul::from_qtensor(q)
                .unwrap()
                .forward(&xt)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let (mut eo, mut et, mut norm) = (0f64, 0f64, 0f64);
            for r in 0..rows {
                let exact: f64 = (0..cols)
                    .map(|c| deq[r * cols + c] as f64 * x[c] as f64)
                    .sum();
                eo += (ours[r] as f64 - exact).powi(2);
                et += (theirs[r] as f64 - exact).powi(2);
                norm += exact * exact;
            }
            let (eo, et) = ((eo / norm).sqrt(), (et / norm).sqrt());
            eprintln!("{dtype:?}: relative error ours {eo:.2e}, candle {et:.2e}");
            assert!(eo <= et * 1.5 + 1e-6, "{dtype:?}: {eo} vs {et}");
        }
    }
}

mod gemm {
    use crate::engine::kernels::Isa;
    use crate::engine::kernels::blocks::*;
    use crate::engine::kernels::gemm::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    fn bytes(dtype: GgmlDType, rows: usize, cols: usize, seed: u64) -> (Vec<u8>, Vec<f32>) {
        let w = Tensor::from_vec(random(rows * cols, seed), (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let deq = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        (q.data().unwrap().to_vec(), deq)
    }

    /// Every instruction set this CPU runs, the portable one first.
    fn isas() -> Vec<Isa> {
        [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni]
            .into_iter()
            .filter(|&i| i <= crate::engine::kernels::isa())
            .collect()
    }

    /// Every format, odd row and token counts (tile remainders): the SIMD tile equals the
    /// portable one up to float rounding, and both equal candle's dequantized weights times the
    /// quantized activations (dequantized).
    #[test]
    fn every_format_matches_the_dequantized_reference() {
        for dtype in [
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::Q5_0,
            GgmlDType::Q5_1,
            GgmlDType::Q8_0,
            GgmlDType::Q2K,
            GgmlDType::Q3K,
            GgmlDType::Q4K,
            GgmlDType::Q5K,
            GgmlDType::Q6K,
            GgmlDType::F16,
            GgmlDType::BF16,
            GgmlDType::F32,
        ] {
            let f = QFormat::of(dtype).unwrap();
            // 7 rows: a tile of 4 and one of 3 (float: 3, 3 and 1); 7 and 21 tokens: one
            // partial token block, and two pairs of blocks (the VNNI tile's) with a partial one
            // after them; 70 rows and 13 tokens: a block of AVX-512 float tiles and a short one,
            // split over the threads; 200 rows: a block of AVX2 float tiles (192 rows) and a
            // short one.
            for (rows, cols, tokens) in [(7, 512, 7), (7, 256, 21), (70, 256, 13), (200, 256, 9)] {
                let (b, deq) = bytes(dtype, rows, cols, 11);
                let x = random(tokens * cols, 12);
                let xd: Vec<f32> = if f.is_float() {
                    x.clone()
                } else {
                    GemmActs::quantize(&x, cols).dequantized()
                };
                for isa in isas() {
                    let mut y = vec![0f32; tokens * rows];
                    gemm_on(isa, f, &b, rows, cols, false, &x, &mut y);
                    for t in 0..tokens {
                        for r in 0..rows {
                            let want: f32 = (0..cols)
                                .map(|c| deq[r * cols + c] * xd[t * cols + c])
                                .sum();
                            let got = y[t * rows + r];
                            assert!(
                                (got - want).abs() < 2e-3 * (1.0 + want.abs()),
                                "{dtype:?} {isa:?} token {t} row {r}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The AVX2 row unpack gives the portable block unpack's codes, scales and offsets, bit
    /// for bit, on random bytes (every code and high-bit pattern).
    #[test]
    fn simd_row_unpack_equals_the_block_unpack() {
        if !crate::engine::kernels::simd() {
            return;
        }
        let mut rng = StdRng::seed_from_u64(9);
        for f in [
            QFormat::Q4_0,
            QFormat::Q4_1,
            QFormat::Q5_0,
            QFormat::Q5_1,
            QFormat::Q8_0,
        ] {
            let (cols, bb) = (256, f.block().1);
            let mut row: Vec<u8> = (0..cols / 32 * bb).map(|_| rng.random()).collect();
            for k in 0..cols / 32 {
                // Finite scales: 0x3c00 is 1.0 in f16, plus a random low mantissa.
                for at in [0, 2] {
                    row[k * bb + at] = rng.random();
                    row[k * bb + at + 1] = 0x3c;
                }
            }
            let (mut q, mut dl, mut ml) = (vec![0u8; cols], vec![0f32; 16], vec![0f32; 16]);
            // SAFETY: AVX2/F16C checked above; the lengths are those of one row.
            unsafe {
                crate::engine::kernels::x86::unpack::unpack_row32(
                    f, &row, bb, &mut q, &mut dl, &mut ml,
                )
            };
            // The same blocks spread out with other bytes between them (as in a matrix
            // interleaved eight rows at a time) unpack the same.
            let stride = bb + 7;
            let mut spread: Vec<u8> = (0..cols / 32 * stride).map(|_| rng.random()).collect();
            for k in 0..cols / 32 {
                spread[k * stride..k * stride + bb].copy_from_slice(&row[k * bb..(k + 1) * bb]);
            }
            spread.truncate((cols / 32 - 1) * stride + bb);
            let (mut qs, mut dls, mut mls) = (vec![0u8; cols], vec![0f32; 16], vec![0f32; 16]);
            // SAFETY: as above; the last block ends the buffer.
            unsafe {
                crate::engine::kernels::x86::unpack::unpack_row32(
                    f, &spread, stride, &mut qs, &mut dls, &mut mls,
                )
            };
            assert_eq!((&q, &dl, &ml), (&qs, &dls, &mls), "{f:?} strided");
            for k in 0..cols / 32 {
                let (mut q2, mut dl2, mut ml2) = ([0u8; 32], [0f32; 2], [0f32; 2]);
                unpack_block(f, &row[k * bb..(k + 1) * bb], &mut q2, &mut dl2, &mut ml2);
                assert_eq!(&q[32 * k..32 * k + 32], &q2, "{f:?} block {k}");
                assert_eq!(&dl[2 * k..2 * k + 2], &dl2, "{f:?} block {k}");
                assert_eq!(&ml[2 * k..2 * k + 2], &ml2, "{f:?} block {k}");
            }
        }
    }

    #[test]
    fn scalar_tile_equals_simd_tile() {
        for dtype in [
            GgmlDType::Q8_0,
            GgmlDType::Q3K,
            GgmlDType::Q6K,
            GgmlDType::Q4_1,
            GgmlDType::Q5K,
        ] {
            let f = QFormat::of(dtype).unwrap();
            let cols = 256;
            let (b, _) = bytes(dtype, 3, cols, 3);
            let a = GemmActs::quantize(&random(11 * cols, 4), cols);
            let mut s = Scratch::new(cols);
            let rb = cols / f.block().0 * f.block().1;
            for i in 0..3 {
                s.unpack(f, &b[i * rb..(i + 1) * rb], i, cols);
            }
            let simd = crate::engine::kernels::simd();
            for tb in 0..2 {
                let (mut p, mut q) = ([[0f32; TB]; TR], [[0f32; TB]; TR]);
                crate::engine::kernels::scalar::int_tile(
                    &s,
                    &a,
                    cols,
                    3,
                    tb,
                    f == QFormat::Q8_0,
                    &mut p,
                );
                int_tile(&s, &a, cols, 3, tb, kind(f), simd, &mut q);
                for (pr, qr) in p.iter().zip(&q).take(3) {
                    for (x, y) in pr.iter().zip(qr) {
                        assert!(
                            (x - y).abs() <= 1e-4 * (1.0 + x.abs()),
                            "{dtype:?}: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }
}

mod quant {
    use crate::engine::kernels::matvec::{QFormat, QMatrix};
    use crate::engine::kernels::quant::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    #[test]
    fn q4_1_quantization_round_trips_within_half_a_step() {
        let mut rng = StdRng::seed_from_u64(1);
        let w: Vec<f32> = (0..4 * 64)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let q = QMatrix::from_bytes(QFormat::Q4_1, 4, 64, quantize_q4_1(&w)).unwrap();
        for (a, b) in w.iter().zip(q.dequantize()) {
            assert!((a - b).abs() <= 2.0 / 15.0 / 2.0 + 1e-3, "{a} {b}");
        }
    }

    /// The AVX2 row quantizer writes the portable loop's bytes, scales and sums (ties and
    /// zero blocks included), for both block sizes.
    #[test]
    fn simd_row_quantizer_equals_the_portable_one() {
        let mut rng = StdRng::seed_from_u64(5);
        for per in [32, 256] {
            let mut x: Vec<f32> = (0..4 * 256)
                .map(|_| rng.random_range(-3.0f32..3.0))
                .collect();
            x[..per].fill(0.0);
            // Exact halves after scaling: amax 127 makes the scale 1.
            x[per] = 127.0;
            x[per + 1] = 2.5;
            x[per + 2] = -3.5;
            let n = x.len();
            let mut a = (vec![0f32; n / per], vec![0i8; n], vec![0i32; n / 16]);
            let mut b = a.clone();
            quantize_row_q8(&x, per, &mut a.0, &mut a.1, &mut a.2);
            quantize_row_q8_portable(&x, per, &mut b.0, &mut b.1, &mut b.2);
            assert_eq!(a, b, "per {per}");
            assert_eq!((b.1[per + 1], b.1[per + 2]), (2, -4));
            for (j, s) in b.2.iter().enumerate() {
                assert_eq!(
                    *s,
                    b.1[16 * j..16 * j + 16]
                        .iter()
                        .map(|&q| q as i32)
                        .sum::<i32>()
                );
            }
        }
    }

    #[test]
    fn q8_1_sums_are_exact() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.3).sin()).collect();
        for b in quantize_q8_1(&x) {
            assert_eq!(b.isum, b.qs.iter().map(|&q| q as i32).sum::<i32>());
            assert!(b.qs.iter().any(|&q| q.unsigned_abs() == 127));
        }
    }
}

mod math {
    use crate::engine::kernels::{axpy, dot, dot_portable, exp_in_place, silu_mul};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// Distance in units of the last place between two finite floats of one sign.
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    /// The vector `exp` stays within 2 ulp of `f32::exp` wherever the result is a normal
    /// number (a sweep of 200,000 points over [-87, 88], every length's scalar tail too),
    /// keeps NaN, and gives tiny (not negative or NaN) values far below the range and huge
    /// ones far above it, as softmax and SiLU need.
    #[test]
    fn vector_exp_is_within_two_ulp_of_exp() {
        let n = 200_000;
        let mut x: Vec<f32> = (0..n)
            .map(|i| -87.0 + 175.0 * i as f32 / n as f32)
            .collect();
        x.extend([
            0.0,
            -0.0,
            1e-8,
            -1e-8,
            0.5,
            -0.5,
            1.0,
            std::f32::consts::LN_2,
        ]);
        let mut y = x.clone();
        exp_in_place(&mut y);
        let worst = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (ulps(a.exp(), *b), *a))
            .max_by_key(|p| p.0)
            .unwrap();
        assert!(worst.0 <= 2, "{} ulp at x = {}", worst.0, worst.1);
        for len in 0..20 {
            let mut v: Vec<f32> = (0..len).map(|i| i as f32 * 0.3 - 2.0).collect();
            let want: Vec<f32> = v.iter().map(|a| a.exp()).collect();
            exp_in_place(&mut v);
            for (a, b) in v.iter().zip(&want) {
                assert!(ulps(*a, *b) <= 2, "length {len}: {a} vs {b}");
            }
        }
        let mut edge = vec![
            f32::NAN,
            f32::NEG_INFINITY,
            -1e4,
            -100.0,
            100.0,
            1e4,
            f32::INFINITY,
            0.0,
        ];
        exp_in_place(&mut edge);
        assert!(edge[0].is_nan());
        for v in &edge[1..4] {
            assert!(*v >= 0.0 && *v < 1e-37, "{v}");
        }
        for v in &edge[4..7] {
            assert!(*v > 1e38, "{v}");
        }
        assert_eq!(edge[7], 1.0);
    }

    /// SiLU-gating, the dot product and `axpy` give their formulas' values on random inputs
    /// of every length up to 70 (the vector bodies and the scalar tails).
    #[test]
    fn silu_dot_and_axpy_match_their_formulas() {
        let mut rng = StdRng::seed_from_u64(3);
        for len in 0..70 {
            let g: Vec<f32> = (0..len).map(|_| rng.random_range(-30.0f32..30.0)).collect();
            let u: Vec<f32> = (0..len).map(|_| rng.random_range(-2.0f32..2.0)).collect();
            let mut got = g.clone();
            silu_mul(&mut got, &u);
            for i in 0..len {
                let want = g[i] / (1.0 + (-g[i]).exp()) * u[i];
                assert!(
                    (got[i] - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "silu {len}/{i}: {} vs {want}",
                    got[i]
                );
            }
            let (a, b) = (&g, &u);
            let exact: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let scale: f64 = a
                .iter()
                .zip(b)
                .map(|(x, y)| (*x as f64 * *y as f64).abs())
                .sum();
            for v in [dot(a, b), dot_portable(a, b)] {
                assert!(
                    (v as f64 - exact).abs() <= 1e-5 * (1.0 + scale),
                    "dot {len}: {v} vs {exact}"
                );
            }
            let mut out: Vec<f32> = u.iter().map(|x| x * 0.5).collect();
            axpy(&mut out, 0.25, &g);
            for i in 0..len {
                let want = 0.25 * g[i] + u[i] * 0.5;
                assert!(
                    (out[i] - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "axpy {len}/{i}: {} vs {want}",
                    out[i]
                );
            }
        }
    }
}
