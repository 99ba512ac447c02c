// Typed access to node attributes.
#include "graph/attrs.h"

#include <stdexcept>

namespace pyrnn::graph {
namespace {

const char* type_name(const AttrValue& value) {
  static const char* const kNames[] = {"an int",   "a float",     "a bool",
                                       "a string", "an int list", "a float list"};
  return kNames[value.index()];
}

[[noreturn]] void wrong_type(const std::string& name, const char* expected,
                             const AttrValue& value) {
  throw std::invalid_argument("attribute '" + name + "': expected " + expected + ", got " +
                              type_name(value));
}

}  // namespace

const AttrValue& Attrs::get(const std::string& name) const {
  const auto found = values_.find(name);
  if (found == values_.end()) throw std::invalid_argument("attribute '" + name + "' is missing");
  return found->second;
}

std::int64_t Attrs::integer(const std::string& name) const {
  const AttrValue& value = get(name);
  if (const auto* v = std::get_if<std::int64_t>(&value)) return *v;
  wrong_type(name, "an int", value);
}

std::int64_t Attrs::integer(const std::string& name, std::int64_t low, std::int64_t high) const {
  const std::int64_t v = integer(name);
  if (v < low || v > high)
    throw std::invalid_argument("attribute '" + name + "': expected an int in [" +
                                std::to_string(low) + ", " + std::to_string(high) + "], got " +
                                std::to_string(v));
  return v;
}

double Attrs::number(const std::string& name) const {
  const AttrValue& value = get(name);
  if (const auto* v = std::get_if<double>(&value)) return *v;
  if (const auto* v = std::get_if<std::int64_t>(&value)) return static_cast<double>(*v);
  wrong_type(name, "a number", value);
}

bool Attrs::boolean(const std::string& name) const {
  const AttrValue& value = get(name);
  if (const auto* v = std::get_if<bool>(&value)) return *v;
  wrong_type(name, "a bool", value);
}

const std::string& Attrs::text(const std::string& name) const {
  const AttrValue& value = get(name);
  if (const auto* v = std::get_if<std::string>(&value)) return *v;
  wrong_type(name, "a string", value);
}

const std::vector<std::int64_t>& Attrs::integers(const std::string& name) const {
  const AttrValue& value = get(name);
  if (const auto* v = std::get_if<std::vector<std::int64_t>>(&value)) return *v;
  wrong_type(name, "an int list", value);
}

std::vector<double> Attrs::numbers(const std::string& name) const {
  const AttrValue& value = get(name);
  if (const auto* v = std::get_if<std::vector<double>>(&value)) return *v;
  if (const auto* v = std::get_if<std::vector<std::int64_t>>(&value))
    return std::vector<double>(v->begin(), v->end());
  wrong_type(name, "a number list", value);
}

}  // namespace pyrnn::graph
