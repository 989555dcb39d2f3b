// CSV as the run folder writes it (metrics.csv, per-patient tables): a header row, then one row per
// record; fields with a comma, a quote or a line break are quoted, as RFC 4180 says.
#pragma once

#include <string>
#include <vector>

namespace unet {

using CsvRow = std::vector<std::string>;

std::string csv_line(const CsvRow& fields);
// Rows of a CSV text (header included); throws unet::Error naming `source` on an unterminated quote.
std::vector<CsvRow> parse_csv(const std::string& text, const std::string& source);

// A CSV table read by column name.
class CsvTable {
 public:
  CsvTable(const std::string& text, const std::string& source);
  size_t rows() const { return rows_.size(); }
  bool has(const std::string& column) const;
  const std::string& text(size_t row, const std::string& column) const;
  double number(size_t row, const std::string& column) const;  // NaN if empty or not a number

 private:
  std::string source_;
  CsvRow header_;
  std::vector<CsvRow> rows_;
};

}  // namespace unet
