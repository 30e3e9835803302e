#include "ingest/submission.h"

namespace rapport {

std::string_view transport_name(Transport transport) {
  switch (transport) {
    case Transport::kTcp:
      return "tcp";
    case Transport::kHttp:
      return "http";
    case Transport::kImport:
      return "import";
  }
  return "unknown";
}

}  // namespace rapport
