#include "libs/metrics/metrics_endpoint.h"

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <exception>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "libs/net/host_port.h"
#include "libs/status/status_macros.h"
#include "prometheus/text_serializer.h"

namespace lethe {
namespace {

// Request line and headers larger than this get 431.
constexpr size_t kMaxHeaderBytes = 16 * 1024;
// After answering, at most this much of what the client still sends is read
// and dropped, for at most this long (lingering close).
constexpr size_t kMaxDrainBytes = 64 * 1024;
constexpr absl::Duration kMaxDrainTime = absl::Seconds(1);
constexpr char kMetricsContentType[] =
    "text/plain; version=0.0.4; charset=utf-8";

// Connections served at once. More wait in the listen backlog until one
// ends (each ends within its deadlines).
constexpr size_t kMaxConnections = 64;

// poll()'s timeout until `deadline` (-1: none), rounded up to whole ms.
int PollTimeoutMs(absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) return -1;
  const int64_t remaining_ms = absl::ToInt64Milliseconds(
      absl::Ceil(deadline - absl::Now(), absl::Milliseconds(1)));
  return static_cast<int>(std::clamp<int64_t>(remaining_ms, 0, 60 * 60 * 1000));
}

// Where the request's headers end (just past the empty line), or npos.
// Accepts bare LF line ends as well as CRLF.
size_t HeaderEnd(absl::string_view request) {
  const size_t crlf = request.find("\r\n\r\n");
  const size_t lf = request.find("\n\n");
  size_t end = absl::string_view::npos;
  if (crlf != absl::string_view::npos) end = crlf + 4;
  if (lf != absl::string_view::npos) end = std::min(end, lf + 2);
  return end;
}

bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::StrContains("!#$%&'*+-.^_`|~", c);
}

std::string Response(int status_code, absl::string_view reason,
                     absl::string_view content_type, absl::string_view body,
                     bool with_body, absl::string_view extra_headers = "") {
  return absl::StrCat(
      "HTTP/1.1 ", status_code, " ", reason, "\r\nContent-Type: ", content_type,
      "\r\nContent-Length: ", body.size(), "\r\n", extra_headers,
      "Connection: close\r\n\r\n", with_body ? body : absl::string_view());
}

std::string TextResponse(int status_code, absl::string_view reason,
                         bool with_body, absl::string_view extra_headers = "") {
  return Response(status_code, reason, "text/plain; charset=utf-8",
                  absl::StrCat(reason, "\n"), with_body, extra_headers);
}

std::string WithBrackets(const std::string& host) {
  return absl::StrContains(host, ':') ? absl::StrCat("[", host, "]") : host;
}

}  // namespace

struct MetricsEndpoint::Connection {
  enum class Phase {
    kReading,   // the request's headers
    kWriting,   // the response
    kDraining,  // lingering close: what the client still sends is dropped
  };
  int fd = -1;
  Phase phase = Phase::kReading;
  absl::Time deadline;   // when the current phase gives up
  std::string request;   // bytes read so far
  std::string response;  // bytes to send
  size_t sent = 0;
  size_t drained = 0;
};

MetricsEndpoint::MetricsEndpoint(int listen_fd, int stop_fd,
                                 std::shared_ptr<prometheus::Registry> registry,
                                 const Options& options, int port,
                                 std::string url)
    : listen_fd_(listen_fd),
      stop_fd_(stop_fd),
      registry_(std::move(registry)),
      options_(options),
      port_(port),
      url_(std::move(url)) {
  // std::thread gets the default stack (8 MiB with the usual limits), which
  // leaves room for the static TLS of every library in the process; see
  // DEVELOPERS.md.
  thread_ = std::thread([this] { ServeLoop(); });
}

MetricsEndpoint::~MetricsEndpoint() {
  const uint64_t one = 1;
  while (write(stop_fd_, &one, sizeof(one)) < 0 && errno == EINTR) {
  }
  thread_.join();
  close(listen_fd_);
  close(stop_fd_);
}

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(
    const std::string& address,
    std::shared_ptr<prometheus::Registry> registry) {
  return Start(address, std::move(registry), Options());
}

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(
    const std::string& address, std::shared_ptr<prometheus::Registry> registry,
    const Options& options) {
  std::string host;
  int requested_port = 0;
  RETURN_IF_ERROR(ParseHostPort(address, &host, &requested_port));
  if (registry == nullptr) {
    return absl::InvalidArgumentError("MetricsEndpoint needs a registry");
  }

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* addresses = nullptr;
  const int resolved =
      getaddrinfo(host.empty() ? nullptr : host.c_str(),
                  std::to_string(requested_port).c_str(), &hints, &addresses);
  if (resolved != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", address,
                     ": cannot resolve the host: ", gai_strerror(resolved)));
  }
  int listen_fd = -1;
  std::string error = "no address to bind";
  for (const addrinfo* candidate = addresses; candidate != nullptr;
       candidate = candidate->ai_next) {
    const int fd = socket(candidate->ai_family,
                          candidate->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                          candidate->ai_protocol);
    if (fd < 0) {
      error = absl::StrCat("socket: ", strerror(errno));
      continue;
    }
    const int on = 1;
    // SO_REUSEADDR only allows rebinding over TIME_WAIT connections; a port
    // with a live listener still fails (unlike SO_REUSEPORT, never set here).
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0) {
      error = absl::StrCat("setsockopt(SO_REUSEADDR): ", strerror(errno));
    } else if (bind(fd, candidate->ai_addr, candidate->ai_addrlen) != 0) {
      error = absl::StrCat("bind: ", strerror(errno));
    } else if (listen(fd, SOMAXCONN) != 0) {
      error = absl::StrCat("listen: ", strerror(errno));
    } else {
      listen_fd = fd;
      break;
    }
    close(fd);
  }
  freeaddrinfo(addresses);
  if (listen_fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", address, ": ", error));
  }

  sockaddr_storage bound{};
  socklen_t bound_size = sizeof(bound);
  int port = -1;
  if (getsockname(listen_fd, reinterpret_cast<sockaddr*>(&bound),
                  &bound_size) == 0) {
    if (bound.ss_family == AF_INET) {
      port = ntohs(reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
    } else if (bound.ss_family == AF_INET6) {
      port = ntohs(reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port);
    }
  }
  if (port <= 0) {
    close(listen_fd);
    return absl::UnavailableError(absl::StrCat(
        "cannot serve metrics on ", address, ": cannot read the bound port"));
  }
  const int stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd < 0) {
    const int eventfd_errno = errno;
    close(listen_fd);
    return absl::InternalError(
        absl::StrCat("eventfd: ", strerror(eventfd_errno)));
  }
  std::string url =
      absl::StrCat("http://", WithBrackets(host), ":", port, "/metrics");
  return std::unique_ptr<MetricsEndpoint>(new MetricsEndpoint(
      listen_fd, stop_fd, std::move(registry), options, port, std::move(url)));
}

void MetricsEndpoint::ServeLoop() {
  std::vector<Connection> connections;
  // After running out of descriptors or memory, accepting pauses until then.
  absl::Time accept_paused_until = absl::InfinitePast();
  std::vector<pollfd> descriptors;
  while (true) {
    const absl::Time now = absl::Now();
    descriptors.clear();
    descriptors.push_back({stop_fd_, POLLIN, 0});
    const bool accepting =
        connections.size() < kMaxConnections && now >= accept_paused_until;
    descriptors.push_back({accepting ? listen_fd_ : -1, POLLIN, 0});
    absl::Time wake = accepting || connections.size() >= kMaxConnections
                          ? absl::InfiniteFuture()
                          : accept_paused_until;
    for (const Connection& connection : connections) {
      descriptors.push_back(
          {connection.fd,
           connection.phase == Connection::Phase::kWriting ? POLLOUT : POLLIN,
           0});
      wake = std::min(wake, connection.deadline);
    }
    const int ready =
        poll(descriptors.data(), descriptors.size(), PollTimeoutMs(wake));
    if (ready < 0 && errno != EINTR) {
      // poll itself failed (out of memory): back off, still watching stop.
      pollfd stop = {stop_fd_, POLLIN, 0};
      poll(&stop, 1, 100);
    }
    if (ready > 0 && descriptors[0].revents != 0) {
      for (const Connection& connection : connections) close(connection.fd);
      return;
    }
    // Serve the connections poll reported, and drop those past a deadline.
    std::vector<Connection> open;
    open.reserve(connections.size());
    for (size_t i = 0; i < connections.size(); ++i) {
      Connection& connection = connections[i];
      const bool alive = ready > 0 && descriptors[i + 2].revents != 0
                             ? Advance(connection)
                             : absl::Now() < connection.deadline;
      if (alive) {
        open.push_back(std::move(connection));
      } else {
        close(connection.fd);
      }
    }
    connections = std::move(open);
    if (ready <= 0 || descriptors[1].revents == 0) continue;
    while (connections.size() < kMaxConnections) {
      const int fd =
          accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        Connection connection;
        connection.fd = fd;
        connection.deadline = absl::Now() + options_.read_timeout;
        connections.push_back(std::move(connection));
        continue;
      }
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM) {
        // Out of descriptors or memory: back off instead of spinning.
        accept_paused_until = absl::Now() + absl::Milliseconds(100);
      }
      // EAGAIN (no more waiting), ECONNABORTED, EINTR, ...: poll again.
      break;
    }
  }
}

bool MetricsEndpoint::Advance(Connection& connection) {
  char buffer[4096];
  while (true) {
    if (absl::Now() >= connection.deadline) return false;
    switch (connection.phase) {
      case Connection::Phase::kReading: {
        const size_t header_end = HeaderEnd(connection.request);
        if (header_end != std::string::npos && header_end <= kMaxHeaderBytes) {
          connection.response =
              Respond(connection.request.substr(0, header_end));
        } else if (connection.request.size() > kMaxHeaderBytes) {
          connection.response =
              TextResponse(431, "Request Header Fields Too Large", true);
        } else {
          const ssize_t n = recv(connection.fd, buffer, sizeof(buffer), 0);
          if (n > 0) {
            connection.request.append(buffer, n);
            continue;
          }
          if (n == 0) {
            // The client closed its side before finishing the headers.
            if (connection.request.empty()) return false;
            connection.response = TextResponse(400, "Bad Request", true);
          } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return true;  // Wait for more.
          } else if (errno == EINTR) {
            continue;
          } else {
            return false;
          }
        }
        connection.request.clear();
        connection.phase = Connection::Phase::kWriting;
        connection.deadline = absl::Now() + options_.read_timeout;
        break;
      }
      case Connection::Phase::kWriting: {
        if (connection.sent < connection.response.size()) {
          const ssize_t n =
              send(connection.fd, connection.response.data() + connection.sent,
                   connection.response.size() - connection.sent, MSG_NOSIGNAL);
          if (n > 0) {
            connection.sent += n;
            continue;
          }
          if (n < 0 && errno == EINTR) continue;
          // The client is not reading yet: wait. Anything else: it is gone.
          return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
        }
        // Lingering close: read and drop what the client still sends (a
        // request body), so that closing does not reset the connection
        // before the client has read the response.
        shutdown(connection.fd, SHUT_WR);
        connection.response.clear();
        connection.phase = Connection::Phase::kDraining;
        connection.deadline =
            absl::Now() + std::min(options_.read_timeout, kMaxDrainTime);
        break;
      }
      case Connection::Phase::kDraining: {
        if (connection.drained >= kMaxDrainBytes) return false;
        const ssize_t n = recv(connection.fd, buffer, sizeof(buffer), 0);
        if (n > 0) {
          connection.drained += n;
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
      }
    }
  }
}

std::string MetricsEndpoint::Respond(const std::string& request) {
  // Request line: METHOD SP request-target SP HTTP-version.
  absl::string_view line = request;
  line = line.substr(0, line.find('\n'));
  if (absl::EndsWith(line, "\r")) line.remove_suffix(1);
  const std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
  if (parts.size() != 3 || parts[0].empty() || parts[1].empty() ||
      !std::all_of(parts[0].begin(), parts[0].end(), IsTokenChar)) {
    return TextResponse(400, "Bad Request", true);
  }
  const absl::string_view method = parts[0];
  const absl::string_view target = parts[1];
  const absl::string_view version = parts[2];
  if (version.size() != 8 || !absl::StartsWith(version, "HTTP/") ||
      !absl::ascii_isdigit(version[5]) || version[6] != '.' ||
      !absl::ascii_isdigit(version[7])) {
    return TextResponse(400, "Bad Request", true);
  }
  const bool head = method == "HEAD";
  if (method != "GET" && !head) {
    return TextResponse(405, "Method Not Allowed", true,
                        "Allow: GET, HEAD\r\n");
  }
  if (target.front() != '/') return TextResponse(400, "Bad Request", !head);
  const absl::string_view path = target.substr(0, target.find('?'));
  if (path != "/metrics") return TextResponse(404, "Not Found", !head);
  std::string body;
  try {
    body = SerializeToText(*registry_);
  } catch (const std::exception&) {
    return TextResponse(500, "Internal Server Error", !head);
  }
  return Response(200, "OK", kMetricsContentType, body, !head);
}

std::string SerializeToText(prometheus::Registry& registry) {
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

}  // namespace lethe
