#include "libs/net/http_client.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace lethe {
namespace {

// A one-shot server on a free loopback port that answers with `reply`.
class OneShotServer {
 public:
  explicit OneShotServer(std::string reply) : reply_(std::move(reply)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    socklen_t length = sizeof(address);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    listen(fd_, 1);
    thread_ = std::thread([this] {
      const int client = accept(fd_, nullptr, nullptr);
      char buffer[4096];
      const ssize_t n = read(client, buffer, sizeof(buffer));
      request_.assign(buffer, n > 0 ? n : 0);
      send(client, reply_.data(), reply_.size(), MSG_NOSIGNAL);
      close(client);
    });
  }
  ~OneShotServer() {
    thread_.join();
    close(fd_);
  }
  int port() const { return port_; }
  const std::string& request() const { return request_; }

 private:
  std::string reply_;
  int fd_;
  int port_;
  std::string request_;
  std::thread thread_;
};

TEST(HttpGetTest, ReadsStatusAndBody) {
  OneShotServer server(
      "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\r\nno such page");
  absl::StatusOr<HttpResponse> response =
      HttpGet("127.0.0.1", server.port(), "/missing?x=1");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status_code, 404);
  EXPECT_EQ(response->body, "no such page");
  EXPECT_EQ(server.request().rfind("GET /missing?x=1 HTTP/1.0\r\n", 0), 0u)
      << server.request();
}

TEST(HttpGetTest, MalformedResponseIsDataLoss) {
  OneShotServer server("SMTP ready\r\n");
  EXPECT_EQ(HttpGet("127.0.0.1", server.port(), "/").status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(HttpGetTest, NothingListeningIsUnavailable) {
  // Bind and close a socket to find a port with no listener.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  EXPECT_EQ(HttpGet("127.0.0.1", ntohs(address.sin_port), "/").status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(UrlEncodeTest, EncodesReservedCharacters) {
  EXPECT_EQ(UrlEncode("rate(lethe_steps_total{job=\"a b\"}[1m])"),
            "rate%28lethe_steps_total%7Bjob%3D%22a%20b%22%7D%5B1m%5D%29");
  EXPECT_EQ(UrlEncode("plain-text_1.0~"), "plain-text_1.0~");
}

}  // namespace
}  // namespace lethe
