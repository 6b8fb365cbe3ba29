// keel: Tls (tls.h). The handshakes are kj-tls's (OpenSSL underneath); the checks at load()
// use OpenSSL directly, since kj-tls parses but does not judge the files.
#include "tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <fstream>
#include <sstream>

namespace keel::net {

namespace {

bool readFile(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return bool(in) || in.eof();
}

void freeCerts(std::vector<X509*>& certs) {
  for (X509* c : certs) X509_free(c);
  certs.clear();
}

// The PEM certificates in `pem`, in order (none when it holds none or a malformed one).
std::vector<X509*> parseCerts(const std::string& pem) {
  std::vector<X509*> certs;
  BIO* bio = BIO_new_mem_buf(pem.data(), int(pem.size()));
  while (X509* c = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) certs.push_back(c);
  // The loop ends at the end of the input (PEM_R_NO_START_LINE) or at a malformed block.
  unsigned long err = ERR_peek_last_error();
  bool clean = ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE;
  ERR_clear_error();
  BIO_free(bio);
  if (!clean) freeCerts(certs);
  return certs;
}

std::string pemOf(X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string s(data, size_t(n));
  BIO_free(bio);
  return s;
}

// "" when `leaf` (with the intermediates of `chain`) verifies against `cas`; else why not.
std::string verify(X509* leaf, const std::vector<X509*>& chain, const std::vector<X509*>& cas) {
  X509_STORE* store = X509_STORE_new();
  for (X509* ca : cas) X509_STORE_add_cert(store, ca);
  STACK_OF(X509)* untrusted = sk_X509_new_null();
  for (size_t i = 1; i < chain.size(); ++i) sk_X509_push(untrusted, chain[i]);
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  std::string why;
  if (X509_STORE_CTX_init(ctx, store, leaf, untrusted) != 1 || X509_verify_cert(ctx) != 1) {
    why = X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
  }
  X509_STORE_CTX_free(ctx);
  sk_X509_free(untrusted);
  X509_STORE_free(store);
  ERR_clear_error();
  return why;
}

}  // namespace

std::unique_ptr<Tls> Tls::load(const TlsOptions& o, Role role, std::string& error) {
  error.clear();
  if (o.certFile.empty() || o.keyFile.empty() || o.caFile.empty()) {
    error = "TLS needs all three of --tls-cert, --tls-key and --tls-ca";
    return nullptr;
  }
  if (o.name.empty()) {
    error = "--tls-name must not be empty";
    return nullptr;
  }
  std::string certPem, keyPem, caPem;
  for (auto [flag, path, out] : {std::tuple{"--tls-cert", &o.certFile, &certPem},
                                 std::tuple{"--tls-key", &o.keyFile, &keyPem},
                                 std::tuple{"--tls-ca", &o.caFile, &caPem}}) {
    if (!readFile(*path, *out)) {
      error = std::string(flag) + " " + *path + ": cannot read the file";
      return nullptr;
    }
  }
  std::vector<X509*> chain = parseCerts(certPem), cas = parseCerts(caPem);
  EVP_PKEY* key = nullptr;
  {
    BIO* bio = BIO_new_mem_buf(keyPem.data(), int(keyPem.size()));
    key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);  // an encrypted key: no password, refused
    BIO_free(bio);
    ERR_clear_error();
  }
  if (chain.empty()) error = "--tls-cert " + o.certFile + ": no PEM certificate in the file (or a malformed one)";
  else if (!key) error = "--tls-key " + o.keyFile + ": not an unencrypted PEM private key";
  else if (cas.empty()) error = "--tls-ca " + o.caFile + ": no PEM certificate in the file (or a malformed one)";
  else if (X509_check_private_key(chain[0], key) != 1) {
    error = "--tls-key " + o.keyFile + ": not the key of the certificate in " + o.certFile;
  } else if (std::string why = verify(chain[0], chain, cas); !why.empty()) {
    error = "--tls-cert " + o.certFile + ": does not verify against --tls-ca " + o.caFile + " (" + why + ")";
  } else if (role == Role::Node && X509_check_host(chain[0], o.name.data(), o.name.size(), 0, nullptr) != 1) {
    error = "--tls-cert " + o.certFile + ": does not name " + o.name +
            " (a node's certificate needs it as a DNS subjectAltName; see --tls-name)";
  }
  int64_t notAfter = 0;
  if (error.empty()) {
    std::tm tm{};
    if (ASN1_TIME_to_tm(X509_get0_notAfter(chain[0]), &tm) == 1) notAfter = int64_t(timegm(&tm));
  }
  ERR_clear_error();
  std::vector<kj::TlsCertificate> trusted;
  if (error.empty()) {
    // kj-tls trusts the first certificate of each TlsCertificate: one per CA.
    for (X509* ca : cas) trusted.emplace_back(kj::StringPtr(pemOf(ca).c_str()));
  }
  EVP_PKEY_free(key);
  freeCerts(chain);
  freeCerts(cas);
  if (!error.empty()) return nullptr;
  kj::TlsKeypair keypair{kj::TlsPrivateKey(keyPem.c_str()), kj::TlsCertificate(certPem.c_str())};
  return std::unique_ptr<Tls>(new Tls(std::move(keypair), std::move(trusted), o.name, notAfter));
}

Tls::Tls(kj::TlsKeypair keypair, std::vector<kj::TlsCertificate> cas, std::string name, int64_t notAfter)
    : keypair_(std::move(keypair)), cas_(std::move(cas)), name_(std::move(name)), notAfter_(notAfter) {
  auto context = [this](bool verifyClients) {
    kj::TlsContext::Options opts;
    opts.useSystemTrustStore = false;
    opts.verifyClients = verifyClients;
    opts.trustedCertificates = kj::ArrayPtr<const kj::TlsCertificate>(cas_.data(), cas_.size());
    opts.defaultKeypair = keypair_;
    return kj::heap<kj::TlsContext>(kj::mv(opts));
  };
  serverContext_ = context(true);
  // The connecting side checks the node after the handshake itself (kj-tls does when
  // verifyClients is off), which says why a certificate is not trusted (the hostname, the CA).
  clientContext_ = context(false);
}

kj::Promise<kj::Own<kj::AsyncIoStream>> Tls::client(kj::Own<kj::AsyncIoStream> stream) {
  return clientContext_->wrapClient(kj::mv(stream), name_.c_str());
}

kj::Promise<kj::Own<kj::AsyncIoStream>> Tls::server(kj::Own<kj::AsyncIoStream> stream) {
  return serverContext_->wrapServer(kj::mv(stream));
}

kj::Promise<kj::Own<kj::AsyncIoStream>> connect(kj::Network& network, const std::string& host, uint16_t port, Tls* tls) {
  return network.parseAddress(host, port)
      .then([](kj::Own<kj::NetworkAddress> a) { return a->connect().attach(kj::mv(a)); })
      .then([tls](kj::Own<kj::AsyncIoStream> s) -> kj::Promise<kj::Own<kj::AsyncIoStream>> {
        if (tls) return tls->client(kj::mv(s));
        return kj::mv(s);
      });
}

}  // namespace keel::net
