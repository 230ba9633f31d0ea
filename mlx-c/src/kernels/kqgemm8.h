// Opt-in int8 K-quant prefill (MLXK_INT8_ACT=1) as a GEMM on VNNI (kqgemm8.cpp): each 32-column weight panel is
// unpacked once per 256-value block into u8 codes laid out 16 columns × 4 k per zmm, x rows are rounded to int8
// per 256 values (q8_K: one scale per block, sums per 16), and vpdpbusd runs every x row of a task over the
// panel with the codes kept in L1; the K-quant sub-block scales and mins are applied as float FMAs. Against
// the q8_K dot tiles (kquant512.cpp), which unpack the codes again for every 4 rows, this is a register-blocked
// 6-row × 32-column tile with 4× the multiply-adds per instruction of the f32 panel GEMM (qgemm.cpp).
#pragma once

#include "kquant.h"

namespace mlxk::kqgemm8 {

// Whether the CPU and the ISA in use allow this path (AVX-512 BW + VNNI, ISA avx512).
bool available();

// Rows from which kqmm_many hands a call here when int8 activations are on: MLXK_QGEMM_ROWS when set (the same
// setting as the f32 panel GEMM; 0 = never), else the measured default.
int min_rows();

// kqmm_many's dispatch: with int8 activations on, runs the whole call here (every problem, whatever its rows)
// when one of its problems has min_rows() rows or more and none is a decode batch (independent_rows: the q8_K
// tiles compute each row as alone), true; else leaves it (false). Blocking, on the pool.
bool take(const kern::KqProblem* ps, int n);

// The whole call here regardless of the thresholds (tests; available() must hold).
void run(const kern::KqProblem* ps, int n);

} // namespace mlxk::kqgemm8
