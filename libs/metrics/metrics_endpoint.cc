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

enum class Wait { kReady, kStopped, kTimedOut, kFailed };

// Waits until `fd` is ready for `events`, `stop_fd` is readable, or
// `deadline` passes.
Wait WaitFor(int fd, short events, int stop_fd, absl::Time deadline) {
  while (true) {
    const int64_t remaining_ms = absl::ToInt64Milliseconds(
        absl::Ceil(deadline - absl::Now(), absl::Milliseconds(1)));
    if (remaining_ms <= 0) return Wait::kTimedOut;
    pollfd descriptors[2] = {{fd, events, 0}, {stop_fd, POLLIN, 0}};
    const int ready =
        poll(descriptors, 2,
             static_cast<int>(std::min<int64_t>(remaining_ms, 60 * 60 * 1000)));
    if (ready < 0) {
      if (errno == EINTR) continue;
      return Wait::kFailed;
    }
    if (descriptors[1].revents != 0) return Wait::kStopped;
    // POLLERR or POLLHUP: the following recv/send reports it.
    if (descriptors[0].revents != 0) return Wait::kReady;
  }
}

// Sends all of `data`; false when the client is gone, too slow or the
// endpoint stops.
bool SendAll(int fd, int stop_fd, absl::string_view data, absl::Time deadline) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (WaitFor(fd, POLLOUT, stop_fd, deadline) != Wait::kReady) {
        return false;
      }
      continue;
    }
    return false;
  }
  return true;
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
  thread_ = std::thread([this] { AcceptLoop(); });
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

void MetricsEndpoint::AcceptLoop() {
  while (true) {
    const Wait wait =
        WaitFor(listen_fd_, POLLIN, stop_fd_, absl::InfiniteFuture());
    if (wait == Wait::kStopped) return;
    if (wait != Wait::kReady) {
      // poll itself failed (out of memory): back off, still watching stop.
      if (WaitFor(stop_fd_, POLLIN, stop_fd_,
                  absl::Now() + absl::Milliseconds(100)) == Wait::kStopped) {
        return;
      }
      continue;
    }
    const int connection_fd =
        accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (connection_fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM) {
        // Out of descriptors or memory: back off instead of spinning.
        if (WaitFor(stop_fd_, POLLIN, stop_fd_,
                    absl::Now() + absl::Milliseconds(100)) == Wait::kStopped) {
          return;
        }
      }
      // EAGAIN (the client left), ECONNABORTED, EINTR, ...: keep going.
      continue;
    }
    ServeConnection(connection_fd);
    close(connection_fd);
  }
}

void MetricsEndpoint::ServeConnection(int connection_fd) {
  const absl::Time deadline = absl::Now() + options_.read_timeout;
  std::string request;
  std::string response;
  char buffer[4096];
  while (response.empty()) {
    const size_t header_end = HeaderEnd(request);
    if (header_end != std::string::npos && header_end <= kMaxHeaderBytes) {
      response = Respond(request.substr(0, header_end));
    } else if (request.size() > kMaxHeaderBytes) {
      response = TextResponse(431, "Request Header Fields Too Large", true);
    } else {
      if (WaitFor(connection_fd, POLLIN, stop_fd_, deadline) != Wait::kReady) {
        return;  // Too slow, or the endpoint stops.
      }
      const ssize_t n = recv(connection_fd, buffer, sizeof(buffer), 0);
      if (n > 0) {
        request.append(buffer, n);
      } else if (n == 0) {
        // The client closed its side before finishing the headers.
        if (request.empty()) return;
        response = TextResponse(400, "Bad Request", true);
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        return;
      }
    }
  }
  if (!SendAll(connection_fd, stop_fd_, response,
               absl::Now() + options_.read_timeout)) {
    return;
  }
  // Lingering close: read and drop what the client still sends (a request
  // body), so that closing does not reset the connection before the client
  // has read the response.
  shutdown(connection_fd, SHUT_WR);
  const absl::Time drain_deadline =
      absl::Now() + std::min(options_.read_timeout, kMaxDrainTime);
  size_t drained = 0;
  while (drained < kMaxDrainBytes && WaitFor(connection_fd, POLLIN, stop_fd_,
                                             drain_deadline) == Wait::kReady) {
    const ssize_t n = recv(connection_fd, buffer, sizeof(buffer), 0);
    if (n == 0) break;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      break;
    }
    if (n > 0) drained += n;
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
