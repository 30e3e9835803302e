// A JSON Schema subset checker for the tests (the subset docs/openapi.json uses): type (a name or an
// array of names, "null" for nullable), properties, required, additionalProperties, items, enum, oneOf,
// anyOf, $ref to "#/..." in the root document, minimum/maximum, minItems/maxItems, minLength/maxLength,
// format "date-time" (RFC 3339 in UTC: ends in "Z"). Strict: an object schema with `properties` and no
// `additionalProperties` rejects every key it does not declare, so a field the API emits but the document
// lacks fails; a keyword outside the subset is an error too (it would otherwise be ignored silently).
#pragma once

#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <string_view>
#include <vector>

namespace rapport::test {

class JsonSchemaChecker {
 public:
  explicit JsonSchemaChecker(simdjson::dom::element root) : root_(root) {}

  // Every way `instance` fails `schema`, each as "<path>: <what>"; empty when it conforms.
  std::vector<std::string> validate(simdjson::dom::element instance, simdjson::dom::element schema,
                                    const std::string& path = "$") const {
    std::vector<std::string> errors;
    check(instance, schema, path, errors, 0);
    return errors;
  }

  // The element a "#/a/b" reference names (~1 and ~0 unescaped); an error when there is none.
  simdjson::simdjson_result<simdjson::dom::element> resolve(std::string_view ref) const {
    if (ref.substr(0, 1) != "#") return simdjson::INVALID_JSON_POINTER;
    std::string pointer;
    for (std::size_t i = 1; i < ref.size(); ++i) pointer.push_back(ref[i]);
    return root_.at_pointer(pointer);
  }

 private:
  static bool is_type(simdjson::dom::element v, std::string_view type) {
    using simdjson::dom::element_type;
    const element_type t = v.type();
    if (type == "null") return t == element_type::NULL_VALUE;
    if (type == "boolean") return t == element_type::BOOL;
    if (type == "string") return t == element_type::STRING;
    if (type == "array") return t == element_type::ARRAY;
    if (type == "object") return t == element_type::OBJECT;
    if (type == "number") return t == element_type::INT64 || t == element_type::UINT64 || t == element_type::DOUBLE;
    if (type == "integer") {
      if (t == element_type::INT64 || t == element_type::UINT64) return true;
      double d = 0;
      return t == element_type::DOUBLE && v.get_double().get(d) == simdjson::SUCCESS && std::floor(d) == d;
    }
    return false;
  }

  static std::string text(simdjson::dom::element v) { return simdjson::minify(v); }

  static bool utc_date_time(std::string_view s) {
    // YYYY-MM-DDTHH:MM:SS[.fraction]Z
    if (s.size() < 20 || s.back() != 'Z' || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':') {
      return false;
    }
    for (std::size_t i : {0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18}) {
      if (s[i] < '0' || s[i] > '9') return false;
    }
    if (s.size() == 20) return true;
    if (s[19] != '.' || s.size() < 22) return false;
    return std::all_of(s.begin() + 20, s.end() - 1, [](char c) { return c >= '0' && c <= '9'; });
  }

  void check(simdjson::dom::element v, simdjson::dom::element schema, const std::string& path,
             std::vector<std::string>& errors, int depth) const {
    if (depth > 64) {
      errors.push_back(path + ": schema nests too deep (a $ref cycle?)");
      return;
    }
    simdjson::dom::object s;
    if (schema.get_object().get(s) != simdjson::SUCCESS) {
      errors.push_back(path + ": the schema is not an object");
      return;
    }
    static constexpr std::string_view kKnown[] = {
        "$ref",    "type",       "properties", "required",  "additionalProperties",
        "items",   "enum",       "oneOf",      "anyOf",     "minimum",
        "maximum", "minItems",   "maxItems",   "minLength", "maxLength",
        "format",  "description"};
    for (const auto field : s) {
      if (std::find(std::begin(kKnown), std::end(kKnown), field.key) == std::end(kKnown)) {
        errors.push_back(path + ": the schema uses \"" + std::string(field.key) + "\", outside the checked subset");
      }
    }
    simdjson::dom::element sub;
    std::string_view ref;
    if (s["$ref"].get_string().get(ref) == simdjson::SUCCESS) {
      if (resolve(ref).get(sub) != simdjson::SUCCESS) {
        errors.push_back(path + ": unresolvable $ref " + std::string(ref));
        return;
      }
      check(v, sub, path, errors, depth + 1);
    }
    if (s["type"].get(sub) == simdjson::SUCCESS) {
      bool ok = false;
      std::string names;
      if (sub.is_string()) {
        ok = is_type(v, std::string_view(sub.get_string()));
        names = std::string(std::string_view(sub.get_string()));
      } else {
        for (simdjson::dom::element t : sub.get_array()) {
          ok = ok || is_type(v, std::string_view(t.get_string()));
          names += (names.empty() ? "" : "|") + std::string(std::string_view(t.get_string()));
        }
      }
      if (!ok) {
        errors.push_back(path + ": " + text(v) + " is not of type " + names);
        return;
      }
    }
    simdjson::dom::array list;
    if (s["enum"].get_array().get(list) == simdjson::SUCCESS) {
      const std::string have = text(v);
      bool found = false;
      for (simdjson::dom::element e : list) found = found || text(e) == have;
      if (!found) errors.push_back(path + ": " + have + " is not one of " + text(s["enum"].value_unsafe()));
    }
    for (const char* keyword : {"oneOf", "anyOf"}) {
      if (s[keyword].get_array().get(list) != simdjson::SUCCESS) continue;
      std::size_t matches = 0;
      std::vector<std::string> why;
      for (simdjson::dom::element branch : list) {
        std::vector<std::string> branch_errors;
        check(v, branch, path, branch_errors, depth + 1);
        if (branch_errors.empty()) {
          ++matches;
        } else {
          why.push_back(branch_errors.front());
        }
      }
      const bool ok = std::string_view(keyword) == "oneOf" ? matches == 1 : matches >= 1;
      if (!ok) {
        std::string message = path + ": matches " + std::to_string(matches) + " branches of " + keyword;
        for (const std::string& w : why) message += "; " + w;
        errors.push_back(message);
      }
    }
    double bound = 0, number = 0;
    if (v.get_double().get(number) == simdjson::SUCCESS) {
      if (s["minimum"].get_double().get(bound) == simdjson::SUCCESS && number < bound) {
        errors.push_back(path + ": " + text(v) + " is below the minimum " + std::to_string(bound));
      }
      if (s["maximum"].get_double().get(bound) == simdjson::SUCCESS && number > bound) {
        errors.push_back(path + ": " + text(v) + " is above the maximum " + std::to_string(bound));
      }
    }
    std::uint64_t count = 0;
    std::string_view str;
    if (v.get_string().get(str) == simdjson::SUCCESS) {
      if (s["minLength"].get_uint64().get(count) == simdjson::SUCCESS && str.size() < count) {
        errors.push_back(path + ": shorter than " + std::to_string(count));
      }
      if (s["maxLength"].get_uint64().get(count) == simdjson::SUCCESS && str.size() > count) {
        errors.push_back(path + ": longer than " + std::to_string(count));
      }
      std::string_view format;
      if (s["format"].get_string().get(format) == simdjson::SUCCESS && format == "date-time" && !utc_date_time(str)) {
        errors.push_back(path + ": \"" + std::string(str) + "\" is not an RFC 3339 UTC time");
      }
    }
    simdjson::dom::array items_of;
    if (v.get_array().get(items_of) == simdjson::SUCCESS) {
      if (s["minItems"].get_uint64().get(count) == simdjson::SUCCESS && items_of.size() < count) {
        errors.push_back(path + ": fewer than " + std::to_string(count) + " items");
      }
      if (s["maxItems"].get_uint64().get(count) == simdjson::SUCCESS && items_of.size() > count) {
        errors.push_back(path + ": more than " + std::to_string(count) + " items");
      }
      if (s["items"].get(sub) == simdjson::SUCCESS) {
        std::size_t i = 0;
        for (simdjson::dom::element item : items_of)
          check(item, sub, path + "[" + std::to_string(i++) + "]", errors, depth + 1);
      }
    }
    simdjson::dom::object instance;
    if (v.get_object().get(instance) != simdjson::SUCCESS) return;
    simdjson::dom::object properties;
    const bool has_properties = s["properties"].get_object().get(properties) == simdjson::SUCCESS;
    if (s["required"].get_array().get(list) == simdjson::SUCCESS) {
      for (simdjson::dom::element name : list) {
        if (instance[std::string_view(name.get_string())].error() != simdjson::SUCCESS) {
          errors.push_back(path + ": lacks the required \"" + std::string(std::string_view(name.get_string())) + "\"");
        }
      }
    }
    simdjson::dom::element additional;
    const bool has_additional = s["additionalProperties"].get(additional) == simdjson::SUCCESS;
    for (const auto field : instance) {
      const std::string field_path = path + "." + std::string(field.key);
      if (has_properties && properties[field.key].get(sub) == simdjson::SUCCESS) {
        check(field.value, sub, field_path, errors, depth + 1);
      } else if (has_additional && additional.is_bool()) {
        if (!bool(additional.get_bool())) errors.push_back(field_path + ": not in the document");
      } else if (has_additional) {
        check(field.value, additional, field_path, errors, depth + 1);
      } else if (has_properties) {
        errors.push_back(field_path + ": not in the document");  // strict by default
      }
    }
  }

  simdjson::dom::element root_;
};

}  // namespace rapport::test
