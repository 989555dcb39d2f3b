// nnU-Net's summary.json layout (models/summary_json.h): keys, the NaN of an empty case written as
// null and left out of the means, and the foreground mean.
#include <catch2/catch.hpp>

#include <cmath>

#include "models/summary_json.h"

using namespace unet;

TEST_CASE("summary.json: nnU-Net v2's layout, an empty case null and outside the means", "[metrics][summary]") {
  std::vector<VolumeMetrics> volumes(3);
  volumes[0] = {"A", {6, 2, 2, 90}, 4};   // Dice 12 / 16
  volumes[1] = {"B", {0, 0, 0, 100}, 4};  // neither tumour nor prediction
  volumes[2] = {"C", {1, 3, 0, 96}, 4};   // Dice 2 / 5
  volumes[0].hd95_voxels = 2;
  volumes[0].hd95_mm = 3;
  volumes[1].hd95_voxels = 0;
  const Json summary = Json::parse(nnunet_summary(volumes, {"ra", "rb", "rc"}, {"pa", "pb", "pc"}, true).dump());

  const auto& cases = summary.at("metric_per_case").items();
  REQUIRE(cases.size() == 3);
  CHECK(cases[0].at("reference_file").as_string() == "ra");
  CHECK(cases[2].at("prediction_file").as_string() == "pc");
  const Json& a = cases[0].at("metrics").at("1");
  CHECK(a.at("Dice").as_number() == Approx(0.75));
  CHECK(a.at("IoU").as_number() == Approx(0.6));
  CHECK(a.at("TP").as_integer() == 6);
  CHECK(a.at("FP").as_integer() == 2);
  CHECK(a.at("FN").as_integer() == 2);
  CHECK(a.at("TN").as_integer() == 90);
  CHECK(a.at("n_pred").as_integer() == 8);
  CHECK(a.at("n_ref").as_integer() == 8);
  CHECK(a.at("HD95_mm").as_number() == 3);
  const Json& b = cases[1].at("metrics").at("1");
  CHECK(b.at("Dice").is_null());
  CHECK(b.at("IoU").is_null());
  CHECK(b.at("HD95").as_number() == 0);
  CHECK(b.at("HD95_mm").is_null());  // spacing unknown

  const Json& mean = summary.at("mean").at("1");
  CHECK(mean.at("Dice").as_number() == Approx((0.75 + 0.4) / 2));  // B skipped, as nnU-Net's nanmean
  CHECK(mean.at("TP").as_number() == Approx(7.0 / 3));
  CHECK(mean.at("HD95").as_number() == Approx(1.0));  // (2 + 0) / 2: C's NaN skipped
  CHECK(mean.at("HD95_mm").as_number() == Approx(3.0));
  CHECK(summary.at("foreground_mean").at("Dice").as_number() == mean.at("Dice").as_number());

  // Without HD95 the keys are nnU-Net's eight.
  const Json plain = nnunet_summary(volumes, {"a", "b", "c"}, {"a", "b", "c"}, false);
  CHECK(plain.at("metric_per_case").items()[0].at("metrics").at("1").members().size() == 8);
  CHECK(plain.at("metric_per_case").items()[0].at("metrics").at("1").find("HD95") == nullptr);
  // Only empty cases: the mean Dice is NaN, written null.
  const Json empty = nnunet_summary({volumes[1]}, {"b"}, {"b"}, false);
  CHECK(Json::parse(empty.dump()).at("mean").at("1").at("Dice").is_null());
}
