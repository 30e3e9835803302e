// TokenSet: bearer tokens and their scopes, checked in constant time.
//
// Immutable after construction; share it as std::shared_ptr<const TokenSet>
// and swap the pointer on reload. Thread safety: const methods are safe
// from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rapport {

enum class Scope : std::uint8_t { kIngest = 1, kRead = 2, kAdmin = 4 };

struct TokenGrant {
  std::string token;
  std::uint8_t scopes = 0;  // bit set of Scope; kAdmin grants every scope
};

enum class AuthResult : std::uint8_t { kAllowed, kMissing, kInvalid, kForbidden };

class TokenSet {
 public:
  TokenSet() = default;
  explicit TokenSet(std::vector<TokenGrant> grants);
  // True when no tokens are configured: every request is allowed (loopback-only mode).
  bool open() const { return grants_.empty(); }
  // `token` is the presented token (empty if none). Compares against every
  // configured token in constant time for a given length.
  AuthResult check(std::string_view token, Scope needed) const;
  // Which configured token `token` is, for audit lines, without the token: "auth.tokens[<i>] (<scopes>)" (its
  // place in the config), "unknown token" when none matches, "no token" when empty, "open" when none are configured.
  std::string describe(std::string_view token) const;
  // Parses "ingest", "read", "admin" (comma-separated). Returns 0 on an unknown name.
  static std::uint8_t parse_scopes(std::string_view list);

 private:
  std::vector<TokenGrant> grants_;
};

}  // namespace rapport
