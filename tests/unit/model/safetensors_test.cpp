#include "llmux/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "common/test_data.h"

namespace llmux {
namespace {

using ::testing::HasSubstr;

// [u64 LE header length][header][data_bytes bytes 0,1,2,...].
std::vector<std::byte> Image(const std::string& header, size_t data_bytes,
                             std::optional<uint64_t> declared_len = std::nullopt) {
  const uint64_t n = declared_len.value_or(header.size());
  std::vector<std::byte> out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>((n >> (8 * i)) & 0xff));
  for (char c : header) out.push_back(static_cast<std::byte>(c));
  for (size_t i = 0; i < data_bytes; ++i) out.push_back(static_cast<std::byte>(i & 0xff));
  return out;
}

Status OpenStatus(const std::vector<std::byte>& bytes) {
  return SafetensorsFile::FromBytes(bytes, "crafted.safetensors").status();
}

TEST(SafetensorsTest, ParsesValidImageInOffsetOrder) {
  const std::string header = R"({"__metadata__":{"format":"pt"},)"
                             R"("b":{"dtype":"F16","shape":[2,3],"data_offsets":[8,20]},)"
                             R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("s":{"dtype":"I32","shape":[],"data_offsets":[20,24]},)"
                             R"("e":{"dtype":"BF16","shape":[0,5],"data_offsets":[24,24]}})";
  const auto bytes = Image(header, 24);
  auto file = SafetensorsFile::FromBytes(bytes, "ok.safetensors");
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  const auto& ts = (*file)->tensors();
  ASSERT_EQ(ts.size(), 4u);
  EXPECT_EQ(ts[0].name, "a");
  EXPECT_EQ(ts[1].name, "b");
  EXPECT_EQ(ts[2].name, "s");
  EXPECT_EQ(ts[3].name, "e");
  const HostTensor* b = (*file)->Find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, DType::kF16);
  EXPECT_EQ(b->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(b->nbytes, 12u);
  EXPECT_EQ(b->numel(), 6);
  EXPECT_EQ(b->data, bytes.data() + 8 + header.size() + 8);
  EXPECT_EQ(std::to_integer<int>(b->data[0]), 8);
  const HostTensor* s = (*file)->Find("s");
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->shape.empty());
  EXPECT_EQ(s->numel(), 1);
  EXPECT_EQ((*file)->Find("e")->nbytes, 0u);
  EXPECT_EQ((*file)->Find("missing"), nullptr);
  EXPECT_EQ((*file)->Find("__metadata__"), nullptr);
}

TEST(SafetensorsTest, AcceptsUnalignedOffsetsAndTrailingSpaces) {
  const std::string header = R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[3,7]}}   )";
  const auto bytes = Image(header, 9);
  auto file = SafetensorsFile::FromBytes(bytes, "u.safetensors");
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ((*file)->Find("x")->data, bytes.data() + 8 + header.size() + 3);
}

struct BadCase {
  const char* label;
  std::vector<std::byte> bytes;
  StatusCode code;
  std::vector<std::string> mentions;  // substrings the message must contain
};

void ExpectBad(const BadCase& c) {
  Status s = OpenStatus(c.bytes);
  EXPECT_EQ(s.code(), c.code) << c.label << ": " << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("crafted.safetensors")) << c.label;
  for (const auto& m : c.mentions) EXPECT_THAT(s.message(), HasSubstr(m)) << c.label;
}

TEST(SafetensorsTest, RejectsTruncatedFiles) {
  ExpectBad({"shorter than the length prefix",
             std::vector<std::byte>(5),
             StatusCode::kDataLoss,
             {"too short"}});
  ExpectBad({"header length beyond file",
             Image(R"({"x":1})", 0, 100),
             StatusCode::kDataLoss,
             {"beyond the end", "100"}});
  const std::string h = R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  ExpectBad({"data region short",
             Image(h, 15),
             StatusCode::kDataLoss,
             {"'w'", "beyond the data region", "truncated"}});
}

TEST(SafetensorsTest, RejectsHugeHeaderLength) {
  ExpectBad(
      {"cap", Image("{}", 0, kMaxSafetensorsHeaderBytes + 1), StatusCode::kDataLoss, {"exceeds"}});
  ExpectBad({"2^64-1", Image("{}", 0, ~0ull), StatusCode::kDataLoss, {"exceeds"}});
}

TEST(SafetensorsTest, RejectsHeaderThatIsNotAJsonObject) {
  ExpectBad({"not json", Image("{\"a\": ", 0), StatusCode::kDataLoss, {"not valid JSON"}});
  ExpectBad({"array", Image("[1,2]", 0), StatusCode::kDataLoss, {"not a JSON object"}});
  ExpectBad({"entry not object", Image(R"({"t":5})", 0), StatusCode::kDataLoss, {"'t'"}});
  ExpectBad({"metadata not strings",
             Image(R"({"__metadata__":{"k":1}})", 0),
             StatusCode::kDataLoss,
             {"__metadata__", "'k'"}});
  ExpectBad({"duplicate name",
             Image(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                   R"("t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                   8),
             StatusCode::kDataLoss,
             {"'t'", "twice"}});
}

TEST(SafetensorsTest, RejectsMalformedEntries) {
  ExpectBad({"missing dtype",
             Image(R"({"t":{"shape":[1],"data_offsets":[0,4]}})", 4),
             StatusCode::kDataLoss,
             {"'t'", "dtype"}});
  ExpectBad({"negative dim",
             Image(R"({"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
             StatusCode::kDataLoss,
             {"'t'", "non-negative"}});
  ExpectBad({"float dim",
             Image(R"({"t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4),
             StatusCode::kDataLoss,
             {"'t'", "non-negative integers"}});
  ExpectBad({"one offset",
             Image(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4),
             StatusCode::kDataLoss,
             {"'t'", "data_offsets"}});
}

TEST(SafetensorsTest, RejectsUnsupportedDtypeNamingIt) {
  ExpectBad({"F64",
             Image(R"({"wq":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", 8),
             StatusCode::kInvalidArgument,
             {"'wq'", "F64", "supported: F32, F16, BF16, I32"}});
  ExpectBad({"lower case",
             Image(R"({"wq":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}})", 4),
             StatusCode::kInvalidArgument,
             {"'wq'", "'f32'"}});
}

TEST(SafetensorsTest, RejectsSizeMismatch) {
  // 2x3 F32 is 24 bytes, not 12 (as if it were F16).
  ExpectBad({"dtype size",
             Image(R"({"t":{"dtype":"F32","shape":[2,3],"data_offsets":[0,12]}})", 24),
             StatusCode::kDataLoss,
             {"'t'", "12 bytes", "needs 24"}});
}

TEST(SafetensorsTest, RejectsOffsetsOutOfOrderOrRange) {
  ExpectBad({"begin > end",
             Image(R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 8),
             StatusCode::kDataLoss,
             {"'t'", "begin 8 > end 4"}});
  ExpectBad({"end beyond",
             Image(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[16,20]}})", 8),
             StatusCode::kDataLoss,
             {"'t'", "end 20"}});
  ExpectBad({"huge offset",
             Image(R"({"t":{"dtype":"F32","shape":[1],)"
                   R"("data_offsets":[18446744073709551612,18446744073709551615]}})",
                   8),
             StatusCode::kDataLoss,
             {"'t'"}});
}

TEST(SafetensorsTest, RejectsOverlap) {
  ExpectBad({"overlap",
             Image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                   R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                   12),
             StatusCode::kDataLoss,
             {"'b'", "overlaps tensor 'a'"}});
  ExpectBad({"same range",
             Image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                   R"("b":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})",
                   4),
             StatusCode::kDataLoss,
             {"overlaps"}});
}

TEST(SafetensorsTest, RejectsShapeProductOverflow) {
  // 2^32 * 2^32 overflows; so does 2^62 * 4 bytes.
  ExpectBad(
      {"numel",
       Image(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", 0),
       StatusCode::kDataLoss,
       {"'t'", "overflows"}});
  ExpectBad(
      {"bytes",
       Image(R"({"t":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})", 0),
       StatusCode::kDataLoss,
       {"'t'", "overflows"}});
  ExpectBad(
      {"dim beyond int64",
       Image(R"({"t":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,0]}})", 0),
       StatusCode::kDataLoss,
       {"'t'"}});
}

TEST(SafetensorsTest, OpenReportsMissingFile) {
  auto f = SafetensorsFile::Open("/nonexistent/dir/model.safetensors");
  EXPECT_EQ(f.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(f.status().message(), HasSubstr("/nonexistent/dir/model.safetensors"));
}

TEST(SafetensorsTest, OpensStories260K) {
  LLMUX_REQUIRE_DATA(path, testing::SharedDataDir() / "models/stories260K-hf/model.safetensors");
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ((*file)->tensors().size(), 5u * 9 + 2);
  const HostTensor* emb = (*file)->Find("model.embed_tokens.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(emb->dtype, DType::kF32);
  EXPECT_EQ(emb->nbytes, 512u * 64 * 4);
  const HostTensor* k = (*file)->Find("model.layers.4.self_attn.k_proj.weight");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->shape, (std::vector<int64_t>{32, 64}));
  // Every norm weight is a finite float.
  const HostTensor* norm = (*file)->Find("model.norm.weight");
  ASSERT_NE(norm, nullptr);
  for (int64_t i = 0; i < norm->numel(); ++i) {
    float v;
    std::memcpy(&v, norm->data + 4 * i, 4);
    EXPECT_TRUE(std::isfinite(v));
  }
}

}  // namespace
}  // namespace llmux
