// unet report: one self-contained HTML page for a run folder — curves, the per-patient Dice chart,
// overlays — with the charts as inline SVG and the pictures embedded, so it opens offline.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>
#include <tuple>

#include "data/split.h"
#include "engine/files.h"
#include "engine/json.h"
#include "engine/paths.h"
#include "engine/text.h"
#include "tools/cli.h"
#include "tools/commands.h"

namespace unet {

namespace {

namespace fs = std::filesystem;

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string number(double value, int decimals = 3) { return std::isfinite(value) ? fixed(value, decimals) : "–"; }

std::string base64(const std::vector<uint8_t>& bytes) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const uint32_t chunk = (uint32_t{bytes[i]} << 16) | (i + 1 < bytes.size() ? uint32_t{bytes[i + 1]} << 8 : 0) |
                           (i + 2 < bytes.size() ? uint32_t{bytes[i + 2]} : 0);
    out += alphabet[chunk >> 18 & 63];
    out += alphabet[chunk >> 12 & 63];
    out += i + 1 < bytes.size() ? alphabet[chunk >> 6 & 63] : '=';
    out += i + 2 < bytes.size() ? alphabet[chunk & 63] : '=';
  }
  return out;
}

struct Series {
  std::string name, colour;
  std::vector<std::pair<double, double>> points;  // (x, y); non-finite y are gaps
};

// Axis ticks at 1, 2 or 5 times a power of ten.
double tick_step(double span) {
  const double raw = span / 5;
  const double power = std::pow(10.0, std::floor(std::log10(raw > 0 ? raw : 1)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (raw <= m * power) return m * power;
  }
  return 10 * power;
}

std::string line_chart(const std::string& title, const std::string& x_label, const std::vector<Series>& series,
                       bool zero_to_one) {
  constexpr double width = 560, height = 300, left = 56, right = 16, top = 30, bottom = 44;
  double x0 = INFINITY, x1 = -INFINITY, y0 = zero_to_one ? 0 : INFINITY, y1 = zero_to_one ? 1 : -INFINITY;
  for (const Series& s : series) {
    for (auto [x, y] : s.points) {
      if (!std::isfinite(y)) continue;
      x0 = std::min(x0, x);
      x1 = std::max(x1, x);
      if (!zero_to_one) {
        y0 = std::min(y0, y);
        y1 = std::max(y1, y);
      }
    }
  }
  if (!std::isfinite(x0)) return "<p>No data for " + escape(title) + " yet.</p>";
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1;
  if (!zero_to_one) y0 = std::min(y0, 0.0);
  const auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * (width - left - right); };
  const auto py = [&](double y) { return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom); };
  std::ostringstream svg;
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << width << "' height='" << height << "' role='img'>"
      << "<text x='" << left << "' y='18' class='title'>" << escape(title) << "</text>";
  const double ystep = tick_step(y1 - y0);
  for (double y = std::ceil(y0 / ystep) * ystep; y <= y1 + 1e-9; y += ystep) {
    svg << "<line x1='" << left << "' x2='" << width - right << "' y1='" << py(y) << "' y2='" << py(y) << "' class='grid'/>"
        << "<text x='" << left - 6 << "' y='" << py(y) + 4 << "' class='tick' text-anchor='end'>" << number(y, ystep < 0.1 ? 2 : 1) << "</text>";
  }
  const double xstep = std::max(1.0, tick_step(x1 - x0));
  for (double x = std::ceil(x0 / xstep) * xstep; x <= x1 + 1e-9; x += xstep) {
    svg << "<text x='" << px(x) << "' y='" << height - bottom + 16 << "' class='tick' text-anchor='middle'>" << number(x, 0) << "</text>";
  }
  svg << "<text x='" << (left + width - right) / 2 << "' y='" << height - 8 << "' class='tick' text-anchor='middle'>" << escape(x_label) << "</text>";
  double legend_x = left + 8;
  for (const Series& s : series) {
    std::string path;
    bool pen_down = false;
    for (auto [x, y] : s.points) {
      if (!std::isfinite(y)) {
        pen_down = false;
        continue;
      }
      path += (pen_down ? " L" : " M") + number(px(x), 1) + " " + number(py(y), 1);
      pen_down = true;
    }
    svg << "<path d='" << path << "' fill='none' stroke='" << s.colour << "' stroke-width='2'/>";
    if (s.points.size() == 1) svg << "<circle cx='" << px(s.points[0].first) << "' cy='" << py(s.points[0].second) << "' r='3' fill='" << s.colour << "'/>";
    svg << "<rect x='" << legend_x << "' y='" << top + 2 << "' width='10' height='10' fill='" << s.colour << "'/>"
        << "<text x='" << legend_x + 14 << "' y='" << top + 11 << "' class='tick'>" << escape(s.name) << "</text>";
    legend_x += 22 + 7.0 * static_cast<double>(s.name.size());
  }
  svg << "</svg>";
  return svg.str();
}

struct PatientScore {
  std::string name;
  double dice;
};

std::string bar_chart(std::vector<PatientScore> patients) {
  if (patients.empty()) return "<p>No per-patient results.</p>";
  std::sort(patients.begin(), patients.end(), [](const auto& a, const auto& b) { return a.dice > b.dice; });
  double mean = 0;
  for (const auto& p : patients) mean += p.dice;
  mean /= static_cast<double>(patients.size());
  std::vector<double> sorted;
  for (const auto& p : patients) sorted.push_back(p.dice);
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  const double median = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);

  constexpr double left = 56, top = 30, bottom = 110, plot_height = 220, bar = 18, gap = 4;
  const double width = std::max(420.0, left + 16 + static_cast<double>(n) * (bar + gap));
  const double height = top + plot_height + bottom;
  const auto py = [&](double y) { return top + (1 - y) * plot_height; };
  std::ostringstream svg;
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << width << "' height='" << height << "' role='img'>"
      << "<text x='" << left << "' y='18' class='title'>Per-volume Dice by patient (sorted)</text>";
  for (double y = 0; y <= 1.0001; y += 0.2) {
    svg << "<line x1='" << left << "' x2='" << width - 16 << "' y1='" << py(y) << "' y2='" << py(y) << "' class='grid'/>"
        << "<text x='" << left - 6 << "' y='" << py(y) + 4 << "' class='tick' text-anchor='end'>" << number(y, 1) << "</text>";
  }
  for (size_t i = 0; i < n; ++i) {
    const double x = left + static_cast<double>(i) * (bar + gap);
    svg << "<rect x='" << x << "' y='" << py(patients[i].dice) << "' width='" << bar << "' height='" << plot_height * patients[i].dice
        << "' fill='#4a7bd0'><title>" << escape(patients[i].name) << ": " << number(patients[i].dice) << "</title></rect>"
        << "<text transform='translate(" << x + bar / 2 + 4 << "," << top + plot_height + 6 << ") rotate(60)' class='tick'>"
        << escape(patients[i].name) << "</text>";
  }
  // The higher line's label above it, the lower one's below, so close values stay readable.
  for (auto [value, colour, label, above] : {std::tuple{mean, "#d04a4a", "mean", mean >= median},
                                             std::tuple{median, "#2a9d4a", "median", median > mean}}) {
    svg << "<line x1='" << left << "' x2='" << width - 16 << "' y1='" << py(value) << "' y2='" << py(value) << "' stroke='" << colour
        << "' stroke-dasharray='6 3' stroke-width='2'/>"
        << "<text x='" << width - 18 << "' y='" << py(value) + (above ? -4 : 13) << "' class='tick' text-anchor='end' fill='" << colour
        << "'>" << label << " " << number(value) << "</text>";
  }
  svg << "</svg>";
  return svg.str();
}

// How every page this command writes begins: what --out may replace without --force.
constexpr const char* page_start = "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>unet run: ";

// A number from a log record: NaN where it is absent or null (a non-finite value is written as null).
double number_at(const Json& record, const char* key) {
  const Json* value = record.find(key);
  return value != nullptr && value->is_number() ? value->as_number() : NAN;
}

// log.jsonl as the run folder writes it (docs/training.md): one record per line. A line that is not
// valid JSON (a kill in the middle of an append, which `unet train --resume` cuts off) is left out
// and named in `warnings`.
std::vector<Json> read_log(const std::string& text, std::vector<std::string>& warnings) {
  std::vector<Json> records;
  std::istringstream lines(text);
  std::string line;
  for (int number = 1; std::getline(lines, line); ++number) {
    if (line.empty()) continue;
    try {
      records.push_back(Json::parse(line));
    } catch (const Error&) {
      warnings.push_back("log.jsonl line " + std::to_string(number) + " is not valid JSON (an interrupted write?)");
    }
  }
  return records;
}

std::string read_if_exists(const fs::path& path) {
  std::error_code error;
  return fs::is_regular_file(path, error) ? read_text_file(path.string()) : std::string();
}

const char* page_style() {
  return "<style>body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}"
         "h1{font-size:22px}h2{font-size:17px;margin-top:28px}table{border-collapse:collapse}"
         "td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}"
         ".title{font-weight:600;font-size:13px}.tick{font-size:11px;fill:#444}.grid{stroke:#e4e4e4}"
         "figure{display:inline-block;margin:8px}img{width:256px;image-rendering:pixelated;border:1px solid #ccc}"
         "figcaption{font-size:12px}</style>";
}

double mean_of(const std::vector<double>& values) {
  double sum = 0;
  for (double v : values) sum += v;
  return values.empty() ? NAN : sum / static_cast<double>(values.size());
}

double median_of(std::vector<double> values) {
  if (values.empty()) return NAN;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

// One page for the fold runs of a K-fold cross-validation: per fold its best validation epoch and
// per-volume Dice, and over all folds' validation patients together (each patient validated by the
// one model that did not train on it: the cross-validation figure).
int cross_validation_report(const std::vector<std::string>& runs, std::string out, bool force) {
  struct Fold {
    std::string run;
    PatientSplit split;
    int best_epoch = 0;
    double best_mean = NAN, best_median = NAN;
    std::vector<PatientScore> patients;
  };
  std::vector<Fold> folds;
  for (const std::string& run : runs) {
    const fs::path folder(run);
    std::error_code error;
    if (!fs::is_directory(folder, error)) throw Error(run + ": no such run folder");
    Fold fold{run, load_split((folder / "split.json").string()), 0, NAN, NAN, {}};
    if (fold.split.folds == 0) {
      throw Error(run + ": not a cross-validation fold (its split.json has no folds; train with --folds)");
    }
    for (const Fold& other : folds) {
      if (other.split.folds != fold.split.folds || other.split.seed != fold.split.seed ||
          other.split.test != fold.split.test) {
        throw Error(run + ": a fold of another cross-validation than " + other.run + " (folds, seed or test patients differ)");
      }
      if (other.split.fold == fold.split.fold) {
        throw Error(run + ": fold " + std::to_string(fold.split.fold) + " again (also " + other.run + ")");
      }
    }
    const fs::path log_path = folder / "log.jsonl";
    const Json* patients = nullptr;
    std::vector<std::string> warnings;
    const std::vector<Json> log = read_log(read_if_exists(log_path), warnings);
    for (const std::string& warning : warnings) std::fprintf(stderr, "warning: %s: %s\n", run.c_str(), warning.c_str());
    for (const Json& record : log) {
      const Json* event = record.find("event");
      if (event == nullptr || !event->is_string()) continue;
      const double dice = event->as_string() == "epoch" ? number_at(record, "val_dice_mean") : NAN;
      if (std::isfinite(dice) && !(dice <= fold.best_mean)) {
        fold.best_mean = dice;
        fold.best_median = number_at(record, "val_dice_median");
        fold.best_epoch = static_cast<int>(record.at("epoch").as_integer());
      }
      if (event->as_string() == "val_patients") patients = &record;  // the best epoch's, written at the end
    }
    if (patients == nullptr) throw Error(run + ": its log.jsonl has no validation patients (the run has not finished)");
    for (const Json& patient : patients->at("patients").items()) {
      fold.patients.push_back({patient.at("patient").as_string(), number_at(patient, "dice")});
    }
    folds.push_back(std::move(fold));
  }
  std::sort(folds.begin(), folds.end(), [](const Fold& a, const Fold& b) { return a.split.fold < b.split.fold; });
  if (out.empty()) out = (fs::path(runs.front()).parent_path() / "cross_validation.html").string();
  refuse_replacing_another_kind(out, "a page unet report wrote", [](const std::string& path) {
    return file_starts_with(path, page_start);
  }, force);

  std::vector<PatientScore> all;
  std::vector<double> all_dice, fold_means;
  std::string rows;
  for (const Fold& fold : folds) {
    std::vector<double> dice;
    for (const PatientScore& p : fold.patients) dice.push_back(p.dice);
    all.insert(all.end(), fold.patients.begin(), fold.patients.end());
    all_dice.insert(all_dice.end(), dice.begin(), dice.end());
    fold_means.push_back(fold.best_mean);
    rows += "<tr><td>" + std::to_string(fold.split.fold) + "</td><td>" + escape(fold.run) + "</td><td>" +
            std::to_string(fold.split.val.size()) + "</td><td>" + std::to_string(fold.best_epoch) + "</td><td>" +
            number(fold.best_mean) + "</td><td>" + number(fold.best_median) + "</td></tr>";
  }
  const double spread_mean = mean_of(fold_means);
  double squares = 0;
  for (double m : fold_means) squares += (m - spread_mean) * (m - spread_mean);
  const double spread = fold_means.size() > 1 ? std::sqrt(squares / static_cast<double>(fold_means.size() - 1)) : NAN;
  const int k = folds.front().split.folds;

  std::ostringstream html;
  html << page_start << "cross-validation</title>" << page_style()
       << "</head><body><h1>Cross-validation: " << folds.size() << " of " << k << " folds</h1>"
       << "<p>Seed " << folds.front().split.seed << "; " << folds.front().split.test.size()
       << " test patients held out of every fold (score them with <code>unet eval --split</code>).</p>"
       << "<table><tr><th>fold</th><th>run</th><th>validation patients</th><th>best epoch</th>"
          "<th>per-volume Dice mean</th><th>median</th></tr>"
       << rows << "</table>"
       << "<h2>All folds' validation patients</h2><p>" << all_dice.size() << " patients, each scored by the fold that "
       << "did not train on it: per-volume Dice mean <b>" << number(mean_of(all_dice)) << "</b>, median "
       << number(median_of(all_dice)) << ". Mean of the fold means " << number(spread_mean) << " (standard deviation "
       << number(spread) << " over " << fold_means.size() << " folds).</p>"
       << bar_chart(all)
       << "<p style='margin-top:24px;color:#777'>Each fold's best epoch is chosen on its own validation patients, so "
          "these figures are optimistic; the test patients are the unbiased figure. Metrics as defined in "
          "docs/metrics.md. Written by unet report.</p></body></html>\n";
  write_file_atomic(out, html.str());
  std::printf("wrote %s (%zu folds, %zu validation patients, per-volume Dice mean %.4f)\n", out.c_str(), folds.size(),
              all_dice.size(), mean_of(all_dice));
  return 0;
}

}  // namespace

int command_report(const Args& args) {
  std::string out;
  std::vector<std::string> runs;
  bool force = false;
  Options options("report", "Writes RUN_DIR/report.html: loss and Dice curves, the per-patient Dice chart with its mean\nand median, and overlays of the best, median and worst patients. One file, no network needed.\nGiven the fold runs of a cross-validation (unet train --folds K --fold i), writes one page\nfor them all: each fold's best epoch and Dice, and all folds' validation patients together\n(default file: cross_validation.html beside the first run).\nusage: unet report RUN_DIR [--out FILE] | unet report RUN_0 RUN_1 ... [--out FILE]");
  options.add("out", &out, "FILE", "where to write the page (default RUN_DIR/report.html)")
      .flag("force", &force, "replace --out even if it is not a page unet report wrote");
  Args rest;
  for (size_t i = 0; i < args.size(); ++i) {
    if (!args[i].empty() && args[i][0] != '-') {
      runs.push_back(args[i]);
    } else {
      rest.push_back(args[i]);
      if (args[i] == "--out" && i + 1 < args.size()) rest.push_back(args[++i]);
    }
  }
  if (!options.parse(rest)) return 0;
  if (runs.empty()) throw UsageError("report: which run? unet report RUN_DIR");
  if (runs.size() > 1) return cross_validation_report(runs, out, force);
  const std::string run = runs.front();
  const fs::path folder(run);
  std::error_code error;
  if (!fs::is_directory(folder, error)) throw Error(run + ": no such run folder");
  const fs::path log_path = folder / "log.jsonl";
  std::vector<std::string> warnings;
  const std::vector<Json> log = read_log(read_if_exists(log_path), warnings);
  for (const std::string& warning : warnings) std::fprintf(stderr, "warning: %s: %s\n", run.c_str(), warning.c_str());
  if (log.empty()) throw Error(run + ": no log.jsonl (not a unet train run folder)");
  if (out.empty()) out = (folder / "report.html").string();
  refuse_replacing_another_kind(out, "a page unet report wrote", [](const std::string& path) {
    return file_starts_with(path, page_start);
  }, force);

  // The last record of each epoch (an epoch run again after a resume replaces the first), and the
  // last val_patients record (the best epoch's patients).
  std::map<int64_t, const Json*> epochs;
  const Json* patients_record = nullptr;
  for (const Json& record : log) {
    const Json* event = record.find("event");
    if (event == nullptr || !event->is_string()) continue;
    if (event->as_string() == "epoch") epochs[record.at("epoch").as_integer()] = &record;
    if (event->as_string() == "val_patients") patients_record = &record;
  }
  Series train_loss{"train loss", "#4a7bd0", {}}, val_bce{"validation BCE", "#d04a4a", {}};
  Series dice_mean{"per-volume mean", "#4a7bd0", {}}, dice_median{"per-volume median", "#2a9d4a", {}},
      slice_dice{"slice", "#d08a2a", {}}, global_dice{"global", "#8a4ad0", {}};
  for (const auto& [epoch_number, record] : epochs) {
    const auto epoch = static_cast<double>(epoch_number);
    train_loss.points.emplace_back(epoch, number_at(*record, "train_loss"));
    val_bce.points.emplace_back(epoch, number_at(*record, "val_bce"));
    dice_mean.points.emplace_back(epoch, number_at(*record, "val_dice_mean"));
    dice_median.points.emplace_back(epoch, number_at(*record, "val_dice_median"));
    slice_dice.points.emplace_back(epoch, number_at(*record, "val_slice_dice"));
    global_dice.points.emplace_back(epoch, number_at(*record, "val_global_dice"));
  }

  std::string header_rows;
  for (const std::string& warning : warnings) header_rows += "<tr><th>warning</th><td>" + escape(warning) + "</td></tr>";
  const Json& start = log.front();
  for (const char* key : {"commit", "device", "device_name", "started"}) {
    if (const Json* value = start.find(key); value && value->is_string()) {
      header_rows += "<tr><th>" + std::string(key) + "</th><td>" + escape(value->as_string()) + "</td></tr>";
    }
  }
  if (const Json* flags = start.find("flags"); flags && flags->is_object()) {
    std::string text;
    for (const auto& [key, value] : flags->members()) {
      if (value.type() == Json::Type::boolean) {
        if (value.as_bool()) text += "--" + key + " ";  // a switch: shown when on
      } else if (!(value.is_string() && value.as_string().empty())) {
        text += "--" + key + " " + (value.is_string() ? value.as_string() : value.dump()) + " ";
      }
    }
    header_rows += "<tr><th>flags</th><td><code>" + escape(text) + "</code></td></tr>";
  }

  std::vector<PatientScore> patients;
  std::string patient_table;
  if (patients_record != nullptr) {
    patient_table = "<table><tr><th>patient</th><th>slices</th><th>Dice</th><th>IoU</th><th>true voxels</th><th>predicted voxels</th></tr>";
    for (const Json& patient : patients_record->at("patients").items()) {
      const std::string& name = patient.at("patient").as_string();
      patients.push_back({name, number_at(patient, "dice")});
      patient_table += "<tr><td>" + escape(name) + "</td><td>" + patient.at("slices").dump() + "</td><td>" +
                       number(number_at(patient, "dice")) + "</td><td>" + number(number_at(patient, "iou")) +
                       "</td><td>" + patient.at("true_voxels").dump() + "</td><td>" +
                       patient.at("predicted_voxels").dump() + "</td></tr>";
    }
    patient_table += "</table>";
  }

  std::string overlays;
  if (fs::is_directory(folder / "overlays", error)) {
    std::vector<fs::path> pictures;
    for (const auto& entry : fs::directory_iterator(folder / "overlays")) {
      if (entry.path().extension() == ".png") pictures.push_back(entry.path());
    }
    std::sort(pictures.begin(), pictures.end());
    for (const fs::path& picture : pictures) {
      overlays += "<figure><img alt='" + escape(picture.stem().string()) + "' src='data:image/png;base64," +
                  base64(read_file(picture.string())) + "'/><figcaption>" + escape(picture.stem().string()) + "</figcaption></figure>";
    }
  }

  std::ostringstream html;
  html << page_start << escape(folder.filename().string()) << "</title>" << page_style() << "</head><body>"
       << "<h1>Run " << escape(folder.filename().string()) << "</h1><table>" << header_rows << "</table>"
       << "<h2>Training</h2>" << line_chart("Loss", "epoch", {train_loss, val_bce}, false)
       << line_chart("Validation Dice", "epoch", {dice_mean, dice_median, slice_dice, global_dice}, true)
       << "<h2>Validation patients</h2>" << bar_chart(patients) << patient_table
       << "<h2>Overlays</h2><p>FLAIR in grey; ground truth outlined in red, prediction in green.</p>"
       << (overlays.empty() ? "<p>No overlays in this run folder.</p>" : overlays)
       << "<p style='margin-top:24px;color:#777'>Metrics as defined in docs/metrics.md. Written by unet report.</p></body></html>\n";
  write_file_atomic(out, html.str());
  std::printf("wrote %s\n", out.c_str());
  return 0;
}

}  // namespace unet
