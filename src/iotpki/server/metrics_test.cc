#include "iotpki/server/metrics.h"

#include <gtest/gtest.h>

#include <thread>

namespace iotpki::server {
namespace {

TEST(MetricsTest, CountersRenderWithSortedLabels) {
  Registry r;
  r.GetCounter("x_total", "Things", {{"status", "200"}, {"endpoint", "a"}}).Inc(3);
  r.GetCounter("x_total", "ignored", {{"endpoint", "b"}, {"status", "404"}}).Inc();
  std::string text = r.Render();
  EXPECT_NE(text.find("# HELP x_total Things\n# TYPE x_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("x_total{endpoint=\"a\",status=\"200\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("x_total{endpoint=\"b\",status=\"404\"} 1\n"), std::string::npos);
  EXPECT_EQ(r.CounterValue("x_total", {{"endpoint", "a"}, {"status", "200"}}), 3u);
  EXPECT_EQ(r.CounterValue("x_total", {{"endpoint", "c"}}), 0u);
}

TEST(MetricsTest, HistogramBucketsAreCumulative) {
  Registry r;
  auto& h = r.GetHistogram("lat_seconds", "Latency", {0.01, 0.1, 1});
  h.Observe(0.005);
  h.Observe(0.05);
  h.Observe(0.05);
  h.Observe(5);
  std::string text = r.Render();
  EXPECT_NE(text.find("lat_seconds_bucket{le=\"0.01\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("lat_seconds_bucket{le=\"0.1\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("lat_seconds_bucket{le=\"1\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("lat_seconds_bucket{le=\"+Inf\"} 4\n"), std::string::npos);
  EXPECT_NE(text.find("lat_seconds_count 4\n"), std::string::npos);
  EXPECT_NE(text.find("lat_seconds_sum 5.105\n"), std::string::npos) << text;
}

TEST(MetricsTest, GaugesAreCollectedAtRender) {
  Registry r;
  int calls = 0;
  r.AddGauge("expiring", "Expiring", [&] {
    ++calls;
    return Registry::GaugeSamples{{{{"within", "7d"}}, 2}, {{{"within", "30d"}}, 5}};
  });
  std::string text = r.Render();
  EXPECT_EQ(calls, 1);
  EXPECT_NE(text.find("# TYPE expiring gauge\n"), std::string::npos);
  EXPECT_NE(text.find("expiring{within=\"30d\"} 5\n"), std::string::npos);
}

TEST(MetricsTest, LabelValuesAreEscaped) {
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

TEST(MetricsTest, ConcurrentIncrementsAreNotLost) {
  Registry r;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) r.GetCounter("c_total", "C", {{"k", "v"}}).Inc();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(r.CounterValue("c_total", {{"k", "v"}}), 40000u);
}

}  // namespace
}  // namespace iotpki::server
