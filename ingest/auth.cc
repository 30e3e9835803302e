#include "ingest/auth.h"

#include <utility>

namespace rapport {
namespace {

// Constant-time equality for the length of `expected`; the length itself is not secret.
bool constant_time_equal(std::string_view presented, std::string_view expected) {
  unsigned char diff = presented.size() == expected.size() ? 0 : 1;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const unsigned char p = i < presented.size() ? static_cast<unsigned char>(presented[i]) : 0;
    diff |= static_cast<unsigned char>(p ^ static_cast<unsigned char>(expected[i]));
  }
  return diff == 0;
}

}  // namespace

TokenSet::TokenSet(std::vector<TokenGrant> grants) : grants_(std::move(grants)) {}

AuthResult TokenSet::check(std::string_view token, Scope needed) const {
  if (grants_.empty()) return AuthResult::kAllowed;
  if (token.empty()) return AuthResult::kMissing;
  const TokenGrant* match = nullptr;
  for (const TokenGrant& grant : grants_) {
    // No early exit: every token is compared.
    if (constant_time_equal(token, grant.token)) match = &grant;
  }
  if (match == nullptr) return AuthResult::kInvalid;
  const auto bit = static_cast<std::uint8_t>(needed);
  if ((match->scopes & bit) != 0 || (match->scopes & static_cast<std::uint8_t>(Scope::kAdmin)) != 0) {
    return AuthResult::kAllowed;
  }
  return AuthResult::kForbidden;
}

std::string TokenSet::describe(std::string_view token) const {
  if (grants_.empty()) return "open";
  if (token.empty()) return "no token";
  std::size_t match = grants_.size();
  for (std::size_t i = 0; i < grants_.size(); ++i) {
    if (constant_time_equal(token, grants_[i].token)) match = i;  // no early exit, as in check()
  }
  if (match == grants_.size()) return "unknown token";
  std::string scopes;
  static constexpr std::pair<Scope, const char*> kNames[] = {
      {Scope::kIngest, "ingest"}, {Scope::kRead, "read"}, {Scope::kAdmin, "admin"}};
  for (const auto& [bit, name] : kNames) {
    if ((grants_[match].scopes & static_cast<std::uint8_t>(bit)) == 0) continue;
    if (!scopes.empty()) scopes += ',';
    scopes += name;
  }
  return "auth.tokens[" + std::to_string(match) + "] (" + scopes + ")";
}

std::uint8_t TokenSet::parse_scopes(std::string_view list) {
  std::uint8_t scopes = 0;
  while (!list.empty()) {
    const auto comma = list.find(',');
    std::string_view name = list.substr(0, comma);
    while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
    while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
    if (name == "ingest") {
      scopes |= static_cast<std::uint8_t>(Scope::kIngest);
    } else if (name == "read") {
      scopes |= static_cast<std::uint8_t>(Scope::kRead);
    } else if (name == "admin") {
      scopes |= static_cast<std::uint8_t>(Scope::kAdmin);
    } else {
      return 0;
    }
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return scopes;
}

}  // namespace rapport
