// keel tests: a blocking HTTP GET (http-get.h).
#include "http-get.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <regex>

namespace keel::testing {

std::optional<HttpResponse> httpRequest(const std::string& hostPort, const std::string& method,
                                        const std::string& path, int timeoutMs) {
  size_t colon = hostPort.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(std::atoi(hostPort.c_str() + colon + 1)));
  if (inet_pton(AF_INET, hostPort.substr(0, colon).c_str(), &a.sin_addr) != 1) return std::nullopt;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
  auto waitFor = [&](short events) {
    int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    return poll(&p, 1, left) == 1;
  };
  HttpResponse out;
  bool ok = false;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 || errno == EINPROGRESS) {
    int err = 0;
    socklen_t len = sizeof err;
    if (waitFor(POLLOUT) && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
      std::string req = method + " " + path + " HTTP/1.1\r\nHost: " + hostPort +
                        (method == "GET" ? "" : "\r\nContent-Length: 0") + "\r\nConnection: close\r\n\r\n";
      if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) == ssize_t(req.size())) {
        std::string resp;
        char buf[8192];
        // Until the server closes the connection or the whole body (Content-Length) is in.
        auto complete = [&resp]() {
          size_t head = resp.find("\r\n\r\n");
          if (head == std::string::npos) return false;
          static const std::regex length("\r\ncontent-length: *([0-9]+)\r\n", std::regex::icase);
          std::smatch m;
          std::string headers = resp.substr(0, head + 2);
          return std::regex_search(headers, m, length) && resp.size() - head - 4 >= std::stoull(m[1].str());
        };
        while (!complete() && waitFor(POLLIN)) {
          ssize_t n = recv(fd, buf, sizeof buf, 0);
          if (n <= 0) break;
          resp.append(buf, size_t(n));
        }
        if (complete() && resp.rfind("HTTP/1.1 ", 0) == 0) {
          out.status = std::atoi(resp.c_str() + 9);
          out.body = resp.substr(resp.find("\r\n\r\n") + 4);
          ok = true;
        }
      }
    }
  }
  close(fd);
  if (!ok) return std::nullopt;
  return out;
}

std::optional<std::string> httpGet(const std::string& hostPort, const std::string& path, int timeoutMs) {
  auto r = httpRequest(hostPort, "GET", path, timeoutMs);
  if (!r || r->status != 200) return std::nullopt;
  return std::move(r->body);
}

std::optional<double> metricValue(const std::string& body, const std::string& name) {
  std::string line = name + " ";
  size_t at = body.rfind(line, 0) == 0 ? 0 : body.find("\n" + line);
  if (at == std::string::npos) return std::nullopt;
  if (body[at] == '\n') ++at;
  return std::strtod(body.c_str() + at + line.size(), nullptr);
}

}  // namespace keel::testing
