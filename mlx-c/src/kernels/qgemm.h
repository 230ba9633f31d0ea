// Quantized prefill as a packed f32 GEMM: each 32-column weight panel is dequantized (K in blocks of 256) into
// a per-thread buffer once per call and gemm_packed's micro-kernel runs every x row over it, so many-row
// inputs run at the core's FMA rate instead of re-reading codes per few rows. qmm (affine 4/8-bit) and
// kqmm_many (Q4_K/Q5_K/Q6_K, MoE experts too) hand their problems here from min_rows() rows on.
#pragma once

#include "kquant.h"
#include "qmm.h"

namespace mlxk::qgemm {

// Rows of x from which the dispatch points use this path: MLXK_QGEMM_ROWS (0 = never) for both kinds, else
// the measured defaults (affine, K-quant). set_min_rows overrides the setting for both (< 0 = back to the
// environment / the defaults) and returns the previous setting (-1 = the defaults).
int min_rows(bool kquant);
int set_min_rows(int n);
// The setting itself: MLXK_QGEMM_ROWS / set_min_rows's value, -1 = the defaults (kqgemm8.cpp follows it too).
int setting();

// Whether qmm / kqmm hand p here (f32 activations, not a decode batch, M ≥ min_rows()).
bool takes(const kern::QmmProblem& p);
bool takes(const kern::KqProblem& p);

// Blocking, on the kernel pool. Every output is one fused multiply-add chain over k in order of the exactly
// dequantized weights (affine: fma(q, scale, bias), as the other paths dequantize), so the AVX-512, AVX2 and
// scalar micro-kernels agree bitwise and a row's result does not depend on the other rows.
void run(const kern::QmmProblem& p);
void run_kq(const kern::KqProblem* ps, int n);

// kqmm_many's dispatch: runs the call here if this path takes every problem with rows (true), else leaves it
// all to kquant_run.cpp (false).
bool take_kq(const kern::KqProblem* ps, int n);

} // namespace mlxk::qgemm
