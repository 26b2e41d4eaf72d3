#include "server/request_timeline.h"

#include <gtest/gtest.h>

#include <cmath>

namespace llmux::server {
namespace {

using std::chrono::microseconds;
using Clock = RequestTimeline::Clock;

TEST(RequestTimelineTest, PhasesAreTheGapsBetweenReachedMilestonesInPathOrder) {
  const auto t0 = Clock::time_point{} + std::chrono::seconds(100);
  RequestTimeline t(t0);
  // Marked out of order (the engine's sink may run before the I/O thread marks kSubmitted's
  // successors); the phases follow the path order.
  t.Mark(Milestone::kParsed, t0 + microseconds(50));
  t.Mark(Milestone::kAuthenticated, t0 + microseconds(20));
  t.Mark(Milestone::kPlanningStarted, t0 + microseconds(35));
  t.Mark(Milestone::kTokenized, t0 + microseconds(250));
  t.Mark(Milestone::kAdmitted, t0 + microseconds(260));
  t.Mark(Milestone::kSubmitted, t0 + microseconds(300));
  t.Mark(Milestone::kEngineArrival, t0 + microseconds(1300));
  t.Mark(Milestone::kFirstScheduled, t0 + microseconds(1500));
  t.Mark(Milestone::kFirstToken, t0 + microseconds(4500));
  EXPECT_FALSE(t.FullPathTtft().has_value());
  t.OnBytesWritten(t0 + microseconds(4700));

  const auto phases = t.Phases();
  const std::vector<std::pair<std::string_view, int64_t>> want = {
      {"auth", 20},   {"plan_queue", 15}, {"parse", 15},  {"tokenize", 200}, {"admit", 10},  {"submit", 40},
      {"inbox", 1000}, {"queue", 200}, {"prefill", 3000}, {"write", 200}};
  ASSERT_EQ(phases.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(phases[i].first, want[i].first) << " at phase " << i;
    EXPECT_EQ(std::llround(phases[i].second * 1e6), want[i].second) << " at phase " << i;
  }
  ASSERT_TRUE(t.FullPathTtft().has_value());
  EXPECT_EQ(std::llround(*t.FullPathTtft() * 1e6), 4700);
}

TEST(RequestTimelineTest, FirstMarkWinsAndARefusedCallStopsEarly) {
  const auto t0 = Clock::time_point{} + std::chrono::seconds(5);
  RequestTimeline t(t0);
  t.Mark(Milestone::kAuthenticated, t0 + microseconds(10));
  t.Mark(Milestone::kAuthenticated, t0 + microseconds(99));
  t.Mark(Milestone::kParsed, t0 + microseconds(40));
  const auto phases = t.Phases();
  ASSERT_EQ(phases.size(), 2u);
  EXPECT_EQ(std::llround(phases[0].second * 1e6), 10);
  EXPECT_EQ(phases[1].first, "parse");
  EXPECT_EQ(std::llround(phases[1].second * 1e6), 30);
  // A milestone derived slightly before its predecessor gives a 0 phase, never a negative one.
  t.Mark(Milestone::kTokenized, t0 + microseconds(35));
  EXPECT_EQ(t.Phases()[2].second, 0.0);
}

TEST(RequestTimelineTest, WritesBeforeTheFirstTokenAreNotItsFirstByte) {
  const auto t0 = Clock::time_point{} + std::chrono::seconds(5);
  RequestTimeline t(t0);
  int runs = 0;
  t.WhenWritten([&] { ++runs; });
  t.OnBytesWritten(t0 + microseconds(10));  // e.g. a refusal's bytes: no token yet
  EXPECT_FALSE(t.Has(Milestone::kFirstByte));
  EXPECT_EQ(runs, 0);
  t.Mark(Milestone::kFirstToken, t0 + microseconds(20));
  t.OnBytesWritten(t0 + microseconds(30));
  t.OnBytesWritten(t0 + microseconds(90));
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(std::llround(*t.FullPathTtft() * 1e6), 30);
  t.Release();
  EXPECT_EQ(runs, 1);
  // Once written, a later waiter runs at once.
  t.WhenWritten([&] { ++runs; });
  EXPECT_EQ(runs, 2);
}

TEST(RequestTimelineTest, ReleaseRunsTheWaiterWithoutAFirstByte) {
  RequestTimeline t(Clock::now());
  t.Mark(Milestone::kSubmitted);
  int runs = 0;
  t.WhenWritten([&] { ++runs; });
  EXPECT_EQ(runs, 0);
  t.Release();
  EXPECT_EQ(runs, 1);
  t.Release();
  EXPECT_EQ(runs, 1);
  EXPECT_FALSE(t.FullPathTtft().has_value());
}

}  // namespace
}  // namespace llmux::server
