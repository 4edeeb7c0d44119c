#include "libs/model/safetensors.h"

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/sysinfo/process_memory.h"

namespace lethe {
namespace {

std::string TempPath(const std::string& name) {
  return absl::StrCat(testing::TempDir(), "/", name);
}

// Builds a safetensors file byte by byte, independently of the writer.
std::string HandMadeFile(const std::string& header, const std::string& data) {
  std::string bytes(8, '\0');
  const uint64_t length = header.size();
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(length >> (8 * i));
  return bytes + header + data;
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

std::string FloatBytes(std::initializer_list<float> values) {
  std::string bytes;
  for (float value : values) {
    char raw[4];
    std::memcpy(raw, &value, 4);
    bytes.append(raw, 4);
  }
  return bytes;
}

// Bitwise equality, so NaN payloads and signed zeros count.
bool SameBits(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) {
    return false;
  }
  const at::Tensor x = a.contiguous();
  const at::Tensor y = b.contiguous();
  return std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

TEST(SafetensorsTest, ReadsAHandMadeFile) {
  const std::string path = TempPath("hand_made.safetensors");
  // BF16 1.0 is 0x3F80, stored little-endian.
  WriteBytes(
      path,
      HandMadeFile(R"({"__metadata__":{"format":"pt"},)"
                   R"("b":{"dtype":"BF16","shape":[1],"data_offsets":[8,10]},)"
                   R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                   FloatBytes({1.0f, -2.5f}) + std::string("\x80\x3f", 2)));
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  absl::StatusOr<at::Tensor> a = (*file)->Get("a");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(torch::equal(*a, torch::tensor({1.0f, -2.5f})));
  absl::StatusOr<at::Tensor> b = (*file)->Get("b");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->scalar_type(), at::kBFloat16);
  EXPECT_EQ(b->item<float>(), 1.0f);
}

TEST(SafetensorsTest, RoundTripIsBitExactForEveryDtype) {
  torch::manual_seed(3);
  at::Tensor special = torch::tensor(
      {0.0f, -0.0f, std::numeric_limits<float>::infinity(),
       -std::numeric_limits<float>::infinity(),
       std::numeric_limits<float>::quiet_NaN(), 1e-40f, 65504.0f, -3.3e38f});
  std::vector<std::pair<std::string, at::Tensor>> tensors = {
      {"f32", torch::randn({3, 5})},
      {"f32_special", special},
      {"bf16", torch::randn({4, 2, 3}).to(at::kBFloat16)},
      {"bf16_special", special.to(at::kBFloat16)},
      {"f16", torch::randn({7}).to(at::kHalf)},
      {"f64", torch::randn({2, 2}, at::kDouble)},
      {"i64", torch::arange(-3, 3, at::kLong)},
      {"u8", torch::arange(0, 256, at::kLong).to(at::kByte)},
      {"bool", torch::tensor({true, false, true})},
      {"scalar", torch::tensor(4.25f)},
      {"empty", torch::zeros({0, 3})},
      {"strided", torch::randn({4, 6}).t()},
  };
  const std::string path = TempPath("round_trip.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, tensors, {{"lethe", "test"}}).ok());
  // The header is padded so that the data section starts 8-byte aligned.
  const std::string bytes = ReadBytes(path);
  uint64_t header_length = 0;
  std::memcpy(&header_length, bytes.data(), 8);
  EXPECT_EQ((8 + header_length) % 8, 0u);

  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->metadata().at("lethe"), "test");
  ASSERT_EQ((*file)->names().size(), tensors.size());
  for (const auto& [name, tensor] : tensors) {
    absl::StatusOr<at::Tensor> read = (*file)->Get(name);
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_TRUE(SameBits(*read, tensor)) << name;
  }
}

TEST(SafetensorsTest, TensorsOutliveTheFileAndWritesDoNotReachIt) {
  const std::string path = TempPath("lifetime.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {{"w", torch::ones({4})}}).ok());
  at::Tensor tensor;
  {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
        SafetensorsFile::Open(path);
    ASSERT_TRUE(file.ok());
    tensor = *(*file)->Get("w");
  }
  tensor.mul_(3);
  EXPECT_TRUE(torch::equal(tensor, torch::full({4}, 3.0f)));
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> again =
      SafetensorsFile::Open(path);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(torch::equal(*(*again)->Get("w"), torch::ones({4})));
}

TEST(SafetensorsTest, WriterRejectsRepeatedAndReservedNames) {
  const std::string path = TempPath("bad_names.safetensors");
  EXPECT_EQ(
      WriteSafetensors(path, {{"w", torch::ones(1)}, {"w", torch::ones(1)}})
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteSafetensors(path, {{"__metadata__", torch::ones(1)}}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      WriteSafetensors(path, {{"c", torch::ones(1, at::kComplexFloat)}}).code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(SafetensorsTest, GetViewsTheMappingAndGetConvertedCopies) {
  const std::string path = TempPath("convert.safetensors");
  const at::Tensor big = torch::randn({1 << 23}).to(at::kBFloat16);  // 16 MB
  ASSERT_TRUE(
      WriteSafetensors(path, {{"small", torch::ones({3})}, {"big", big}}).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok());
  const at::Tensor small = *(*file)->Get("small");
  EXPECT_TRUE((*file)->Maps(small.data_ptr()));
  const at::Tensor small_double = *(*file)->GetConverted("small", at::kDouble);
  EXPECT_FALSE((*file)->Maps(small_double.data_ptr()));
  EXPECT_TRUE(torch::equal(small_double, torch::ones({3}, at::kDouble)));
  const at::Tensor same_dtype = *(*file)->GetConverted("small", at::kFloat);
  EXPECT_FALSE((*file)->Maps(same_dtype.data_ptr()));  // Always a copy.

  // Converting reads the 16 MB but leaves none of it resident.
  const int64_t before = ProcessMemoryBytes("RssFile").value_or(-1);
  ASSERT_GE(before, 0);
  const at::Tensor converted = *(*file)->GetConverted("big", at::kFloat);
  EXPECT_LT(ProcessMemoryBytes("RssFile").value_or(-1) - before, 4 << 20);
  EXPECT_TRUE(torch::equal(converted, big.to(at::kFloat)));
  // The dropped pages read the file again; the neighbour is untouched.
  EXPECT_TRUE(SameBits(*(*file)->Get("big"), big));
  EXPECT_TRUE(torch::equal(small, torch::ones({3})));
}

TEST(SafetensorsTest, StreamingWriterChecksWhatItIsGiven) {
  const std::string path = TempPath("streamed.safetensors");
  int calls = 0;
  const std::vector<SafetensorsSource> sources = {
      {"a",
       at::kBFloat16,
       {2, 3},
       [&]() -> absl::StatusOr<at::Tensor> {
         ++calls;
         return torch::ones({2, 3}).to(at::kBFloat16);
       }},
      {"b", at::kFloat, {4}, [&]() -> absl::StatusOr<at::Tensor> {
         ++calls;
         return torch::arange(4, at::kFloat);
       }}};
  ASSERT_TRUE(WriteSafetensorsStreaming(path, sources).ok());
  EXPECT_EQ(calls, 2);
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok());
  EXPECT_TRUE(
      SameBits(*(*file)->Get("a"), torch::ones({2, 3}).to(at::kBFloat16)));
  EXPECT_TRUE(SameBits(*(*file)->Get("b"), torch::arange(4, at::kFloat)));

  const std::string bad = TempPath("streamed_bad.safetensors");
  const absl::Status wrong_shape = WriteSafetensorsStreaming(
      bad, {{"a", at::kFloat, {3}, [] { return torch::ones({4}); }}});
  EXPECT_EQ(wrong_shape.code(), absl::StatusCode::kInternal) << wrong_shape;
  EXPECT_TRUE(absl::StrContains(wrong_shape.message(), "'a'")) << wrong_shape;
  const absl::Status failed = WriteSafetensorsStreaming(
      bad, {{"a", at::kFloat, {3}, []() -> absl::StatusOr<at::Tensor> {
               return absl::UnavailableError("device lost");
             }}});
  EXPECT_EQ(failed.code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(std::ifstream(bad).good());
}

struct MalformedCase {
  std::string label;
  std::string bytes;
  std::string expected_fragment;  // Must appear in the error message.
};

class MalformedSafetensorsTest
    : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(MalformedSafetensorsTest, IsRejectedWithAnErrorNamingFileAndTensor) {
  const MalformedCase& test_case = GetParam();
  const std::string path = TempPath(test_case.label + ".safetensors");
  WriteBytes(path, test_case.bytes);
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(path);
  ASSERT_FALSE(file.ok()) << test_case.label;
  EXPECT_TRUE(absl::StrContains(file.status().message(), path))
      << file.status();
  EXPECT_TRUE(
      absl::StrContains(file.status().message(), test_case.expected_fragment))
      << file.status();
}

const std::string kTwoFloats = FloatBytes({1, 2});

INSTANTIATE_TEST_SUITE_P(
    AllCases, MalformedSafetensorsTest,
    ::testing::Values(
        MalformedCase{"shorter_than_length", "abc", "truncated"},
        MalformedCase{"header_past_end",
                      HandMadeFile(R"({"a":{}})", "").substr(0, 12),
                      "runs past the end"},
        MalformedCase{"huge_header_length", std::string(8, '\xff'), "exceeds"},
        MalformedCase{"not_json", HandMadeFile("{oops", ""),
                      "not a JSON object"},
        MalformedCase{"json_array", HandMadeFile("[1,2]", ""),
                      "not a JSON object"},
        MalformedCase{
            "unknown_dtype",
            HandMadeFile(
                R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})",
                kTwoFloats),
            "tensor 'w': unsupported safetensors dtype 'Q4'"},
        MalformedCase{
            "missing_offsets",
            HandMadeFile(R"({"w":{"dtype":"F32","shape":[2]}})", kTwoFloats),
            "tensor 'w'"},
        MalformedCase{
            "negative_dimension",
            HandMadeFile(
                R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
                kTwoFloats),
            "tensor 'w': shape"},
        MalformedCase{
            "shape_byte_mismatch",
            HandMadeFile(
                R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                kTwoFloats),
            "tensor 'w': shape [3] of F32 needs 12 bytes"},
        // 2^61 doubles: 2^64 bytes, which wraps to 0 in 64 bits.
        MalformedCase{
            "size_wraps_around",
            HandMadeFile(R"({"w":{"dtype":"F64","shape":[2305843009213693952],)"
                         R"("data_offsets":[0,0]}})",
                         ""),
            "tensor 'w': shape [2305843009213693952] of F64 overflows"},
        // Found with fuzz/safetensors_fuzzer's invariants: after a 0 the
        // element count stayed 0, so any dimension passed; 2^64 - 1 was
        // stored as -1, and 2^62 * 2^62 overflows LibTorch's strides.
        MalformedCase{
            "dimension_past_int64_after_zero",
            HandMadeFile(R"({"w":{"dtype":"F32","shape":[0,)"
                         R"(18446744073709551615],"data_offsets":[0,0]}})",
                         ""),
            "tensor 'w': shape overflows"},
        MalformedCase{
            "dimensions_overflow_after_zero",
            HandMadeFile(
                R"({"w":{"dtype":"F32","shape":[0,4611686018427387904,)"
                R"(4611686018427387904],"data_offsets":[0,0]}})",
                ""),
            "tensor 'w': shape overflows"},
        MalformedCase{
            "truncated_data",
            HandMadeFile(
                R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                kTwoFloats.substr(0, 5)),
            "tensor 'w': data_offsets [0, 8] fall outside"},
        MalformedCase{
            "reversed_offsets",
            HandMadeFile(
                R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})",
                kTwoFloats),
            "tensor 'w'"},
        MalformedCase{
            "overlap",
            HandMadeFile(
                R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                kTwoFloats),
            "tensor 'b' at bytes [4, 8) overlaps"},
        MalformedCase{
            "hole",
            HandMadeFile(
                R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                kTwoFloats),
            "tensor 'a' starts at byte 4, leaving a hole"},
        MalformedCase{
            "trailing_bytes",
            HandMadeFile(
                R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                kTwoFloats),
            "4 trailing bytes"},
        MalformedCase{"bad_metadata",
                      HandMadeFile(R"({"__metadata__":{"k":1}})", ""),
                      "__metadata__ value for 'k'"}),
    [](const ::testing::TestParamInfo<MalformedCase>& info) {
      return info.param.label;
    });

TEST(SafetensorsTest, MissingFileIsNotFound) {
  EXPECT_EQ(
      SafetensorsFile::Open("/nonexistent/model.safetensors").status().code(),
      absl::StatusCode::kNotFound);
}

TEST(SafetensorsTest, UnknownTensorNameIsNotFoundNamingTheFile) {
  const std::string path = TempPath("one.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {{"w", torch::ones({1})}}).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok());
  absl::Status status = (*file)->Get("v").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(status.message(), path));
  EXPECT_TRUE(absl::StrContains(status.message(), "'v'"));
}

}  // namespace
}  // namespace lethe
