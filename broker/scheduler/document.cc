#include "broker/scheduler/document.h"

#include <fstream>
#include <set>
#include <sstream>
#include <toml++/toml.h>

namespace migratefs::scheduler {

using nlohmann::json;

namespace {

json FromToml(const toml::node& node) {
  if (const toml::table* t = node.as_table()) {
    json out = json::object();
    for (const auto& [key, value] : *t) out[std::string(key.str())] = FromToml(value);
    return out;
  }
  if (const toml::array* a = node.as_array()) {
    json out = json::array();
    for (const toml::node& item : *a) out.push_back(FromToml(item));
    return out;
  }
  if (auto s = node.value_exact<std::string>()) return *s;
  if (auto i = node.value_exact<int64_t>()) return *i;
  if (auto d = node.value_exact<double>()) return *d;
  if (auto b = node.value_exact<bool>()) return *b;
  std::ostringstream text;  // dates and times: kept as text
  if (auto d = node.value_exact<toml::date>()) text << *d;
  if (auto t = node.value_exact<toml::time>()) text << *t;
  if (auto dt = node.value_exact<toml::date_time>()) text << *dt;
  return text.str();
}

}  // namespace

Result<json> LoadDocument(const std::string& path) {
  std::ifstream in(path);
  if (!in) return MakeError(errc::kInvalidArgument, path + ": cannot be read");
  std::stringstream text;
  text << in.rdbuf();
  if (path.size() >= 5 && path.substr(path.size() - 5) == ".json") {
    json doc = json::parse(text.str(), nullptr, false);
    if (doc.is_discarded()) return MakeError(errc::kInvalidArgument, path + ": malformed JSON");
    return doc;
  }
  try {
    return FromToml(toml::parse(text.str(), path));
  } catch (const toml::parse_error& e) {
    std::ostringstream where;
    where << path << ":" << e.source().begin.line << ": " << e.description();
    return MakeError(errc::kInvalidArgument, where.str());
  }
}

void JsonFields::Fail(const std::string& key, const std::string& what) {
  if (error_.empty()) error_ = where_ + "field \"" + key + "\" " + what;
}

std::string JsonFields::String(const char* key, bool required) {
  if (!object_.contains(key)) {
    if (required) Fail(key, "is missing (a string)");
    return "";
  }
  const json& v = object_[key];
  if (!v.is_string() || v.get_ref<const std::string&>().empty()) {
    Fail(key, "must be a non-empty string");
    return "";
  }
  return v.get<std::string>();
}

double JsonFields::Number(const char* key, double fallback, bool required) {
  if (!object_.contains(key)) {
    if (required) Fail(key, "is missing (a number)");
    return fallback;
  }
  if (!object_[key].is_number()) {
    Fail(key, "must be a number");
    return fallback;
  }
  return object_[key].get<double>();
}

bool JsonFields::Bool(const char* key, bool fallback) {
  if (!object_.contains(key)) return fallback;
  if (!object_[key].is_boolean()) {
    Fail(key, "must be true or false");
    return fallback;
  }
  return object_[key].get<bool>();
}

std::vector<std::string> JsonFields::Strings(const char* key) {
  std::vector<std::string> out;
  if (!object_.contains(key)) {
    Fail(key, "is missing (an array of strings)");
    return out;
  }
  const json& v = object_[key];
  if (!v.is_array() || v.empty()) {
    Fail(key, "must be a non-empty array of strings");
    return out;
  }
  for (const json& item : v) {
    if (!item.is_string() || item.get_ref<const std::string&>().empty()) {
      Fail(key, "must hold non-empty strings only");
      return {};
    }
    out.push_back(item.get<std::string>());
  }
  return out;
}

void JsonFields::Known(std::initializer_list<const char*> keys) {
  std::set<std::string> known(keys.begin(), keys.end());
  for (const auto& [key, value] : object_.items()) {
    if (!known.count(key)) Fail(key, "is not a known field");
  }
}

}  // namespace migratefs::scheduler
