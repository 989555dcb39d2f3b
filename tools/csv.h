// CSV as the run folder and `unet eval --csv` write it (metrics.csv, per-patient tables), for
// spreadsheets: fields with a comma, a quote or a line break are quoted, as RFC 4180 says. Nothing
// in unet reads CSV back: `unet report` reads log.jsonl.
#pragma once

#include <string>
#include <vector>

namespace unet {

using CsvRow = std::vector<std::string>;

std::string csv_line(const CsvRow& fields);

}  // namespace unet
