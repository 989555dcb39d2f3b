// column_sum: the kernels and launchers (column_sum.h).
//
// One version. Pass 1 (column_sum_chunk_kernel): a block of 32 x 8 threads owns 32 columns of one
// chunk of rows; thread (c, lane) adds rows lane, lane + 8, ... of its column, so a warp reads 32
// consecutive values of one row (coalesced); the 8 lanes' sums are then added in order through
// shared memory and written as one partial row. Pass 2 (column_sum_partials_kernel): a thread per
// column adds the partial rows in order and applies beta. Bandwidth-bound.
#include "kernels/column_sum.h"

#include <algorithm>
#include <cstdint>

#include "kernels/dialect.h"

namespace unet::KERNEL_BACKEND {

constexpr int column_sum_columns = 32;
constexpr int column_sum_lanes = 8;

__global__ void column_sum_chunk_kernel(int64_t rows, int cols, int64_t chunk_rows, const float* __restrict__ x,
                                        int x_stride, const float* __restrict__ mask, int mask_stride,
                                        float* __restrict__ partial) {
  __shared__ float lane_sums[column_sum_lanes][column_sum_columns];
  const int c = blockIdx.x * column_sum_columns + threadIdx.x;
  const int64_t begin = blockIdx.y * chunk_rows;
  const int64_t end = rows < begin + chunk_rows ? rows : begin + chunk_rows;
  float sum = 0.0f;
  if (c < cols) {
    for (int64_t r = begin + threadIdx.y; r < end; r += column_sum_lanes) {
      const float v = x[r * x_stride + c];
      sum += mask == nullptr || mask[r * mask_stride + c] > 0.0f ? v : 0.0f;
    }
  }
  lane_sums[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float total = 0.0f;
    for (int lane = 0; lane < column_sum_lanes; ++lane) total += lane_sums[lane][threadIdx.x];
    partial[blockIdx.y * int64_t{cols} + c] = total;
  }
}

__global__ void column_sum_partials_kernel(int64_t rows, int64_t cols, const float* __restrict__ partial, float beta,
                                           float* __restrict__ out) {
  const int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (c >= cols) return;
  float total = 0.0f;
  for (int64_t r = 0; r < rows; ++r) total += partial[r * cols + c];
  out[c] = beta == 0.0f ? total : beta * out[c] + total;  // beta = 0 overwrites, even NaN
}

}  // namespace unet::KERNEL_BACKEND

// ---------------------------------------------------------------------------------------------
// launchers

namespace unet {

using namespace KERNEL_BACKEND;

namespace {

// Rows per chunk: at least 256, and at most about 512 chunks, so pass 2 stays short. A function of
// the shape alone, so the order of additions (and the result's bits) never changes.
int64_t chunk_rows(int64_t rows) { return std::max<int64_t>(256, ceil_div(rows, 512)); }

}  // namespace

template <DeviceKind D>
size_t ColumnSum<D>::workspace(int64_t rows, int cols) {
  return static_cast<size_t>(ceil_div(rows, chunk_rows(rows)) * cols) * sizeof(float);
}

template <DeviceKind D>
void ColumnSum<D>::sum(int64_t rows, int cols, const float* x, int x_stride, const float* mask, int mask_stride,
                       float beta, float* out, void* workspace, Stream stream) {
  if (cols == 0) return;
  const int64_t chunk = chunk_rows(rows);
  const int64_t chunks = ceil_div(rows, chunk);
  auto* partial = static_cast<float*>(workspace);
  if (chunks > 0) {
    const dim3 grid(static_cast<unsigned>(ceil_div(cols, column_sum_columns)), static_cast<unsigned>(chunks));
    launch(KERNEL(column_sum_chunk_kernel), grid, dim3(column_sum_columns, column_sum_lanes), 0, stream, rows, cols,
           chunk, x, x_stride, mask, mask_stride, partial);
  }
  sum_partials(chunks, cols, partial, beta, out, stream);
}

template <DeviceKind D>
void ColumnSum<D>::sum_partials(int64_t rows, int64_t cols, const float* partial, float beta, float* out,
                                Stream stream) {
  if (cols == 0) return;
  launch(KERNEL(column_sum_partials_kernel), dim3(static_cast<unsigned>(ceil_div(cols, 256))), dim3(256), 0, stream,
         rows, cols, partial, beta, out);
}

template struct ColumnSum<KERNEL_DEVICE>;

}  // namespace unet
