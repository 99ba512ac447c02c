// A node's attributes (ints, floats, bools, strings, int and float lists) with typed getters whose
// errors name the attribute, the expected type and what was found.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace pyrnn::graph {

using AttrValue = std::variant<std::int64_t, double, bool, std::string, std::vector<std::int64_t>,
                               std::vector<double>>;

class Attrs {
 public:
  void set(const std::string& name, AttrValue value) { values_[name] = std::move(value); }
  bool has(const std::string& name) const { return values_.count(name) != 0; }

  // Each throws std::invalid_argument if the attribute is missing or of another type.
  std::int64_t integer(const std::string& name) const;
  // An int within [low, high].
  std::int64_t integer(const std::string& name, std::int64_t low, std::int64_t high) const;
  // A number: floats, or ints converted.
  double number(const std::string& name) const;
  bool boolean(const std::string& name) const;
  const std::string& text(const std::string& name) const;
  const std::vector<std::int64_t>& integers(const std::string& name) const;
  // A number list: floats, or ints converted.
  std::vector<double> numbers(const std::string& name) const;

 private:
  const AttrValue& get(const std::string& name) const;
  std::map<std::string, AttrValue> values_;
};

}  // namespace pyrnn::graph
