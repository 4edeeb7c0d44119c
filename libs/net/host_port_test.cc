#include "libs/net/host_port.h"

#include <string>

#include "gtest/gtest.h"

namespace lethe {
namespace {

TEST(ParseHostPortTest, AcceptsHostPortAndBracketedIpv6) {
  std::string host;
  int port = -1;
  ASSERT_TRUE(ParseHostPort("127.0.0.1:50051", &host, &port).ok());
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 50051);
  ASSERT_TRUE(ParseHostPort("[::1]:0", &host, &port).ok());
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 0);
}

TEST(ParseHostPortTest, RejectsMalformedAddressesNamingThem) {
  std::string host;
  int port = -1;
  for (const char* bad :
       {"localhost", ":80", "host:", "host:http", "host:70000", "host:-1"}) {
    absl::Status status = ParseHostPort(bad, &host, &port);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(status.message().find(bad), std::string::npos) << status;
  }
}

}  // namespace
}  // namespace lethe
