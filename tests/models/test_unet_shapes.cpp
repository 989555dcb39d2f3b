// The layer table against the model's published size.
#include <catch2/catch.hpp>

#include "models/unet_shapes.h"

using namespace unet;

TEST_CASE("the default U-Net has 7,697,345 parameters and 73.5 GFLOP per 256x256 image", "[models]") {
  const UNetConfig config;
  CHECK(unet_parameters(config) == 7697345);
  CHECK(unet_forward_flops_per_image(config, 256, 256) == Approx(73.5e9).epsilon(0.002));
  CHECK(config.describe() == "in 3, widths 64/128/256, bottleneck 512");
}

TEST_CASE("a training step is three passes of each layer, but no data gradient for the image", "[models]") {
  const UNetConfig config;
  const auto layers = unet_layers(config, 1, 256, 256);
  const double first = 2.0 * static_cast<double>(layers.front().macs());
  const double forward = unet_forward_flops_per_image(config, 256, 256);
  CHECK(unet_training_flops_per_image(config, 256, 256) == Approx(3 * forward - first));
}

TEST_CASE("the layer table follows the data through the U-Net", "[models]") {
  const auto layers = unet_layers(UNetConfig{}, 16, 256, 256);
  REQUIRE(layers.size() == 3 * 3 + 2 + 3 * 3 + 1);
  CHECK(layers.front().name == "encoder.0.conv1");
  CHECK(layers.front().c_in == 3);
  const LayerShape& bottleneck = layers[9];
  CHECK(bottleneck.name == "bottleneck.conv1");
  CHECK((bottleneck.h == 32 && bottleneck.c_in == 256 && bottleneck.c_out == 512));
  const LayerShape& up = layers[11];
  CHECK(up.name == "decoder.0.up");
  CHECK((up.h == 32 && up.out_h() == 64 && up.c_in == 512 && up.c_out == 256));
  CHECK(layers[12].c_in == 512);  // decoder.0.conv1 reads [upsampled 256, skip 256]
  CHECK(layers.back().name == "head");
  CHECK((layers.back().h == 256 && layers.back().c_out == 1));
}
