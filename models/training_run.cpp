#include "models/training_run.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>

#include "data/resident.h"
#include "data/split.h"
#include "engine/build_info.h"
#include "engine/comm.h"
#include "engine/files.h"
#include "engine/text.h"
#include "engine/paths.h"
#include "models/evaluator.h"
#include "models/overlay.h"
#include "models/trainer.h"
#include "tools/csv.h"
#include "tools/progress.h"

namespace unet {

namespace {

namespace fs = std::filesystem;

volatile std::sig_atomic_t interrupted = 0;
// Under a launcher a rank's stdout is a pseudo-terminal that mpirun stops draining once mpirun
// itself is interrupted (Ctrl-C): a rank printing progress then blocks in write() and never reaches
// the step at which it would stop and save, until mpirun kills it. So there the handler makes
// stdout and stderr non-blocking (output that no longer fits is dropped; log.jsonl still gets the
// `interrupted` record) and is installed without SA_RESTART, so that a write already blocked
// returns. A terminal of one's own is left as it is: a shell would inherit the flag.
volatile std::sig_atomic_t unblock_output_on_interrupt = 0;
extern "C" void on_interrupt(int) {
  interrupted = 1;
  if (!unblock_output_on_interrupt) return;
  for (const int fd : {STDOUT_FILENO, STDERR_FILENO}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

void catch_interrupts(bool launched) {
  interrupted = 0;  // a run before this one, in this process, may have been interrupted
  unblock_output_on_interrupt = launched;
  struct sigaction action = {};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  action.sa_flags = launched ? 0 : SA_RESTART;
  for (const int signal : {SIGINT, SIGTERM}) ::sigaction(signal, &action, nullptr);
}

const char* metrics_header =
    "epoch,step,train_loss,val_bce,val_dice_mean,val_dice_median,val_slice_dice,val_global_dice,val_iou_mean,"
    "val_iou_median,val_empty_patients,lr,seconds";

// One picture per patient: the slice with the most true tumour (or predicted, if it has none).
void write_overlay(const fs::path& path, const Dataset& data, const Evaluation& evaluation, int volume) {
  const int64_t plane = int64_t{data.height} * data.width;
  size_t best = evaluation.slices.size();
  int64_t best_area = -1;
  for (size_t at = 0; at < evaluation.slices.size(); ++at) {
    const int32_t s = evaluation.slices[at];
    if (data.volume[s] != volume) continue;
    int64_t area = 0;
    for (int64_t p = 0; p < plane; ++p) area += 2 * data.masks[s * plane + p] + evaluation.predicted[at * plane + p];
    if (area > best_area) {
      best_area = area;
      best = at;
    }
  }
  if (best == evaluation.slices.size()) return;
  const int32_t s = evaluation.slices[best];
  const std::vector<uint8_t> rgb = overlay(data.images.data() + s * plane * 3, data.masks.data() + s * plane,
                                           evaluation.predicted.data() + best * plane, data.height, data.width);
  write_png(path.string(), rgb.data(), data.height, data.width, 3);
}

// Best, median and worst patients by per-volume Dice, as pictures in overlays/.
void write_overlays(const fs::path& folder, const Dataset& data, const Evaluation& evaluation) {
  std::vector<std::pair<double, std::string>> ranked;
  for (const VolumeMetrics& v : evaluation.summary.volumes) ranked.emplace_back(v.confusion.dice(), v.name);
  if (ranked.empty()) return;
  std::sort(ranked.begin(), ranked.end());
  fs::create_directories(folder);
  const std::pair<const char*, size_t> picks[] = {
      {"1-best", ranked.size() - 1}, {"2-median", ranked.size() / 2}, {"3-worst", 0}};
  std::vector<size_t> drawn;  // with fewer than three patients, each is drawn once
  for (const auto& [label, index] : picks) {
    if (std::find(drawn.begin(), drawn.end(), index) != drawn.end()) continue;
    drawn.push_back(index);
    const std::string& patient = ranked[index].second;
    const auto volume =
        static_cast<int>(std::find(data.patients.begin(), data.patients.end(), patient) - data.patients.begin());
    write_overlay(folder / (std::string(label) + "_" + patient + ".png"), data, evaluation, volume);
  }
}

std::string summary_line(const MetricsSummary& s) {
  return "per-volume Dice mean " + fixed(s.volume_dice_mean) + " median " + fixed(s.volume_dice_median) + " (" +
         std::to_string(s.volumes.size()) + " patients, " + std::to_string(s.empty_volumes) +
         " without tumour or prediction)" + ", slice Dice " + fixed(s.slice_dice_mean) + ", global Dice " +
         fixed(s.global_dice) + ", IoU " + fixed(s.volume_iou_mean) + ", BCE " + fixed(s.bce);
}

// metrics.csv's row for an epoch; the validation columns are empty without validation patients.
std::string metrics_row(int epoch, int64_t step, double train_loss, const MetricsSummary* val, double lr,
                        double seconds) {
  CsvRow row{std::to_string(epoch), std::to_string(step), fixed(train_loss, 6)};
  if (val != nullptr) {
    for (double value : {val->bce, val->volume_dice_mean, val->volume_dice_median, val->slice_dice_mean,
                         val->global_dice, val->volume_iou_mean, val->volume_iou_median}) {
      row.push_back(fixed(value, 6));
    }
    row.push_back(std::to_string(val->empty_volumes));
  } else {
    row.resize(row.size() + 8);
  }
  row.push_back(fixed(lr, 8));
  row.push_back(fixed(seconds, 2));
  return csv_line(row);
}

// log.jsonl's record of an epoch: every column of metrics.csv, unrounded.
Json epoch_record(int epoch, int64_t step, double train_loss, const MetricsSummary* val, double lr,
                  double seconds) {
  Json record = Json::object();
  record.set("event", "epoch");
  record.set("epoch", epoch);
  record.set("step", step);
  record.set("train_loss", train_loss);
  record.set("seconds", seconds);
  if (val != nullptr) {
    record.set("val_bce", val->bce);
    record.set("val_dice_mean", val->volume_dice_mean);
    record.set("val_dice_median", val->volume_dice_median);
    record.set("val_slice_dice", val->slice_dice_mean);
    record.set("val_global_dice", val->global_dice);
    record.set("val_iou_mean", val->volume_iou_mean);
    record.set("val_iou_median", val->volume_iou_median);
    record.set("val_empty_patients", val->empty_volumes);
  }
  record.set("lr", lr);
  return record;
}

// log.jsonl's record of the best epoch's validation patients: what val_patients.csv holds.
Json patients_record(int best_epoch, const MetricsSummary& summary) {
  Json patients = Json::array();
  for (const VolumeMetrics& v : summary.volumes) {
    Json& patient = patients.push(Json::object());
    patient.set("patient", v.name);
    patient.set("slices", v.slices);
    patient.set("dice", v.confusion.dice());
    patient.set("iou", v.confusion.iou());
    patient.set("true_voxels", v.confusion.truth());
    patient.set("predicted_voxels", v.confusion.predicted());
  }
  Json record = Json::object();
  record.set("event", "val_patients");
  record.set("epoch", best_epoch);
  record.set("patients", std::move(patients));
  return record;
}

// Rank 0 speaks for the run; the other ranks print only errors.
bool lead() { return Communicator::world().rank() == 0; }

Dataset load_training_data(const TrainingConfig& config) {
  if (lead()) std::printf("loading %s ...\n", config.data.c_str());
  std::fflush(stdout);
  Dataset data = load_dataset(config.data, config.find, config.load);
  if (lead() && !data.skipped.empty()) std::printf("skipped %zu bad slices (--skip-bad)\n", data.skipped.size());
  return data;
}

// A new run draws its split (the same on every rank: a function of the seed) and rank 0 writes
// split.json; a resumed one reads it back.
PatientSplit training_split(const TrainingConfig& config, const Dataset& data, const fs::path& path, bool resume) {
  const double val = config.val_patients >= 0 ? config.val_patients : config.val_fraction;
  PatientSplit split = resume            ? load_split(path.string())
                       : config.folds > 0 ? kfold_split(data.patients, config.folds, config.fold, config.test_patients,
                                                        config.seed)
                                          : split_patients(data.patients, val, config.test_patients, config.seed);
  if (split.train.empty()) {
    throw Error("no patients left for training (" + std::to_string(data.patients.size()) + " in the dataset)");
  }
  if (!resume && lead()) save_split(path.string(), split);
  return split;
}

// The learning-rate schedule spans the whole run.
AdamConfig over_the_run(AdamConfig adam, int64_t total_steps) {
  adam.total_steps = total_steps;
  return adam;
}

// What one process of the run holds, built in this order: the data on the device, the model, its
// trainer and evaluator, and where training stands.
class Session {
 public:
  Session(const TrainingConfig& config, const fs::path& folder, const SafeTensors* checkpoint, const Json& state);
  int train();

 private:
  bool train_epoch(int epoch);  // false: interrupted (a checkpoint is saved)
  std::string kept_checkpoint() const;
  void check_parameters() const;
  void end_epoch(int epoch, double seconds);
  MetricsSummary validate();
  void save_last(double loss_sum);
  void log_start();
  void finish();

  const TrainingConfig& config_;
  const Preprocessing preprocessing_;  // recorded in every weights file the run writes
  const fs::path folder_, last_, log_;
  const bool resume_;
  Communicator& comm_;
  const bool lead_;         // rank 0: writes the run folder
  const int local_batch_;  // this rank's share of each global batch
  Device& device_;
  const Dataset data_;
  const PatientSplit split_;
  const SplitSlices sides_;
  ResidentDataset resident_;
  const EpochSampler sampler_;
  UNet model_;
  const int steps_per_epoch_;
  AdamConfig adam_;
  Trainer trainer_;
  Evaluator evaluator_;
  int64_t step_;
  const int64_t session_start_step_;
  double epoch_loss_sum_, best_dice_;
  int best_epoch_;
};

Session::Session(const TrainingConfig& config, const fs::path& folder, const SafeTensors* checkpoint, const Json& state)
    : config_(config),
      preprocessing_{config.load.image_size, config.zscore},
      folder_(folder),
      last_(folder / "last.safetensors"),
      log_(folder / "log.jsonl"),
      resume_(checkpoint != nullptr),
      comm_(Communicator::world()),
      lead_(comm_.rank() == 0),
      local_batch_(config.batch / comm_.size()),
      device_(device(config.device)),
      data_(load_training_data(config)),
      split_(training_split(config, data_, folder / "split.json", resume_)),
      sides_(split_slices(data_, split_)),
      resident_(device_, data_, config.zscore),
      sampler_(sides_.train, data_.tumour, config.oversample, config.batch, config.seed),
      model_(config.model, device_, config.precision),
      steps_per_epoch_(sampler_.steps_per_epoch()),
      adam_(over_the_run(config.adam, int64_t{steps_per_epoch_} * config.epochs)),
      trainer_(model_, adam_, config.loss, {local_batch_, data_.height, data_.width, config.model.in_channels},
               config.graph),
      evaluator_(model_, resident_, data_, config.batch),
      step_(resume_ ? state.at("step").as_integer() : 0),
      session_start_step_(step_),
      epoch_loss_sum_(resume_ ? state.at("epoch_loss_sum").as_number() : 0.0),
      best_dice_(resume_ ? state.at("best_dice").as_number() : -1.0),
      best_epoch_(resume_ ? static_cast<int>(state.at("best_epoch").as_integer()) : -1) {
  if (lead_) {
    const std::string fold =
        split_.folds > 0 ? " (fold " + std::to_string(split_.fold) + " of " + std::to_string(split_.folds) + ")" : "";
    std::printf("%zu patients: %zu train (%zu slices), %zu validation (%zu slices), %zu test%s\n", data_.patients.size(),
                split_.train.size(), sides_.train.size(), split_.val.size(), sides_.val.size(), split_.test.size(),
                fold.c_str());
  }
  if (checkpoint != nullptr) {
    load_training_checkpoint(*checkpoint, model_);
  } else if (!config.init.empty()) {
    load_weights(SafeTensors::load(config.init), model_);
  } else {
    model_.parameters().initialize(config.seed);
  }
  // Parameters start identical on every rank: the same checkpoint, weights file or seed.
  resident_.set_share(comm_.rank() * local_batch_, config.batch);
  trainer_.set_communicator(comm_);
  trainer_.set_batch_source([this](Stream stream) {
    const Tensor image = trainer_.image();
    const auto build = [&](const auto& target) {
      resident_.train_batch(trainer_.clock().step(), steps_per_epoch_, local_batch_, config_.augment, config_.seed,
                            target, stream);
    };
    if (image.scalar_type() == ScalarType::bf16) {
      build(BatchTargetBf16{image.data<bf16>(), image.pixel_stride(), trainer_.mask().data(), 1});
    } else {
      build(BatchTarget{image.data(), image.pixel_stride(), trainer_.mask().data(), 1});
    }
  });
  trainer_.clock().set(step_);
}

void Session::save_last(double loss_sum) {
  Json state = Json::object();
  state.set("step", step_);
  for (const auto& [key, value] : config_.resumable.members()) state.set(key, value);
  state.set("epoch_loss_sum", loss_sum);
  state.set("best_dice", best_dice_);
  state.set("best_epoch", best_epoch_);
  state.set("identity", config_.identity);
  save_training_checkpoint(last_.string(), model_, preprocessing_, state);
}

void Session::log_start() {
  Json start = Json::object();
  start.set("event", resume_ ? "resume" : "start");
  start.set("started", utc_now());
  start.set("commit", build_info().commit);
  start.set("build", build_summary());
  start.set("device", device_name(config_.device));
  start.set("device_name", device_.info().name);
  start.set("precision", precision_name(config_.precision));
  start.set("flags", config_.identity);
  start.set("epochs", config_.epochs);
  start.set("step", step_);
  start.set("steps_per_epoch", steps_per_epoch_);
  start.set("ranks", comm_.size());
  append_line(log_.string(), start.dump());
  if (!resume_) write_file_atomic((folder_ / "metrics.csv").string(), std::string(metrics_header) + "\n");
}

int Session::train() {
  if (lead_) log_start();
  catch_interrupts(comm_.launched());
  if (lead_) {
    std::printf("training %s, depth %d on %s (%s) in %s: %d epochs of %d steps, batch %d, %dx%d%s\n",
                config_.model.describe().c_str(), config_.model.depth, device_name(config_.device),
                device_.info().name.c_str(), precision_name(config_.precision), config_.epochs, steps_per_epoch_,
                config_.batch, data_.height,
                data_.width, resume_ ? (", resuming at step " + std::to_string(step_)).c_str() : "");
    if (comm_.size() > 1) std::printf("data parallel: %d ranks of %d samples each\n", comm_.size(), local_batch_);
  }
  std::fflush(stdout);
  for (int epoch = static_cast<int>(step_ / steps_per_epoch_); epoch < config_.epochs; ++epoch) {
    const auto epoch_start = std::chrono::steady_clock::now();
    if (!train_epoch(epoch)) return 130;
    end_epoch(epoch, std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count());
  }
  finish();
  return 0;
}

bool Session::train_epoch(int epoch) {
  const auto epoch_start = std::chrono::steady_clock::now();
  const int64_t total_steps = int64_t{steps_per_epoch_} * config_.epochs;
  resident_.set_order(sampler_.order(epoch));
  Progress progress("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(config_.epochs), steps_per_epoch_);
  const int64_t first = step_ % steps_per_epoch_;  // not 0 when resuming mid-epoch
  for (int64_t k = first; k < steps_per_epoch_; ++k) {
    if (interrupted != 0) trainer_.request_stop();
    const StepLosses losses = trainer_.step();
    if (!std::isfinite(losses.total)) {
      progress.finish();
      throw Error(std::string("the loss is not finite (") + (std::isnan(losses.total) ? "nan" : "inf") +
                  ") at step " + std::to_string(step_ + 1) + "; stopped, " + kept_checkpoint() +
                  " (check --init, or lower --lr)");
    }
    ++step_;
    epoch_loss_sum_ += losses.total;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    const double images_per_second = static_cast<double>(config_.batch) * static_cast<double>(k + 1 - first) / seconds;
    if (lead_) progress.update(k + 1, "loss " + fixed(epoch_loss_sum_ / static_cast<double>(k + 1)) + " " +
                               fixed(images_per_second, 1) + " img/s");
    // losses.stop is the same on every rank: the ranks' stop requests are summed with the gradients.
    const bool stop = losses.stop ||
                      (config_.stop_after_steps > 0 && step_ - session_start_step_ >= config_.stop_after_steps);
    if (stop && step_ < total_steps) {
      if (!lead_) return false;
      progress.finish();
      check_parameters();
      save_last(epoch_loss_sum_);
      Json event = Json::object();
      event.set("event", "interrupted");
      event.set("step", step_);
      append_line(log_.string(), event.dump());
      std::printf("stopped after step %lld (epoch %d, step %lld of %d); saved %s\n"
                  "continue with: unet train --out %s --resume\n",
                  static_cast<long long>(step_), epoch + 1, static_cast<long long>(k + 1), steps_per_epoch_,
                  last_.c_str(), canonical_path(folder_.string()).c_str());
      return false;
    }
  }
  progress.finish();
  check_parameters();
  return true;
}

std::string Session::kept_checkpoint() const {
  std::error_code error;
  return fs::exists(last_, error) ? "the last good checkpoint is " + last_.string() : "no checkpoint was written";
}

// Adam's flag (kernels/adam.h) catches what the loss guard cannot: a step can leave parameters
// NaN while its own loss, computed before the update, was finite.
void Session::check_parameters() const {
  if (trainer_.parameters_finite()) return;
  throw Error("a parameter is not finite (nan or inf) after step " + std::to_string(step_) + "; stopped, " +
              kept_checkpoint() + " (check --init, or lower --lr)");
}

// Validation, the best weights so far, the checkpoint and the epoch's records.
void Session::end_epoch(int epoch, double train_seconds) {
  const auto start = std::chrono::steady_clock::now();
  const double train_loss = epoch_loss_sum_ / steps_per_epoch_;
  epoch_loss_sum_ = 0;
  const bool validating = !sides_.val.empty();
  MetricsSummary val;
  if (validating) val = validate();
  if (!lead_) return;
  const double seconds =
      train_seconds + std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (validating && val.volume_dice_mean > best_dice_) {
    best_dice_ = val.volume_dice_mean;
    best_epoch_ = epoch + 1;
    save_weights((folder_ / "best.safetensors").string(), model_, preprocessing_);
  }
  save_last(0.0);
  const MetricsSummary* scored = validating ? &val : nullptr;
  const double lr = scheduled_lr(adam_, step_);
  append_line((folder_ / "metrics.csv").string(), metrics_row(epoch + 1, step_, train_loss, scored, lr, seconds));
  append_line(log_.string(), epoch_record(epoch + 1, step_, train_loss, scored, lr, seconds).dump());
  std::printf("epoch %d/%d: train loss %.4f, %s, %s\n", epoch + 1, config_.epochs, train_loss,
              validating ? summary_line(val).c_str() : "no validation patients", format_duration(seconds).c_str());
  std::fflush(stdout);
}

// Validation sharded by patient: rank r scores the validation patients r, r + R, ...; each slice's
// confusion counts and BCE sum are then summed across the ranks (every slice is some one rank's)
// and accumulated in dataset order, so the summary is the one a single process computes, to the bit.
MetricsSummary Session::validate() {
  if (comm_.size() == 1) return evaluator_.run(sides_.val, false).summary;
  std::vector<int32_t> all = sides_.val;
  std::sort(all.begin(), all.end());
  std::vector<int32_t> mine;
  for (const int32_t s : all) {
    const auto patient = std::find(split_.val.begin(), split_.val.end(), data_.patients[data_.volume[s]]);
    if ((patient - split_.val.begin()) % comm_.size() == comm_.rank()) mine.push_back(s);
  }
  const Evaluation part = evaluator_.run(mine, false);
  constexpr int fields = 5;  // tp, fp, fn, tn, BCE sum
  std::vector<double> scores(all.size() * fields, 0.0);
  for (size_t at = 0; at < part.slices.size(); ++at) {
    const auto position = static_cast<size_t>(std::lower_bound(all.begin(), all.end(), part.slices[at]) - all.begin());
    const Confusion& c = part.confusions[at];
    const double record[fields] = {double(c.tp), double(c.fp), double(c.fn), double(c.tn), part.bce[at]};
    std::copy(record, record + fields, scores.begin() + static_cast<long>(position * fields));
  }
  comm_.all_reduce_host(scores.data(), static_cast<int>(scores.size()), "the all-reduce of the validation scores");
  MetricsAccumulator metrics(data_.patients);
  const int64_t plane = int64_t{data_.height} * data_.width;
  for (size_t at = 0; at < all.size(); ++at) {
    const double* record = scores.data() + at * fields;
    const Confusion c{int64_t(record[0]), int64_t(record[1]), int64_t(record[2]), int64_t(record[3])};
    metrics.add_slice(data_.volume[all[at]], c, plane, record[4]);
  }
  return metrics.summary();
}

// The best model on the validation patients, in detail (rank 0 alone: the pictures need every
// predicted mask), and the log's last record.
void Session::finish() {
  if (!lead_) return;
  if (!sides_.val.empty() && best_epoch_ > 0) {
    load_weights(SafeTensors::load((folder_ / "best.safetensors").string()), model_);
    const Evaluation best = evaluator_.run(sides_.val, false);
    write_file_atomic((folder_ / "val_patients.csv").string(), patient_table_csv(best.summary));
    append_line(log_.string(), patients_record(best_epoch_, best.summary).dump());
    write_overlays(folder_ / "overlays", data_, best);
    std::printf("best epoch %d: %s\n", best_epoch_, summary_line(best.summary).c_str());
  }
  Json end = Json::object();
  end.set("event", "end");
  end.set("step", step_);
  end.set("best_epoch", best_epoch_);
  end.set("best_val_dice_mean", best_dice_);
  end.set("finished", utc_now());
  if (comm_.size() > 1) end.set("collective_seconds", comm_.collective_seconds());
  append_line(log_.string(), end.dump());
}

}  // namespace

TrainingRun::TrainingRun(fs::path folder, bool resume)
    : folder_(std::move(folder)) {
  // Under mpirun every rank reads the checkpoint, but only rank 0 locks, tidies and writes the folder:
  // a lock per rank would refuse the second rank as another writer.
  if (lead()) {
    lock_.emplace(folder_.string(), resume ? RunStart::resume : RunStart::fresh);
    for (const std::string& note : lock_->notes()) std::printf("note: %s\n", note.c_str());
  }
  if (!resume) return;
  checkpoint_ = SafeTensors::load((folder_ / "last.safetensors").string());
  const UNetConfig config = read_config(*checkpoint_);
  UNet probe(config, device(DeviceKind::cpu));
  state_ = load_training_checkpoint(*checkpoint_, probe);
  if (lock_ && state_.at("best_epoch").as_integer() > 0 && !lock_->check_best_weights(config)) {
    std::printf("note: %s is gone; the best weights are chosen among the epochs still to come\n",
                (folder_ / "best.safetensors").c_str());
    state_.set("best_dice", -1.0);
    state_.set("best_epoch", -1);
  }
}

int TrainingRun::run(const TrainingConfig& config) {
  Communicator& comm = Communicator::world();
  comm.set_timeout(config.collective_timeout);
  if (config.batch % comm.size() != 0) {
    throw Error("a batch of " + std::to_string(config.batch) + " does not divide among " +
                std::to_string(comm.size()) + " ranks");
  }
  // Every rank has looked at the folder (the constructor) before rank 0 writes into it.
  double ready = 1;
  comm.all_reduce_host(&ready, 1, "the agreement on the run folder");
  if (comm.rank() == 0) {
    std::error_code error;
    fs::create_directories(folder_, error);
    if (error) throw Error(folder_.string() + ": cannot create the run folder (" + error.message() + ")");
    if (::access(folder_.c_str(), W_OK) != 0) throw Error(folder_.string() + ": the run folder is not writable");
  }
  const bool slow = config.device == DeviceKind::cpu && config.model.base_width >= 32 && config.load.image_size >= 128;
  if (comm.rank() == 0 && slow) {
    std::fprintf(stderr, "note: training the full model on the CPU is slow; consider --base-width 8 --image-size 64\n");
  }
  Session session(config, folder_, checkpoint_ ? &*checkpoint_ : nullptr, state_);
  return session.train();
}

}  // namespace unet
