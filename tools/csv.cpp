#include "tools/csv.h"

#include <cmath>
#include <cstdlib>

#include "kernels/backend.h"

namespace unet {

std::string csv_line(const CsvRow& fields) {
  std::string line;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i) line += ',';
    const std::string& f = fields[i];
    if (f.find_first_of(",\"\n\r") == std::string::npos) {
      line += f;
      continue;
    }
    line += '"';
    for (char c : f) line += c == '"' ? std::string("\"\"") : std::string(1, c);
    line += '"';
  }
  return line;
}

std::vector<CsvRow> parse_csv(const std::string& text, const std::string& source) {
  std::vector<CsvRow> rows;
  CsvRow row;
  std::string field;
  bool quoted = false, any = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
      continue;
    }
    if (c == '"') {
      quoted = any = true;
    } else if (c == ',') {
      row.push_back(field);
      field.clear();
      any = true;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      if (any || !field.empty()) {
        row.push_back(field);
        rows.push_back(row);
      }
      row.clear();
      field.clear();
      any = false;
    } else {
      field += c;
      any = true;
    }
  }
  if (quoted) throw Error(source + ": unterminated quoted field");
  if (any || !field.empty()) {
    row.push_back(field);
    rows.push_back(row);
  }
  return rows;
}

CsvTable::CsvTable(const std::string& text, const std::string& source) : source_(source) {
  std::vector<CsvRow> all = parse_csv(text, source);
  if (all.empty()) throw Error(source + ": empty CSV");
  header_ = all.front();
  rows_.assign(all.begin() + 1, all.end());
  for (const CsvRow& row : rows_) {
    if (row.size() != header_.size()) throw Error(source + ": a row has " + std::to_string(row.size()) + " fields, the header " + std::to_string(header_.size()));
  }
}

bool CsvTable::has(const std::string& column) const {
  for (const auto& name : header_) {
    if (name == column) return true;
  }
  return false;
}

const std::string& CsvTable::text(size_t row, const std::string& column) const {
  for (size_t c = 0; c < header_.size(); ++c) {
    if (header_[c] == column) return rows_.at(row)[c];
  }
  throw Error(source_ + ": no column '" + column + "'");
}

double CsvTable::number(size_t row, const std::string& column) const {
  const std::string& value = text(row, column);
  char* end = nullptr;
  const double number = std::strtod(value.c_str(), &end);
  return value.empty() || end != value.c_str() + value.size() ? std::nan("") : number;
}

}  // namespace unet
