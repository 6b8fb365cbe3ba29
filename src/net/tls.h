// keel internal: Tls, the TLS side of a node's or a client's connections (include/keel/tls.h).
//
// load() reads and checks the files up front, so that a mistake is a sentence at start-up
// rather than a handshake failure on every connection later: each file must parse, the key must
// be the certificate's, and the certificate must verify against the CA. A node's certificate
// must also carry the cluster's name (a client's need not: nodes do not check clients' names).
#pragma once

#include <keel/tls.h>

#include <kj/async-io.h>
#include <kj/compat/tls.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace keel::net {

class Tls {
 public:
  enum class Role { Node, Client };
  // nullptr and `error` set (a sentence naming the file) when the files are not usable.
  static std::unique_ptr<Tls> load(const TlsOptions& options, Role role, std::string& error);

  // Handshakes as the connecting side: the other end must present a certificate the CA signed
  // that names options.name. A failed handshake breaks the promise (DISCONNECTED or FAILED).
  kj::Promise<kj::Own<kj::AsyncIoStream>> client(kj::Own<kj::AsyncIoStream> stream);
  // Handshakes as the accepting side: the other end must present a certificate the CA signed.
  kj::Promise<kj::Own<kj::AsyncIoStream>> server(kj::Own<kj::AsyncIoStream> stream);

  // When the certificate of --tls-cert expires, in seconds since the Unix epoch.
  int64_t notAfter() const { return notAfter_; }

 private:
  Tls(kj::TlsKeypair keypair, std::vector<kj::TlsCertificate> cas, std::string name, int64_t notAfter);

  kj::TlsKeypair keypair_;
  std::vector<kj::TlsCertificate> cas_;
  std::string name_;
  int64_t notAfter_;
  kj::Own<kj::TlsContext> serverContext_;  // requires the other end's certificate
  kj::Own<kj::TlsContext> clientContext_;
};

// Connects to host:port and, with `tls`, handshakes as the connecting side.
kj::Promise<kj::Own<kj::AsyncIoStream>> connect(kj::Network& network, const std::string& host, uint16_t port, Tls* tls);

}  // namespace keel::net
