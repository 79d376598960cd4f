// Training configuration: one schema of dotted keys with types, defaults and help, read from a
// TOML file (comments allowed) plus `key=value` overrides; unknown keys and bad values are errors.
#pragma once

#include <map>
#include <string>
#include <variant>
#include <vector>

namespace ff {

using ConfigValue = std::variant<bool, int64_t, double, std::string, std::vector<std::string>>;

struct ConfigKey {
  std::string key;  // "method.rho"
  ConfigValue value;
  std::string help;
};

class Config {
 public:
  Config();  // every key at its default
  // Applies a TOML file: every key must be in the schema and of its type.
  void load_toml(const std::string& path);
  // The same for TOML text (a checkpoint's saved config); `origin` names it in errors.
  void load_toml_text(const std::string& text, const std::string& origin);
  // Applies "key=value" (value parsed by the key's type; lists comma-separated).
  void set(const std::string& assignment);

  bool get_bool(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_double(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;
  const std::vector<std::string>& get_list(const std::string& key) const;
  bool is_set(const std::string& key) const { return explicitly_set_.count(key) > 0; }

  std::string to_toml() const;   // every key with its value, loadable again
  std::string value_text(const std::string& key) const;  // the value for messages: strings bare
  // Keys whose values differ between the two configs, in schema order.
  std::vector<std::string> differing_keys(const Config& other) const;
  static std::string help();     // every key with its default and meaning
  const std::vector<ConfigKey>& keys() const { return keys_; }

 private:
  ConfigKey& find(const std::string& key);
  const ConfigKey& find(const std::string& key) const;
  std::vector<ConfigKey> keys_;
  std::map<std::string, int> explicitly_set_;
};

}  // namespace ff
