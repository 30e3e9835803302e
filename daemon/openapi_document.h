// The OpenAPI 3.1 document of the HTTP API (docs/openapi.json), embedded at
// build time so rapportd serves it without the source tree.
#pragma once

#include <string_view>

namespace rapport {

std::string_view openapi_document();

}  // namespace rapport
