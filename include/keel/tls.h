// keel: TLS for the Cap'n Proto connections (between nodes, and from clients to nodes).
//
// Mutual TLS, as in etcd's --peer-client-cert-auth: a cluster has one certificate authority
// (CA); every node and every client holds a certificate it signed, and presents it on every
// connection. A node accepts only connections whose certificate the CA signed; a connecting
// side (a node to its peers, a client to the nodes) accepts only a node whose certificate the
// CA signed and names `name` (a DNS subjectAltName). One name for the whole cluster, so that
// nodes may be addressed by IP address; docs/operations.md shows how to make the files with
// openssl. The system's trust store plays no part.
//
// What TLS leaves plaintext: the HTTP port (/metrics, /status) and the Redis-protocol port.
// Bind them to loopback or a private network.
#pragma once

#include <string>

namespace keel {

struct TlsOptions {
  std::string certFile;       // PEM: this node's (or client's) certificate, or a chain from it
  std::string keyFile;        // PEM: its private key (unencrypted)
  std::string caFile;         // PEM: the CA certificate(s) trusted to sign nodes and clients
  std::string name = "keel";  // the name a node's certificate must carry

  // TLS is on when any file is given (and then all three must be).
  bool enabled() const noexcept { return !certFile.empty() || !keyFile.empty() || !caFile.empty(); }
};

}  // namespace keel
