// Reads a TOML or JSON file into JSON (by extension: .json is JSON, anything else TOML),
// so the topology and task files may be written in either. Errors name the file and,
// for TOML, the line.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "migratefs/status.h"

namespace migratefs::scheduler {

Result<nlohmann::json> LoadDocument(const std::string& path);

// Field checks shared by the file parsers: each error names `where` + key.
class JsonFields {
 public:
  JsonFields(const nlohmann::json& object, std::string where)
      : object_(object), where_(std::move(where)) {}
  // A non-empty string; "" (and an error) when absent or mistyped, unless optional.
  std::string String(const char* key, bool required = true);
  double Number(const char* key, double fallback, bool required = false);
  bool Bool(const char* key, bool fallback);
  std::vector<std::string> Strings(const char* key);  // non-empty array of non-empty strings
  void Known(std::initializer_list<const char*> keys);  // any other key is an error
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  void Fail(const std::string& key, const std::string& what);

 private:
  const nlohmann::json& object_;
  std::string where_;
  std::string error_;
};

}  // namespace migratefs::scheduler
