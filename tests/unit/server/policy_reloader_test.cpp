#include "server/policy_reloader.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "common/scratch_dir.h"

namespace llmux::server {
namespace {

constexpr char kOne[] = "tenants:\n  acme: {weight: 1}\n";
constexpr char kTwo[] = "tenants:\n  acme: {weight: 2}\n  beta: {}\n";
constexpr char kBad[] = "tenants:\n  acme: {weight: 1}\n  beta: {lane: gold}\n";

class PolicyReloaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("llmux_reloader");
    path_ = dir_ / "tenants.yaml";
    Write(kOne);
    auto created = PolicyStore::Create(path_);
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    store_ = std::move(created).value();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Write(const std::string& text) { std::ofstream(path_, std::ios::trunc) << text; }

  // Step that records the weight of acme in every policy it is given.
  PolicyReloader::Step RecordAcmeWeight() {
    return [this](const TenantPolicy& p) {
      std::lock_guard<std::mutex> lock(mu_);
      applied_.push_back(p.Find("acme")->weight);
      return Status::Ok();
    };
  }
  PolicyReloader::Report Record() {
    return [this](const PolicyReloadOutcome& o) {
      std::lock_guard<std::mutex> lock(mu_);
      reports_.push_back(o);
    };
  }

  std::filesystem::path dir_;
  std::filesystem::path path_;
  std::unique_ptr<PolicyStore> store_;
  std::mutex mu_;
  std::vector<int> applied_;
  std::vector<PolicyReloadOutcome> reports_;
};

TEST_F(PolicyReloaderTest, AGoodReloadSwapsThePolicyAndAppliesEveryStep) {
  int second_step_tenants = 0;
  PolicyReloader reloader(store_.get(),
                          {RecordAcmeWeight(),
                           [&](const TenantPolicy& p) {
                             second_step_tenants = static_cast<int>(p.tenants.size());
                             return Status::Ok();
                           }},
                          Record());
  Write(kTwo);
  ASSERT_TRUE(reloader.Reload("signal").ok());
  EXPECT_EQ(store_->generation(), 2u);
  EXPECT_EQ(store_->Current()->Find("acme")->weight, 2);
  EXPECT_EQ(applied_, (std::vector<int>{2}));
  EXPECT_EQ(second_step_tenants, 2);
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_EQ(reports_[0].trigger, "signal");
  EXPECT_TRUE(reports_[0].status.ok());
  EXPECT_EQ(reports_[0].generation, 2u);
}

TEST_F(PolicyReloaderTest, ABadFileKeepsThePolicyInForceAndReportsTheError) {
  PolicyReloader reloader(store_.get(), {RecordAcmeWeight()}, Record());
  Write(kBad);
  const Status s = reloader.Reload("admin");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  const std::string want =
      path_.string() + ":3:16: tenants.beta.lane: unknown lane \"gold\" (lanes: standard)";
  EXPECT_EQ(s.message(), want);
  EXPECT_EQ(store_->generation(), 1u);
  EXPECT_EQ(store_->Current()->Find("acme")->weight, 1);
  EXPECT_EQ(store_->Current()->Find("beta"), nullptr);
  EXPECT_TRUE(applied_.empty());  // nothing applied
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_EQ(reports_[0].trigger, "admin");
  EXPECT_EQ(reports_[0].status.message(), want);
  EXPECT_EQ(reports_[0].generation, 1u);
}

TEST_F(PolicyReloaderTest, AFailingStepStopsTheLaterStepsAndIsTheOutcome) {
  bool later_ran = false;
  PolicyReloader reloader(
      store_.get(),
      {[](const TenantPolicy&) { return FailedPrecondition("pool 'gpu' is not served"); },
       [&](const TenantPolicy&) {
         later_ran = true;
         return Status::Ok();
       }},
      Record());
  Write(kTwo);
  const Status s = reloader.Reload("signal");
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(), "pool 'gpu' is not served");
  EXPECT_FALSE(later_ran);
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_EQ(reports_[0].status.code(), StatusCode::kFailedPrecondition);
}

TEST_F(PolicyReloaderTest, AWatcherOutcomeIsAppliedOrReportedWithoutRereading) {
  PolicyReloader reloader(store_.get(), {RecordAcmeWeight()}, Record());
  // The watcher reloaded the store itself; a failure it saw is reported, nothing applied.
  EXPECT_EQ(reloader.Apply("file", InvalidArgument("tenants.yaml:1:1: broken")).message(),
            "tenants.yaml:1:1: broken");
  EXPECT_TRUE(applied_.empty());
  Write(kTwo);
  ASSERT_TRUE(store_->Reload().ok());  // as the watcher does
  Write(kOne);  // not read again by Apply
  ASSERT_TRUE(reloader.Apply("file", Status::Ok()).ok());
  EXPECT_EQ(applied_, (std::vector<int>{2}));
  ASSERT_EQ(reports_.size(), 2u);
  EXPECT_EQ(reports_[0].trigger, "file");
  EXPECT_FALSE(reports_[0].status.ok());
  EXPECT_TRUE(reports_[1].status.ok());
  EXPECT_EQ(reports_[1].generation, 2u);
}

// Triggers from several threads run one at a time: the first trigger's step is held by a gate
// while the others are started; none of them may enter a step (or read the file) until it is
// released. Then every trigger runs, each applying the policy of its moment.
TEST_F(PolicyReloaderTest, ConcurrentTriggersAreSerialized) {
  std::mutex gate_mu;
  std::condition_variable gate_cv;
  bool entered = false, released = false;
  std::atomic<int> inside{0}, max_inside{0}, steps{0};
  PolicyReloader reloader(
      store_.get(),
      {[&](const TenantPolicy&) {
        const int now = inside.fetch_add(1) + 1;
        int seen = max_inside.load();
        while (now > seen && !max_inside.compare_exchange_weak(seen, now)) {
        }
        if (steps.fetch_add(1) == 0) {
          std::unique_lock<std::mutex> lock(gate_mu);
          entered = true;
          gate_cv.notify_all();
          gate_cv.wait(lock, [&] { return released; });
        }
        inside.fetch_sub(1);
        return Status::Ok();
      }},
      Record());
  Write(kTwo);
  std::thread first([&] { EXPECT_TRUE(reloader.Reload("signal").ok()); });
  {
    std::unique_lock<std::mutex> lock(gate_mu);
    gate_cv.wait(lock, [&] { return entered; });
  }
  std::vector<std::thread> others;
  for (int i = 0; i < 4; ++i) {
    others.emplace_back([&, i] {
      if (i % 2 == 0) {
        EXPECT_TRUE(reloader.Reload("admin").ok());
      } else {
        EXPECT_TRUE(reloader.Apply("file", Status::Ok()).ok());
      }
    });
  }
  // Give the others time to reach the reloader: unserialized, they would enter the step now.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(steps.load(), 1);
  EXPECT_EQ(store_->generation(), 2u);  // their Reload has not read the file either
  {
    std::lock_guard<std::mutex> lock(gate_mu);
    released = true;
  }
  gate_cv.notify_all();
  first.join();
  for (std::thread& t : others) t.join();
  EXPECT_EQ(steps.load(), 5);
  EXPECT_EQ(max_inside.load(), 1);
  EXPECT_EQ(store_->generation(), 4u);  // two more reads of the file
  std::lock_guard<std::mutex> lock(mu_);
  ASSERT_EQ(reports_.size(), 5u);
  EXPECT_EQ(reports_[0].trigger, "signal");
  EXPECT_EQ(reports_[0].generation, 2u);
  // Generations never go back: the outcomes are reported in the order they were applied.
  for (size_t i = 1; i < reports_.size(); ++i) {
    EXPECT_GE(reports_[i].generation, reports_[i - 1].generation) << "report " << i;
  }
}

}  // namespace
}  // namespace llmux::server
