#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/test_data.h"
#include "llmux/safetensors.h"

namespace llmux {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class WeightStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("weight_store_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Write(const std::string& name, const std::string& bytes) {
    std::ofstream(dir_ / name, std::ios::binary) << bytes;
  }

  // A safetensors file holding one F32 [2] tensor per name, contiguous.
  void WriteShard(const std::string& file, const std::vector<std::string>& names) {
    std::string header = "{";
    for (size_t i = 0; i < names.size(); ++i) {
      if (i > 0) header += ",";
      header += "\"" + names[i] + "\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[" +
                std::to_string(8 * i) + "," + std::to_string(8 * i + 8) + "]}";
    }
    header += "}";
    std::string bytes;
    for (int i = 0; i < 8; ++i)
      bytes.push_back(static_cast<char>((header.size() >> (8 * i)) & 0xff));
    bytes += header;
    bytes += std::string(8 * names.size(), '\x01');
    Write(file, bytes);
  }

  void WriteIndex(const std::string& weight_map_json) {
    Write("model.safetensors.index.json",
          R"({"metadata":{"total_size":0},"weight_map":)" + weight_map_json + "}");
  }

  fs::path dir_;
};

TEST_F(WeightStoreTest, OpensSingleFile) {
  WriteShard("model.safetensors", {"b", "a"});
  auto store = WeightStore::Open(dir_);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ((*store)->Names(), (std::vector<std::string>{"a", "b"}));
  ASSERT_NE((*store)->Find("a"), nullptr);
  EXPECT_EQ((*store)->Find("a")->shape, (std::vector<int64_t>{2}));
  EXPECT_EQ((*store)->Find("c"), nullptr);
}

TEST_F(WeightStoreTest, OpensShardsOnce) {
  WriteShard("model-00001-of-00002.safetensors", {"x", "y"});
  WriteShard("model-00002-of-00002.safetensors", {"z"});
  WriteIndex(R"({"x":"model-00001-of-00002.safetensors","y":"model-00001-of-00002.safetensors",)"
             R"("z":"model-00002-of-00002.safetensors"})");
  auto store = WeightStore::Open(dir_);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ((*store)->Names(), (std::vector<std::string>{"x", "y", "z"}));
  EXPECT_NE((*store)->Find("z"), nullptr);
  EXPECT_EQ((*store)->Find("y")->data, (*store)->Find("x")->data + 8);
}

TEST_F(WeightStoreTest, MissingEverything) {
  auto store = WeightStore::Open(dir_);
  EXPECT_EQ(store.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(store.status().message(), HasSubstr(dir_.string()));
}

TEST_F(WeightStoreTest, MissingShard) {
  WriteShard("a.safetensors", {"x"});
  WriteIndex(R"({"x":"a.safetensors","y":"b.safetensors"})");
  auto store = WeightStore::Open(dir_);
  EXPECT_EQ(store.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(store.status().message(), HasSubstr("shard 'b.safetensors' is missing"));
}

TEST_F(WeightStoreTest, TensorAbsentFromItsShard) {
  WriteShard("a.safetensors", {"x"});
  WriteShard("b.safetensors", {"z"});
  WriteIndex(R"({"x":"a.safetensors","y":"b.safetensors"})");
  auto store = WeightStore::Open(dir_);
  EXPECT_EQ(store.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(store.status().message(),
              HasSubstr("tensor 'y' is listed in shard 'b.safetensors' but absent from it"));
}

TEST_F(WeightStoreTest, DuplicateTensorAcrossShards) {
  WriteShard("a.safetensors", {"x", "w"});
  WriteShard("b.safetensors", {"w"});
  WriteIndex(R"({"x":"a.safetensors","w":"b.safetensors"})");
  auto store = WeightStore::Open(dir_);
  EXPECT_EQ(store.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(store.status().message(),
              HasSubstr("tensor 'w' is present in two shards: a.safetensors and b.safetensors"));
}

TEST_F(WeightStoreTest, RejectsPathTraversal) {
  for (const std::string bad :
       {"../model.safetensors", "/etc/passwd", "sub/a.safetensors", "..", ""}) {
    WriteIndex(R"({"x":")" + bad + R"("})");
    auto store = WeightStore::Open(dir_);
    EXPECT_EQ(store.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(store.status().message(), HasSubstr("tensor 'x' names shard '" + bad + "'"));
  }
}

TEST_F(WeightStoreTest, RejectsMalformedIndex) {
  WriteIndex(R"(["x"])");
  auto s1 = WeightStore::Open(dir_);
  EXPECT_EQ(s1.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(s1.status().message(), HasSubstr("weight_map"));
  Write("model.safetensors.index.json", "{nope");
  auto s2 = WeightStore::Open(dir_);
  EXPECT_EQ(s2.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(s2.status().message(), HasSubstr("model.safetensors.index.json"));
}

TEST_F(WeightStoreTest, CorruptShardNamesFileAndTensor) {
  WriteShard("a.safetensors", {"x"});
  std::string bytes;
  const std::string header = R"({"bad":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((header.size() >> (8 * i)) & 0xff));
  Write("b.safetensors", bytes + header + std::string(8, '\0'));  // data region short
  WriteIndex(R"({"x":"a.safetensors","bad":"b.safetensors"})");
  auto store = WeightStore::Open(dir_);
  EXPECT_EQ(store.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(store.status().message(), HasSubstr("b.safetensors: tensor 'bad'"));
}

TEST(WeightStoreDataTest, OpensStories260K) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models/stories260K-hf");
  auto store = WeightStore::Open(dir);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ((*store)->Names().size(), 47u);
  const std::vector<std::pair<std::string, std::vector<int64_t>>> expected = {
      {"model.embed_tokens.weight", {512, 64}},
      {"model.norm.weight", {64}},
      {"model.layers.0.self_attn.q_proj.weight", {64, 64}},
      {"model.layers.0.self_attn.k_proj.weight", {32, 64}},
      {"model.layers.0.self_attn.v_proj.weight", {32, 64}},
      {"model.layers.0.self_attn.o_proj.weight", {64, 64}},
      {"model.layers.3.mlp.gate_proj.weight", {172, 64}},
      {"model.layers.3.mlp.up_proj.weight", {172, 64}},
      {"model.layers.3.mlp.down_proj.weight", {64, 172}},
      {"model.layers.4.input_layernorm.weight", {64}},
      {"model.layers.4.post_attention_layernorm.weight", {64}},
  };
  for (const auto& [name, shape] : expected) {
    const HostTensor* t = (*store)->Find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->shape, shape) << name;
    EXPECT_EQ(t->dtype, DType::kF32) << name;
  }
  EXPECT_EQ((*store)->Find("lm_head.weight"), nullptr);  // tied
}

}  // namespace
}  // namespace llmux
