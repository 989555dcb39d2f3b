// Running a model over a set of slices and scoring it (models/metrics.h): what a training run does
// after each epoch, and `unet eval` and `unet predict` do once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/resident.h"
#include "engine/autograd.h"
#include "models/metrics.h"
#include "models/unet.h"

namespace unet {

struct Evaluation {
  MetricsSummary summary;
  std::vector<int32_t> slices;     // the slices scored, in dataset order
  std::vector<uint8_t> predicted;  // (slices, H, W): 0/1, after --largest-component if asked
  std::vector<Confusion> confusions;  // (slices): each slice's counts, what the summary is made of
  std::vector<double> bce;            // (slices): each slice's BCE summed over its pixels
};

class Evaluator {
 public:
  // `data` is the host copy of what `resident` holds on the model's device. Throws unet::Error if
  // the model does not take the slices' channels (data/dataset.h slice_channel_count).
  Evaluator(const UNet& model, ResidentDataset& resident, const Dataset& data, int batch);
  // An ensemble, and with `mirror` test-time mirroring: the mean probability of every model on
  // every mirroring (models/inference.h) is what is thresholded and scored.
  Evaluator(std::vector<const UNet*> models, ResidentDataset& resident, const Dataset& data, int batch, bool mirror);
  ~Evaluator();
  Evaluator(const Evaluator&) = delete;
  Evaluator& operator=(const Evaluator&) = delete;

  // Tumour where logit > logit_threshold (0: probability 0.5); with `hd95`, each patient's HD95 in
  // voxels too (models/metrics.h).
  Evaluation run(const std::vector<int32_t>& slices, bool largest_component, float logit_threshold = 0.0f,
                 bool hd95 = false);
  // (slices, H, W) probabilities of the listed slices, in the order given.
  std::vector<float> probabilities(const std::vector<int32_t>& slices);

 private:
  // (slices, H, W) logits of one batch of slices: the model's, or those of the mean probability.
  std::vector<float> batch_logits(const std::vector<int32_t>& chunk);

  std::vector<const UNet*> models_;
  bool mirror_;
  ResidentDataset& resident_;
  const Dataset& data_;
  int batch_;
  int channels_;  // the model's input channels
  Device& device_;
  Stream stream_;
  std::unique_ptr<Context> context_;
  Tensor image_, mask_;
};

// The per-patient table as CSV (a run's val_patients.csv, `unet eval --csv`):
// patient,slices,dice,iou,true_voxels,predicted_voxels with a header row.
std::string patient_table_csv(const MetricsSummary& summary);

}  // namespace unet
