// Serves Prometheus metrics over HTTP (/metrics).
//
//   auto registry = std::make_shared<prometheus::Registry>();
//   ASSIGN_OR_RETURN(std::unique_ptr<MetricsEndpoint> endpoint,
//                    MetricsEndpoint::Start("127.0.0.1:0", registry));
//   LETHE_LOG(INFO) << "metrics at " << endpoint->url();
//
// The endpoint keeps the registry alive while it serves it. It is a small
// HTTP/1.1 server of Lethe's own rather than prometheus-cpp's Exposer, whose
// civetweb threads cannot start in a process that has loaded LibTorch (see
// DEVELOPERS.md). One thread serves up to 64 connections at once, polling
// them, so that a slow or silent client delays no other (more connections
// wait in the listen backlog until one ends):
//   GET|HEAD /metrics[?...]  200, the text exposition format
//   GET|HEAD other paths     404
//   other methods            405
//   malformed request        400 (431 when the headers exceed 16 KiB)
// A client gets `read_timeout` to send its request; every response closes
// the connection. Destroying the endpoint stops it at once, closing every
// connection, and joins the thread.
#ifndef LETHE_LIBS_METRICS_METRICS_ENDPOINT_H_
#define LETHE_LIBS_METRICS_METRICS_ENDPOINT_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "prometheus/registry.h"

namespace lethe {

class MetricsEndpoint {
 public:
  struct Options {
    // How long a client may take to send its request headers (and to read
    // the response) before the endpoint drops it.
    absl::Duration read_timeout = absl::Seconds(5);
  };

  // Listens on `address` ("host:port" or "[v6 host]:port"; port 0 picks a
  // free one). INVALID_ARGUMENT for a malformed address, UNAVAILABLE naming
  // the address when it cannot be bound (including a port already in use).
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(
      const std::string& address,
      std::shared_ptr<prometheus::Registry> registry);
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(
      const std::string& address,
      std::shared_ptr<prometheus::Registry> registry, const Options& options);

  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;
  ~MetricsEndpoint();

  int port() const { return port_; }
  // "http://host:port/metrics" (IPv6 hosts in brackets).
  const std::string& url() const { return url_; }

 private:
  MetricsEndpoint(int listen_fd, int stop_fd,
                  std::shared_ptr<prometheus::Registry> registry,
                  const Options& options, int port, std::string url);

  struct Connection;  // One client's state, from accept to close.

  // Accepts and serves connections until stop_fd_ becomes readable.
  void ServeLoop();
  // Reads, answers and drains `connection` as far as it can without
  // blocking; false once it is done (or failed, or past its deadline) and
  // must be closed.
  bool Advance(Connection& connection);
  // The response (status line, headers, body) to one request's bytes.
  std::string Respond(const std::string& request);

  const int listen_fd_;
  const int stop_fd_;  // An eventfd, readable once the destructor runs.
  const std::shared_ptr<prometheus::Registry> registry_;
  const Options options_;
  const int port_;
  const std::string url_;
  std::thread thread_;
};

// The registry's current values in the Prometheus text exposition format,
// exactly as /metrics serves them.
std::string SerializeToText(prometheus::Registry& registry);

}  // namespace lethe

#endif  // LETHE_LIBS_METRICS_METRICS_ENDPOINT_H_
