#include "models/inference.h"

#include "engine/dispatch.h"
#include "kernels/sigmoid.h"

namespace unet {

void flip_images(const float* in, float* out, int n, int h, int w, int c, bool horizontal, bool vertical) {
  for (int64_t b = 0; b < n; ++b)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        const int sy = vertical ? h - 1 - y : y, sx = horizontal ? w - 1 - x : x;
        const float* from = in + ((b * h + sy) * w + sx) * c;
        float* to = out + ((b * h + y) * w + x) * c;
        for (int k = 0; k < c; ++k) to[k] = from[k];
      }
}

std::vector<float> mean_probabilities(Context& ctx, const std::vector<const UNet*>& models, const Tensor& images,
                                      bool mirror) {
  if (models.empty()) throw Error("inference: no model");
  const Shape shape = images.shape();
  const std::vector<float> original = images.to_host();
  std::vector<float> flipped(original.size()), probability, unflipped(static_cast<size_t>(shape.pixels()));
  std::vector<double> sum(static_cast<size_t>(shape.pixels()), 0.0);
  const int flips = mirror ? 4 : 1;
  for (const UNet* model : models) {
    for (int f = 0; f < flips; ++f) {
      const bool horizontal = f & 1, vertical = f & 2;
      flip_images(original.data(), flipped.data(), shape.n, shape.h, shape.w, shape.c, horizontal, vertical);
      const Tensor input = ctx.scratch(shape, ctx.activation_type());
      input.from_host(flipped);
      const Tensor logits = model->forward(ctx, input).value();
      const Tensor sigmoid = ctx.scratch(logits.shape());  // fp32 probabilities in every precision
      const auto run_sigmoid = [&]<class T>(const T* x) {
        dispatch(ctx.kind(), [&]<DeviceKind D>() {
          Sigmoid<D>::forward(logits.shape().pixels(), 1, x, logits.pixel_stride(), sigmoid.data(), 1, ctx.stream());
        });
      };
      if (logits.scalar_type() == ScalarType::bf16) {
        run_sigmoid(logits.data<bf16>());
      } else {
        run_sigmoid(logits.data<float>());
      }
      probability = sigmoid.to_host();
      ctx.end_step();
      flip_images(probability.data(), unflipped.data(), shape.n, shape.h, shape.w, 1, horizontal, vertical);
      for (size_t i = 0; i < sum.size(); ++i) sum[i] += unflipped[i];
    }
  }
  std::vector<float> mean(sum.size());
  const double passes = static_cast<double>(models.size()) * flips;
  for (size_t i = 0; i < sum.size(); ++i) mean[i] = static_cast<float>(sum[i] / passes);
  return mean;
}

}  // namespace unet
