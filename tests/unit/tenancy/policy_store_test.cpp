#include <gtest/gtest.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <vector>

#include "common/scratch_dir.h"
#include "llmux/tenant_policy.h"

namespace llmux {
namespace {

constexpr char kGood1[] = "tenants:\n  acme: {weight: 1}\n";
constexpr char kGood2[] = "tenants:\n  acme: {weight: 2}\n  beta: {}\n";
constexpr char kBad[] = "tenants:\n  acme: {weight: 1}\n  beta: {lane: gold}\n";

class PolicyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("llmux_policy");
    path_ = dir_ / "tenants.yaml";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Writes in place (truncate + write + close).
  void Write(const std::string& text) { std::ofstream(path_, std::ios::trunc) << text; }
  // Writes a temporary file and renames it over the policy file (an atomic replace).
  void Replace(const std::string& text) {
    std::ofstream(dir_ / ".tenants.tmp") << text;
    std::filesystem::rename(dir_ / ".tenants.tmp", path_);
  }

  std::filesystem::path dir_;
  std::filesystem::path path_;
};

TEST_F(PolicyStoreTest, CreateFailsOnABadFile) {
  Write(kBad);
  auto store = PolicyStore::Create(path_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().message(),
            path_.string() + ":3:16: tenants.beta.lane: unknown lane \"gold\" (lanes: standard)");
  EXPECT_EQ(PolicyStore::Create(dir_ / "none.yaml").status().code(), StatusCode::kNotFound);
}

TEST_F(PolicyStoreTest, ReloadSwapsOnSuccessOnly) {
  Write(kGood1);
  auto created = PolicyStore::Create(path_);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  PolicyStore& store = **created;
  EXPECT_EQ(store.generation(), 1u);
  const std::shared_ptr<const TenantPolicy> admitted_under = store.Current();
  EXPECT_EQ(admitted_under->source, path_);
  EXPECT_EQ(admitted_under->Find("acme")->weight, 1);

  Write(kGood2);
  ASSERT_TRUE(store.Reload().ok());
  EXPECT_EQ(store.generation(), 2u);
  EXPECT_EQ(store.Current()->Find("acme")->weight, 2);
  EXPECT_NE(store.Current()->Find("beta"), nullptr);
  // A request admitted earlier keeps the policy it was admitted under.
  EXPECT_EQ(admitted_under->Find("acme")->weight, 1);
  EXPECT_EQ(admitted_under->Find("beta"), nullptr);

  Write(kBad);
  const Status bad = store.Reload();
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.message(),
            path_.string() + ":3:16: tenants.beta.lane: unknown lane \"gold\" (lanes: standard)");
  EXPECT_EQ(store.generation(), 2u);
  EXPECT_EQ(store.Current()->Find("acme")->weight, 2);  // the old policy stays

  std::filesystem::remove(path_);
  EXPECT_EQ(store.Reload().code(), StatusCode::kNotFound);
  EXPECT_EQ(store.Current()->Find("acme")->weight, 2);
}

TEST_F(PolicyStoreTest, ValidatorCanRejectAReload) {
  Write(kGood1);
  auto created = PolicyStore::Create(path_, [](const TenantPolicy& p) {
    return p.tenants.size() > 1 ? FailedPrecondition("too many tenants") : Status::Ok();
  });
  ASSERT_TRUE(created.ok());
  Write(kGood2);
  EXPECT_EQ((*created)->Reload().message(), "too many tenants");
  EXPECT_EQ((*created)->Current()->tenants.size(), 1u);
}

TEST_F(PolicyStoreTest, ReloadIfChangedSkipsIdenticalBytes) {
  Write(kGood1);
  auto created = PolicyStore::Create(path_);
  ASSERT_TRUE(created.ok());
  PolicyStore& store = **created;
  bool changed = true;
  ASSERT_TRUE(store.ReloadIfChanged(&changed).ok());
  EXPECT_FALSE(changed);
  EXPECT_EQ(store.generation(), 1u);
  Write(kGood2);
  ASSERT_TRUE(store.ReloadIfChanged(&changed).ok());
  EXPECT_TRUE(changed);
  EXPECT_EQ(store.generation(), 2u);
}

// Collects the watcher's callbacks.
class Events {
 public:
  void Add(const Status& s) {
    std::lock_guard<std::mutex> lock(mu_);
    statuses_.push_back(s);
    cv_.notify_all();
  }
  // Waits (up to 10 s) for the n-th callback; returns it, or Internal("timeout").
  Status WaitFor(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, std::chrono::seconds(10), [&] { return statuses_.size() >= n; })) {
      return Internal("timeout");
    }
    return statuses_[n - 1];
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return statuses_.size();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Status> statuses_;
};

TEST_F(PolicyStoreTest, WatcherReloadsOnWriteRenameAndKeepsOldOnError) {
  Write(kGood1);
  auto created = PolicyStore::Create(path_);
  ASSERT_TRUE(created.ok());
  PolicyStore& store = **created;
  Events events;
  auto watcher = PolicyFileWatcher::Start(
      &store, [&](const Status& s) { events.Add(s); }, Millis(20));
  ASSERT_TRUE(watcher.ok()) << watcher.status().ToString();

  Write(kGood2);  // in-place write: IN_CLOSE_WRITE
  EXPECT_TRUE(events.WaitFor(1).ok());
  EXPECT_EQ(store.Current()->Find("acme")->weight, 2);

  Replace(kBad);  // rename over the file: IN_MOVED_TO
  const Status bad = events.WaitFor(2);
  EXPECT_EQ(bad.message(),
            path_.string() + ":3:16: tenants.beta.lane: unknown lane \"gold\" (lanes: standard)");
  EXPECT_EQ(store.Current()->Find("acme")->weight, 2);

  std::ofstream(dir_ / "unrelated.yaml") << "x: 1\n";  // other files are ignored
  Replace(kGood1);
  EXPECT_TRUE(events.WaitFor(3).ok());
  EXPECT_EQ(store.Current()->Find("acme")->weight, 1);
  EXPECT_EQ(store.generation(), 3u);

  (*watcher)->Stop();
  (*watcher)->Stop();  // idempotent
  Write(kGood2);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(events.size(), 3u);  // stopped: no more reloads
  EXPECT_EQ(store.Current()->Find("acme")->weight, 1);
}

TEST_F(PolicyStoreTest, WatcherFollowsAConfigMapStyleSymlinkSwap) {
  // Kubernetes mounts: tenants.yaml -> ..data/tenants.yaml, ..data -> ..v1; an update writes
  // ..v2 and renames a new ..data symlink over the old one.
  std::filesystem::create_directories(dir_ / "..v1");
  std::ofstream(dir_ / "..v1" / "tenants.yaml") << kGood1;
  std::filesystem::create_directory_symlink("..v1", dir_ / "..data");
  std::filesystem::create_symlink("..data/tenants.yaml", path_);
  auto created = PolicyStore::Create(path_);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  Events events;
  auto watcher = PolicyFileWatcher::Start(
      created->get(), [&](const Status& s) { events.Add(s); }, Millis(20));
  ASSERT_TRUE(watcher.ok());

  std::filesystem::create_directories(dir_ / "..v2");
  std::ofstream(dir_ / "..v2" / "tenants.yaml") << kGood2;
  std::filesystem::create_directory_symlink("..v2", dir_ / "..data_tmp");
  std::filesystem::rename(dir_ / "..data_tmp", dir_ / "..data");
  EXPECT_TRUE(events.WaitFor(1).ok());
  EXPECT_EQ((*created)->Current()->Find("acme")->weight, 2);
}

}  // namespace
}  // namespace llmux
