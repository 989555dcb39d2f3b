// HD95 (models/metrics.h) against a brute-force reference: every pair of surface voxels, on small
// random volumes with anisotropic spacing, plus cases worked by hand.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>

#include "models/metrics.h"

using namespace unet;

namespace {

struct Voxel {
  int z, y, x;
};

// A voxel of the mask is on the surface unless all six face neighbours are inside the volume and the mask.
std::vector<Voxel> brute_surface(const std::vector<uint8_t>& mask, int d, int h, int w) {
  std::vector<Voxel> surface;
  auto on = [&](int z, int y, int x) {
    if (z < 0 || y < 0 || x < 0 || z >= d || y >= h || x >= w) return false;
    return mask[(static_cast<size_t>(z) * h + y) * w + x] != 0;
  };
  const int steps[6][3] = {{1, 0, 0}, {-1, 0, 0}, {0, 1, 0}, {0, -1, 0}, {0, 0, 1}, {0, 0, -1}};
  for (int z = 0; z < d; ++z)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        if (!on(z, y, x)) continue;
        bool interior = true;
        for (const auto& s : steps) interior = interior && on(z + s[0], y + s[1], x + s[2]);
        if (!interior) surface.push_back({z, y, x});
      }
  return surface;
}

double brute_hd95(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b, int d, int h, int w,
                  const double* spacing) {
  const auto sa = brute_surface(a, d, h, w), sb = brute_surface(b, d, h, w);
  if (sa.empty() && sb.empty()) return 0;
  if (sa.empty() || sb.empty()) return NAN;
  std::vector<double> pooled;
  auto directed = [&](const std::vector<Voxel>& from, const std::vector<Voxel>& to) {
    for (const Voxel& p : from) {
      double best = INFINITY;
      for (const Voxel& q : to) {
        const double dz = (p.z - q.z) * spacing[0], dy = (p.y - q.y) * spacing[1], dx = (p.x - q.x) * spacing[2];
        best = std::min(best, std::sqrt(dz * dz + dy * dy + dx * dx));
      }
      pooled.push_back(best);
    }
  };
  directed(sa, sb);
  directed(sb, sa);
  std::sort(pooled.begin(), pooled.end());
  const double rank = 0.95 * static_cast<double>(pooled.size() - 1);
  const size_t lo = static_cast<size_t>(rank), hi = std::min(lo + 1, pooled.size() - 1);
  return pooled[lo] * (1 - (rank - static_cast<double>(lo))) + pooled[hi] * (rank - static_cast<double>(lo));
}

// Blobs: a few random boxes, so that masks have interiors as well as surfaces.
std::vector<uint8_t> random_mask(int d, int h, int w, std::mt19937& rng, int boxes) {
  std::vector<uint8_t> mask(static_cast<size_t>(d) * h * w, 0);
  for (int b = 0; b < boxes; ++b) {
    const int z0 = static_cast<int>(rng() % d), y0 = static_cast<int>(rng() % h), x0 = static_cast<int>(rng() % w);
    const int z1 = std::min(d, z0 + 1 + static_cast<int>(rng() % 4)),
              y1 = std::min(h, y0 + 1 + static_cast<int>(rng() % 6));
    const int x1 = std::min(w, x0 + 1 + static_cast<int>(rng() % 6));
    for (int z = z0; z < z1; ++z)
      for (int y = y0; y < y1; ++y)
        for (int x = x0; x < x1; ++x) mask[(static_cast<size_t>(z) * h + y) * w + x] = 1;
  }
  return mask;
}

}  // namespace

TEST_CASE("hd95: worked by hand, and the empty cases", "[metrics][hd95]") {
  const double unit[3] = {1, 1, 1};
  std::vector<uint8_t> a(6, 0), b(6, 0);                // one row of six voxels
  CHECK(hd95(a.data(), b.data(), 1, 1, 6, unit) == 0);  // both empty
  a[0] = 1;
  CHECK(std::isnan(hd95(a.data(), b.data(), 1, 1, 6, unit)));  // exactly one empty
  CHECK(std::isnan(hd95(b.data(), a.data(), 1, 1, 6, unit)));
  b[1] = b[5] = 1;
  // Directed distances: a -> b {1}; b -> a {1, 5}. Pooled and sorted {1, 1, 5}: rank 0.95 * 2 = 1.9,
  // so 1 + 0.9 * (5 - 1) = 4.6.
  CHECK(hd95(a.data(), b.data(), 1, 1, 6, unit) == Approx(4.6));
  const double stretched[3] = {1, 1, 0.5};  // the same along x at half a millimetre per voxel
  CHECK(hd95(a.data(), b.data(), 1, 1, 6, stretched) == Approx(2.3));
  CHECK(hd95(a.data(), a.data(), 1, 1, 6, unit) == 0);
}

TEST_CASE("hd95: equals the brute-force reference on random volumes", "[metrics][hd95]") {
  std::mt19937 rng(95);
  for (int trial = 0; trial < 40; ++trial) {
    const int d = 1 + static_cast<int>(rng() % 5), h = 2 + static_cast<int>(rng() % 11),
              w = 2 + static_cast<int>(rng() % 13);
    const std::vector<uint8_t> a = random_mask(d, h, w, rng, 1 + trial % 3),
                               b = random_mask(d, h, w, rng, 1 + trial % 4);
    const double spacing[3] = {0.5 + (rng() % 8) * 0.5, 0.3 + (rng() % 5) * 0.2, 0.3 + (rng() % 7) * 0.3};
    INFO("trial " << trial << ": " << d << "x" << h << "x" << w);
    CHECK(hd95(a.data(), b.data(), d, h, w, spacing) == Approx(brute_hd95(a, b, d, h, w, spacing)).epsilon(1e-12));
  }
}

TEST_CASE("hd95: means leave out and count the undefined cases", "[metrics][hd95]") {
  int undefined = 0;
  CHECK(mean_of_defined({1.0, NAN, 3.0, NAN}, &undefined) == 2.0);
  CHECK(undefined == 2);
  CHECK(mean_of_defined({NAN}, &undefined) == 0.0);
  CHECK(undefined == 1);
}
