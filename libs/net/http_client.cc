#include "libs/net/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace lethe {
namespace {

// Closes a file descriptor when it goes out of scope.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// Waits until `fd` is ready for `events` or the deadline passes.
absl::Status WaitFor(int fd, short events, absl::Time deadline,
                     const std::string& what) {
  while (true) {
    const int64_t remaining_ms =
        absl::ToInt64Milliseconds(deadline - absl::Now());
    if (remaining_ms <= 0) {
      return absl::DeadlineExceededError(absl::StrCat(what, " timed out"));
    }
    pollfd descriptor = {fd, events, 0};
    const int ready = poll(&descriptor, 1, static_cast<int>(remaining_ms));
    if (ready > 0) return absl::OkStatus();
    if (ready < 0 && errno != EINTR) {
      return absl::InternalError(absl::StrCat(what, ": ", strerror(errno)));
    }
  }
}

}  // namespace

absl::StatusOr<HttpResponse> HttpGet(const std::string& host, int port,
                                     const std::string& path,
                                     absl::Duration timeout) {
  const std::string url = absl::StrCat("http://", host, ":", port, path);
  const absl::Time deadline = absl::Now() + timeout;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("GET ", url, ": host must be an IPv4 address"));
  }
  ScopedFd socket_fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
  if (socket_fd.get() < 0) {
    return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  }
  if (connect(socket_fd.get(), reinterpret_cast<sockaddr*>(&address),
              sizeof(address)) != 0 &&
      errno != EINPROGRESS) {
    return absl::UnavailableError(
        absl::StrCat("GET ", url, ": ", strerror(errno)));
  }
  if (absl::Status ready = WaitFor(socket_fd.get(), POLLOUT, deadline,
                                   absl::StrCat("GET ", url));
      !ready.ok()) {
    return ready;
  }
  int connect_error = 0;
  socklen_t length = sizeof(connect_error);
  getsockopt(socket_fd.get(), SOL_SOCKET, SO_ERROR, &connect_error, &length);
  if (connect_error != 0) {
    return absl::UnavailableError(
        absl::StrCat("GET ", url, ": ", strerror(connect_error)));
  }

  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", host, ":", port,
                   "\r\nConnection: close\r\n\r\n");
  size_t sent = 0;
  while (sent < request.size()) {
    if (absl::Status ready = WaitFor(socket_fd.get(), POLLOUT, deadline,
                                     absl::StrCat("GET ", url));
        !ready.ok()) {
      return ready;
    }
    const ssize_t n = send(socket_fd.get(), request.data() + sent,
                           request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return absl::UnavailableError(
          absl::StrCat("GET ", url, ": ", strerror(errno)));
    }
    if (n > 0) sent += n;
  }

  std::string raw;
  char buffer[16384];
  while (true) {
    if (absl::Status ready = WaitFor(socket_fd.get(), POLLIN, deadline,
                                     absl::StrCat("GET ", url));
        !ready.ok()) {
      return ready;
    }
    const ssize_t n = recv(socket_fd.get(), buffer, sizeof(buffer), 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return absl::UnavailableError(
          absl::StrCat("GET ", url, ": ", strerror(errno)));
    }
    raw.append(buffer, n);
  }

  // "HTTP/1.x NNN reason\r\n headers \r\n\r\n body"
  const size_t header_end = raw.find("\r\n\r\n");
  if (raw.compare(0, 5, "HTTP/") != 0 || raw.size() < 12 ||
      header_end == std::string::npos) {
    return absl::DataLossError(
        absl::StrCat("GET ", url, ": malformed HTTP response"));
  }
  HttpResponse response;
  if (!absl::SimpleAtoi(raw.substr(9, 3), &response.status_code)) {
    return absl::DataLossError(
        absl::StrCat("GET ", url, ": malformed HTTP status line"));
  }
  response.body = raw.substr(header_end + 4);
  return response;
}

std::string UrlEncode(const std::string& text) {
  std::string encoded;
  for (const unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      encoded += static_cast<char>(c);
    } else {
      encoded += absl::StrFormat("%%%02X", c);
    }
  }
  return encoded;
}

}  // namespace lethe
