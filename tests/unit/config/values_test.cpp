#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "llmux/config.h"

namespace llmux {
namespace {

TEST(ParseDurationTest, AcceptsEachUnit) {
  EXPECT_EQ(ParseDuration("250ms")->count(), 250);
  EXPECT_EQ(ParseDuration("30s")->count(), 30000);
  EXPECT_EQ(ParseDuration("5m")->count(), 300000);
  EXPECT_EQ(ParseDuration("1h")->count(), 3600000);
  EXPECT_EQ(ParseDuration("0s")->count(), 0);
  EXPECT_EQ(ParseDuration("0")->count(), 0);
  EXPECT_EQ(ParseDuration("720h")->count(), 720LL * 3600 * 1000);  // 30 days, the maximum
}

TEST(ParseDurationTest, RejectsMalformed) {
  EXPECT_EQ(ParseDuration("30").status().message(),
            "invalid duration \"30\": needs a unit (ms, s, m, h), e.g. \"30s\"");
  EXPECT_EQ(ParseDuration("1.5s").status().message(),
            "invalid duration \"1.5s\": expected a whole number and a unit (ms, s, m, h), e.g. "
            "\"30s\"");
  EXPECT_EQ(ParseDuration("-1s").status().message(),
            "invalid duration \"-1s\": expected a whole number and a unit (ms, s, m, h), e.g. "
            "\"30s\"");
  EXPECT_EQ(ParseDuration("10d").status().message(),
            "invalid duration \"10d\": unknown unit \"d\" (use ms, s, m or h)");
  EXPECT_EQ(ParseDuration("721h").status().message(),
            "invalid duration \"721h\": longer than 30 days");
  EXPECT_EQ(ParseDuration("99999999999999999999999s").status().message(),
            "invalid duration \"99999999999999999999999s\": longer than 30 days");
  EXPECT_FALSE(ParseDuration("").ok());
  EXPECT_FALSE(ParseDuration("s").ok());
  EXPECT_FALSE(ParseDuration("30 s").ok());
  EXPECT_FALSE(ParseDuration("30S").ok());
}

TEST(ParseDecimalNanoTest, ExactWithoutFloatingPoint) {
  EXPECT_EQ(*ParseDecimalNano("0.20"), 200000000);  // 0.20 per Mtok = 200 nano per token
  EXPECT_EQ(*ParseDecimalNano("0.20") / 1000000, 200);
  EXPECT_EQ(*ParseDecimalNano("0.60"), 600000000);
  EXPECT_EQ(*ParseDecimalNano("0.05"), 50000000);
  EXPECT_EQ(*ParseDecimalNano("0.000001"), 1000);
  EXPECT_EQ(*ParseDecimalNano("0.000000001"), 1);
  EXPECT_EQ(*ParseDecimalNano("0.1"), 100000000);  // 0.1 has no exact binary form
  EXPECT_EQ(*ParseDecimalNano("0.3"), 300000000);
  EXPECT_EQ(*ParseDecimalNano("50.00"), 50000000000);
  EXPECT_EQ(*ParseDecimalNano("7"), 7000000000);
  EXPECT_EQ(*ParseDecimalNano("0"), 0);
  EXPECT_EQ(*ParseDecimalNano("123456.123456789"), 123456123456789);
  EXPECT_EQ(*ParseDecimalNano("9223372036.854775807"), INT64_MAX);
}

TEST(ParseDecimalNanoTest, RejectsWhatItCannotRepresentExactly) {
  EXPECT_EQ(ParseDecimalNano("0.0000000001").status().message(),
            "at most 9 decimal places, got \"0.0000000001\"");
  EXPECT_EQ(ParseDecimalNano("-0.5").status().message(), "must not be negative, got \"-0.5\"");
  EXPECT_EQ(ParseDecimalNano("1e-3").status().message(),
            "expected a decimal number such as \"0.20\", got \"1e-3\"");
  EXPECT_EQ(ParseDecimalNano("9223372036.854775808").status().message(),
            "too large, got \"9223372036.854775808\"");
  EXPECT_EQ(ParseDecimalNano("9223372037").status().message(), "too large, got \"9223372037\"");
  for (const char* bad : {"", ".5", "5.", "+1", "1.2.3", "0x10", " 1", "1,5", "inf", "nan"}) {
    EXPECT_FALSE(ParseDecimalNano(bad).ok()) << bad;
  }
}

TEST(KeyHashTest, Sha256OfKnownVector) {
  // FIPS 180-2 test vector for "abc".
  EXPECT_EQ(KeyHashHex(HashApiKey("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(KeyHashHex(HashApiKey("sk-llmux-demo-admin")),
            "a712c6163a5aeb9e3b393278f9718b61d146301ca2cdd08516c9381a98d94b82");
}

TEST(KeyHashTest, HexRoundTripAcceptsEitherCase) {
  const std::string hex = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
  auto h = ParseKeyHashHex(hex);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(*h, HashApiKey("abc"));
  EXPECT_EQ(ParseKeyHashHex(hex.substr(1)).status().message(),
            "expected a SHA-256 as 64 hex digits, got 63 characters");
  std::string bad = hex;
  bad[0] = 'g';
  EXPECT_EQ(ParseKeyHashHex(bad).status().message(),
            "expected a SHA-256 as 64 hex digits, found a non-hex character");
}

class ReadConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        std::filesystem::path(::testing::TempDir()) / ("llmux_read_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }
  std::filesystem::path dir_;
};

TEST_F(ReadConfigFileTest, ReadsWholeFileAndFollowsSymlink) {
  Write("a.yaml", "x: 1\n");
  std::filesystem::create_symlink(dir_ / "a.yaml", dir_ / "link.yaml");
  EXPECT_EQ(*ReadConfigFile(dir_ / "a.yaml"), "x: 1\n");
  EXPECT_EQ(*ReadConfigFile(dir_ / "link.yaml"), "x: 1\n");
}

TEST_F(ReadConfigFileTest, RejectsMissingLargeAndSpecialFiles) {
  EXPECT_EQ(ReadConfigFile(dir_ / "none.yaml").status().code(), StatusCode::kNotFound);
  Write("big.yaml", std::string(101, 'x'));
  EXPECT_EQ(ReadConfigFile(dir_ / "big.yaml", 100).status().message(),
            (dir_ / "big.yaml").string() + ": file larger than the 100-byte limit");
  EXPECT_TRUE(ReadConfigFile(dir_ / "big.yaml", 101).ok());
  EXPECT_EQ(ReadConfigFile(dir_).status().message(), dir_.string() + ": not a regular file");
  ASSERT_EQ(::mkfifo((dir_ / "fifo").c_str(), 0600), 0);
  // Must not block waiting for a writer.
  EXPECT_EQ(ReadConfigFile(dir_ / "fifo").status().message(),
            (dir_ / "fifo").string() + ": not a regular file");
}

}  // namespace
}  // namespace llmux
