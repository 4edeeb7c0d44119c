#include "libs/auth/token_auth.h"

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/files/file_io.h"

namespace lethe {
namespace {

TEST(Sha256HexTest, KnownDigests) {
  EXPECT_EQ(Sha256Hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("foo"),
            "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae");
}

std::string Entry(const std::string& token, const std::string& rest) {
  return absl::StrCat(Sha256Hex(token), " ", rest, "\n");
}

TEST(TokenTableTest, AuthenticatesListedTokensOnly) {
  absl::StatusOr<TokenTable> table = TokenTable::Parse(absl::StrCat(
      "# comment\n\n", Entry("alice-secret", "alice team-a submitter"), "  ",
      Entry("bob-secret", "\tbob  team-b\tviewer"),
      // Upper-case hex is accepted.
      absl::AsciiStrToUpper(Sha256Hex("root-secret")), " root ops admin\n"));
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->size(), 3u);

  absl::StatusOr<Principal> alice = table->Authenticate("alice-secret");
  ASSERT_TRUE(alice.ok()) << alice.status();
  EXPECT_EQ(alice->name, "alice");
  EXPECT_EQ(alice->tenant, "team-a");
  EXPECT_EQ(alice->role, Role::kSubmitter);
  absl::StatusOr<Principal> bob =
      table->AuthenticateHeader(std::string("Bearer bob-secret"));
  ASSERT_TRUE(bob.ok()) << bob.status();
  EXPECT_EQ(bob->role, Role::kViewer);
  absl::StatusOr<Principal> root =
      table->AuthenticateHeader(std::string("bearer   root-secret "));
  ASSERT_TRUE(root.ok()) << root.status();
  EXPECT_EQ(root->role, Role::kAdmin);

  // A hash is not a token; a near miss is no token either.
  EXPECT_TRUE(absl::IsUnauthenticated(
      table->Authenticate(Sha256Hex("alice-secret")).status()));
  EXPECT_TRUE(
      absl::IsUnauthenticated(table->Authenticate("alice-secreT").status()));
  EXPECT_TRUE(absl::IsUnauthenticated(table->Authenticate("").status()));
  EXPECT_TRUE(absl::IsUnauthenticated(
      table->AuthenticateHeader(std::nullopt).status()));
  EXPECT_TRUE(absl::IsUnauthenticated(
      table->AuthenticateHeader(std::string("alice-secret")).status()));
  EXPECT_TRUE(absl::IsUnauthenticated(
      table->AuthenticateHeader(std::string("Basic alice-secret")).status()));
  EXPECT_TRUE(absl::IsUnauthenticated(
      table->AuthenticateHeader(std::string("Bearer ")).status()));
}

TEST(TokenTableTest, RejectsMalformedFiles) {
  const std::string good = Sha256Hex("t");
  for (const std::string& text : std::vector<std::string>{
           "",
           "# only a comment\n",
           absl::StrCat(good, " alice team-a\n"),
           absl::StrCat(good, " alice team-a submitter extra\n"),
           absl::StrCat(good.substr(1), " alice team-a submitter\n"),
           absl::StrCat("g", good.substr(1), " alice team-a submitter\n"),
           absl::StrCat(good, " al/ice team-a submitter\n"),
           absl::StrCat(good, " alice team/a submitter\n"),
           absl::StrCat(good, " alice ", std::string(65, 't'), " viewer\n"),
           absl::StrCat(good, " alice team-a owner\n"),
           absl::StrCat(good, " alice team-a viewer\n", good,
                        " bob team-b admin\n"),
       }) {
    absl::StatusOr<TokenTable> table = TokenTable::Parse(text);
    EXPECT_TRUE(absl::IsInvalidArgument(table.status()))
        << text << " -> " << table.status();
  }
  absl::StatusOr<TokenTable> table =
      TokenTable::Parse(absl::StrCat("\n", good, " alice team-a owner\n"));
  EXPECT_TRUE(absl::StrContains(table.status().message(), "line 2"))
      << table.status();
}

TEST(TokenTableTest, TenantLinesGiveTenantsTheirOwnRoots) {
  absl::StatusOr<TokenTable> table = TokenTable::Parse(absl::StrCat(
      Entry("a", "alice team-a submitter"), Entry("b", "bob team-b viewer"),
      "tenant team-a model_roots=/data/a/models,/data/shared "
      "output_roots=/data/a/out\n",
      "\ttenant  team-b   data_roots=/data/b\n"));
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->size(), 2u);  // Tenant lines are no tokens.
  ASSERT_EQ(table->tenant_roots().size(), 2u);
  const TenantRoots& a = table->tenant_roots().at("team-a");
  EXPECT_EQ(a.model_roots,
            (std::vector<std::string>{"/data/a/models", "/data/shared"}));
  EXPECT_FALSE(a.data_roots.has_value());
  EXPECT_EQ(a.output_roots, std::vector<std::string>{"/data/a/out"});
  EXPECT_EQ(a.line, 3);
  const TenantRoots& b = table->tenant_roots().at("team-b");
  EXPECT_FALSE(b.model_roots.has_value());
  EXPECT_EQ(b.data_roots, std::vector<std::string>{"/data/b"});
  // Without tenant lines, no tenant has roots of its own.
  EXPECT_TRUE(TokenTable::Parse(Entry("a", "alice team-a submitter"))
                  ->tenant_roots()
                  .empty());
}

TEST(TokenTableTest, RejectsMalformedTenantLines) {
  const std::string alice = Entry("a", "alice team-a submitter");
  for (const std::string& line : std::vector<std::string>{
           "tenant\n",
           "tenant team-a\n",                       // No roots.
           "tenant team/a model_roots=/m\n",        // Bad name.
           "tenant team-a model_roots=\n",          // Empty.
           "tenant team-a model_roots=/m,,/n\n",    // Empty item.
           "tenant team-a model_roots=relative\n",  // Not absolute.
           "tenant team-a model_roots=/m model_roots=/n\n",
           "tenant team-a weights=/m\n",  // Unknown key.
           "tenant team-a /m\n",
           "tenant team-a model_roots=/m\ntenant team-a data_roots=/d\n",
           "tenant team-z model_roots=/m\n",  // No token's tenant.
       }) {
    absl::StatusOr<TokenTable> table =
        TokenTable::Parse(absl::StrCat(alice, line));
    EXPECT_TRUE(absl::IsInvalidArgument(table.status()))
        << line << " -> " << table.status();
    EXPECT_TRUE(absl::StrContains(table.status().message(), "line 2"))
        << line << " -> " << table.status();
  }
}

TEST(TokenTableTest, LoadsAFile) {
  const std::string path = absl::StrCat(testing::TempDir(), "/tokens");
  ASSERT_TRUE(WriteFileAtomically(path, Entry("s", "carol team-c admin")).ok());
  absl::StatusOr<TokenTable> table = TokenTable::Load(path);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->Authenticate("s")->name, "carol");
  EXPECT_FALSE(TokenTable::Load(path + ".missing").ok());
}

TEST(AuthorizeTest, ViewersOnlyRead) {
  const Principal viewer{"v", "t", Role::kViewer};
  const Principal submitter{"s", "t", Role::kSubmitter};
  const Principal admin{"a", "t", Role::kAdmin};
  EXPECT_TRUE(Authorize(viewer, Access::kRead, "GetJob").ok());
  const absl::Status denied = Authorize(viewer, Access::kWrite, "CreateJob");
  EXPECT_TRUE(absl::IsPermissionDenied(denied));
  EXPECT_TRUE(absl::StrContains(denied.message(), "CreateJob")) << denied;
  EXPECT_TRUE(Authorize(submitter, Access::kWrite, "CreateJob").ok());
  EXPECT_TRUE(Authorize(admin, Access::kWrite, "DeleteJob").ok());
}

TEST(RandomHexTest, DistinctHexOfTheAskedLength) {
  const std::string a = RandomHex(16);
  const std::string b = RandomHex(16);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos) << a;
}

TEST(ConstantTimeEqualsTest, ComparesBytes) {
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secret2"));
  EXPECT_FALSE(ConstantTimeEquals("", "x"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

TEST(TenantTest, Names) {
  EXPECT_TRUE(IsValidTenant("team-a.prod_1"));
  EXPECT_FALSE(IsValidTenant(""));
  EXPECT_FALSE(IsValidTenant("a b"));
  EXPECT_FALSE(IsValidTenant(std::string(65, 'a')));
}

}  // namespace
}  // namespace lethe
