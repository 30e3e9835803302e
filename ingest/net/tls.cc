// TLS server contexts for the fronts (OpenSSL through Asio SSL).
//
// Every failure names the file and says what is wrong with it: missing or
// unreadable (errno), not PEM / not a certificate or key (OpenSSL's reason),
// an encrypted key (unsupported: rapportd starts unattended), or a key that
// does not belong to the certificate.
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "ingest/net/fronts.h"
#include "ingest/net/tls_util.h"

namespace rapport {
namespace net {

std::string openssl_reason(unsigned long* first_error) {
  const unsigned long e = ERR_peek_last_error();
  if (first_error != nullptr) *first_error = e;
  std::string out;
  if (e != 0) {
    const char* reason = ERR_reason_error_string(e);
    out = reason != nullptr ? reason : "error " + std::to_string(e);
  }
  ERR_clear_error();
  return out.empty() ? std::string("unknown OpenSSL error") : out;
}

Status check_readable(std::string_view what, const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return Status::Error(std::string(what) + " '" + path + "': cannot read: " + std::strerror(errno));
  }
  std::fclose(f);
  return Status::Ok();
}

Result<std::unique_ptr<ssl::context>> new_tls_context(ssl::context::method method, int min_version) {
  ERR_clear_error();
  std::unique_ptr<ssl::context> context;
  try {
    context = std::make_unique<ssl::context>(method);
  } catch (const std::exception& e) {
    return Status::Error(std::string("cannot create a TLS context: ") + e.what());
  }
  SSL_CTX_set_min_proto_version(context->native_handle(), min_version);
  return context;
}

Result<std::shared_ptr<ssl::context>> make_tls_context(const TlsOptions& tls) {
  if (tls.cert_file.empty()) return Status::Error("tls.cert_file is not set");
  if (tls.key_file.empty()) return Status::Error("tls.key_file is not set");
  int min_version = 0;
  if (tls.min_version == "1.2") {
    min_version = TLS1_2_VERSION;
  } else if (tls.min_version == "1.3") {
    min_version = TLS1_3_VERSION;
  } else {
    return Status::Error("tls.min_version must be \"1.2\" or \"1.3\"");
  }
  if (Status s = check_readable("tls.cert_file", tls.cert_file); !s.ok()) return s;
  if (Status s = check_readable("tls.key_file", tls.key_file); !s.ok()) return s;

  auto created = new_tls_context(ssl::context::tls_server, min_version);
  if (!created.ok()) return created.status();
  std::shared_ptr<ssl::context> context = std::move(created.value());
  SSL_CTX* ctx = context->native_handle();
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
  // An encrypted key would make OpenSSL prompt on the terminal: answer with no passphrase instead.
  SSL_CTX_set_default_passwd_cb(ctx, [](char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*u*/) { return 0; });

  if (SSL_CTX_use_certificate_chain_file(ctx, tls.cert_file.c_str()) != 1) {
    return Status::Error("tls.cert_file '" + tls.cert_file +
                         "': not a PEM certificate chain (OpenSSL: " + openssl_reason() + ")");
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    unsigned long error = 0;
    const std::string reason = openssl_reason(&error);
    if (ERR_GET_REASON(error) == X509_R_KEY_VALUES_MISMATCH) {
      return Status::Error("tls.key_file '" + tls.key_file + "' does not match the certificate in tls.cert_file '" +
                           tls.cert_file + "'");
    }
    return Status::Error("tls.key_file '" + tls.key_file + "': not an unencrypted PEM private key (OpenSSL: " + reason +
                         ")");
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    return Status::Error("tls.key_file '" + tls.key_file + "' does not match the certificate in tls.cert_file '" +
                         tls.cert_file + "'");
  }
  return context;
}

}  // namespace net

Status check_tls(const TlsOptions& tls) {
  auto context = net::make_tls_context(tls);
  return context.ok() ? Status::Ok() : context.status();
}

}  // namespace rapport
