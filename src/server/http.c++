// keel: /metrics (Prometheus text format) and /status (JSON) over kj-http.
#include "node.h"

#include <capnp/compat/json.h>

#include <cstdio>
#include <sstream>

namespace keel::server {

namespace {

class HttpService final : public kj::HttpService {
 public:
  HttpService(Node& node, const kj::HttpHeaderTable& table) : node_(node), table_(table) {}

  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url, const kj::HttpHeaders& headers,
                            kj::AsyncInputStream& requestBody, Response& response) override {
    std::string body, type = "text/plain; version=0.0.4";
    uint status = 200;
    kj::StringPtr text = "OK";
    if (method != kj::HttpMethod::GET) {
      status = 405, text = "Method Not Allowed", body = "only GET\n";
    } else if (url == "/metrics") {
      body = node_.metricsText();
    } else if (url == "/status") {
      body = node_.statusJson();
      type = "application/json";
    } else {
      status = 404, text = "Not Found", body = "try /metrics or /status\n";
    }
    kj::HttpHeaders out(table_);
    out.set(kj::HttpHeaderId::CONTENT_TYPE, kj::str(type.c_str()));
    auto content = kj::heapString(body.data(), body.size());
    auto stream = response.send(status, text, out, content.size());
    auto promise = stream->write(content.begin(), content.size());
    return promise.attach(kj::mv(stream), kj::mv(content));
  }

 private:
  Node& node_;
  const kj::HttpHeaderTable& table_;
};

}  // namespace

kj::Promise<void> Node::serveHttp() {
  std::string host;
  uint16_t port;
  splitAddress(options_.http, host, port);
  return io_.provider->getNetwork().parseAddress(host, port).then([this](kj::Own<kj::NetworkAddress> addr) {
    httpListener_ = addr->listen();
    httpHeaders_ = kj::heap<kj::HttpHeaderTable>();
    httpService_ = kj::heap<HttpService>(*this, *httpHeaders_);
    httpServer_ = kj::heap<kj::HttpServer>(timer_, *httpHeaders_, *httpService_);
    log("serving /metrics and /status on http://" + options_.http);
    return httpServer_->listenHttp(*httpListener_);
  });
}

std::string Node::statusJson() {
  capnp::MallocMessageBuilder msg;
  auto st = msg.initRoot<wire::NodeStatus>();
  fillStatus(st);
  capnp::JsonCodec json;
  json.setPrettyPrint(true);
  return std::string(json.encode(st.asReader()).cStr()) + "\n";
}

std::string Node::metricsText() {
  std::ostringstream o;
  auto gauge = [&](const char* name, const char* help, double v) {
    o << "# HELP " << name << " " << help << "\n# TYPE " << name << " gauge\n" << name << " " << v << "\n";
  };
  auto counter = [&](const char* name, const char* help, double v) {
    o << "# HELP " << name << " " << help << "\n# TYPE " << name << " counter\n" << name << " " << v << "\n";
  };
  gauge("keel_term", "Current Raft term.", double(core_->term().value));
  o << "# HELP keel_role Role of this node (1 for the current role).\n# TYPE keel_role gauge\n";
  for (Role r : {Role::Follower, Role::PreCandidate, Role::Candidate, Role::Leader}) {
    std::string name = toString(r);
    for (char& c : name) c = char(std::tolower(c));
    o << "keel_role{role=\"" << name << "\"} " << (core_->role() == r ? 1 : 0) << "\n";
  }
  gauge("keel_leader", "Id of the known leader (0: none).", double(core_->leader().value));
  gauge("keel_commit_index", "Highest index known committed.", double(core_->commitIndex().value));
  gauge("keel_applied_index", "Highest index applied to the state machine.", double(applied_));
  gauge("keel_last_index", "Index of the last log entry.", double(log_->lastIndex().value));
  gauge("keel_log_entries", "Entries held in the log (after compaction).",
        double(log_->lastIndex().value + 1 - log_->firstIndex().value));
  gauge("keel_snapshot_index", "Index of the latest snapshot.", double(log_->snapshotMeta().index.value));
  counter("keel_proposals_total", "Proposals accepted by this node as leader.", double(proposals_));
  counter("keel_reads_total", "Linearizable reads served.", double(readsServed_));
  counter("keel_unsynced_leader_writes_total",
          "Writes this node, as leader, left to a later sync because its followers alone committed them (--leader-sync-delay-ms).",
          double(deferred_));
  counter("keel_tls_refused_connections_total",
          "Connections to --listen (and to --redis-listen with --redis-tls) refused because their TLS handshake failed or did not finish in time (--tls-*).",
          double(tlsRefused_));
  if (tls_) {
    o << "# HELP keel_tls_reloads_total Times the --tls-* files were read again (SIGHUP): ok, or failed a check and changed nothing.\n"
         "# TYPE keel_tls_reloads_total counter\n"
      << "keel_tls_reloads_total{result=\"ok\"} " << tlsReloads_ << "\n"
      << "keel_tls_reloads_total{result=\"failed\"} " << tlsReloadsFailed_ << "\n";
    // Whole seconds, written as an integer: a double through the stream would keep 6 digits.
    o << "# HELP keel_tls_certificate_expiry_seconds When the certificate in use (--tls-cert) expires, in seconds since the Unix epoch.\n"
         "# TYPE keel_tls_certificate_expiry_seconds gauge\nkeel_tls_certificate_expiry_seconds "
      << tls_->notAfter() << "\n";
  }
  counter("keel_ticks_total", "Ticks of the consensus module since the start (one per --tick-ms of this node's clock).",
          double(ticks_));
  // Lease reads assume that the nodes' monotonic clocks run at nearly the same rate: the rate of
  // this gauge against real time (or another node's) shows how fast this node's clock runs.
  {
    char clock[48];
    snprintf(clock, sizeof clock, "%.6f",
             double((clockNow() - kj::origin<kj::TimePoint>()) / kj::MICROSECONDS) / 1e6);
    o << "# HELP keel_monotonic_clock_seconds This node's monotonic clock (CLOCK_MONOTONIC, or the test clock of --unsafe-test-clock-rate), in seconds.\n"
      << "# TYPE keel_monotonic_clock_seconds gauge\nkeel_monotonic_clock_seconds " << clock << "\n";
  }
  gauge("keel_lease", "1 while this node leads and holds a read lease (--read-mode lease).",
        core_->hasLease() ? 1 : 0);
  counter("keel_refused_peer_calls_total", "Peer calls refused (wrong cluster, unknown node).",
          double(refusedPeers_));
  o << "# HELP keel_peer_messages_sent_total Raft messages sent to peers, in our calls or in the returns of theirs.\n"
       "# TYPE keel_peer_messages_sent_total counter\n"
    << "keel_peer_messages_sent_total{path=\"call\"} " << messagesInCalls_ << "\n"
    << "keel_peer_messages_sent_total{path=\"return\"} " << messagesInReturns_ << "\n";
  fsyncs_.write(o, "keel_fsync_seconds", "Latency of a log sync (group commit).");
  commits_.write(o, "keel_commit_seconds",
                 "Latency of this node's proposals as leader, from the proposal to its answer (committed and applied).");
  gauge("keel_pending_proposals", "Proposals of this node as leader waiting to commit.", double(waiters_.size()));
  if (core_->role() == Role::Leader) {
    o << "# HELP keel_follower_lag_entries Leader's last index minus the follower's match.\n"
         "# TYPE keel_follower_lag_entries gauge\n";
    for (NodeId id : core_->membership().members()) {
      if (id == core_->id()) continue;
      if (auto pr = core_->progress(id)) {
        o << "keel_follower_lag_entries{follower=\"" << id.value << "\"} "
          << log_->lastIndex() - std::min(pr->match, log_->lastIndex()) << "\n";
      }
    }
  }
  return o.str();
}

}  // namespace keel::server
