// Internal: JSON string quoting shared by the writers of keel_check.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace keel::checker::internal {

// Appends `s` to `out` as a JSON string literal (with quotes).
void appendJsonString(std::string& out, std::string_view s);
// A JSON string literal, or `null` for nullopt.
std::string jsonValue(const std::optional<std::string>& v);

}  // namespace keel::checker::internal
