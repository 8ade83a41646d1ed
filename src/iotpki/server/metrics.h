// A small Prometheus metrics registry: counters and histograms with labels, and gauges computed
// at scrape time. Rendered in the Prometheus text exposition format (version 0.0.4).
//
// Thread safety: every method may be called from any thread. Counter and Histogram references
// returned by the registry stay valid as long as the registry lives, so hot paths may cache them.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace iotpki::server {

// Label name -> value, rendered in name order.
using Labels = std::map<std::string, std::string>;

class Counter {
 public:
  void Inc(uint64_t by = 1) { value_.fetch_add(by, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Histogram {
 public:
  // `bounds` ascending upper bounds (the +Inf bucket is implicit).
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);

  const std::vector<double>& bounds() const { return bounds_; }
  // Cumulative counts per bound, then the +Inf count; and the sum of observations.
  std::vector<uint64_t> CumulativeCounts() const;
  double sum() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // one per bound, plus +Inf
  std::atomic<uint64_t> sum_micro_{0};               // sum in millionths, for lock-free adds
};

class Registry {
 public:
  // One sample of a gauge family.
  using GaugeSamples = std::vector<std::pair<Labels, double>>;

  // Returns the counter for (name, labels), creating the family and the series on first use.
  // `help` is taken from the first call for a family.
  Counter& GetCounter(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram& GetHistogram(const std::string& name, const std::string& help,
                          const std::vector<double>& bounds, const Labels& labels = {});
  // `collect` runs at every Render, on the scraping thread; it must be thread-safe and quick
  // (cache expensive values itself).
  void AddGauge(const std::string& name, const std::string& help,
                std::function<GaugeSamples()> collect);

  // The whole registry in the text exposition format.
  std::string Render() const;

  // For tests: the value of a counter series, 0 if it does not exist.
  uint64_t CounterValue(const std::string& name, const Labels& labels = {}) const;

 private:
  struct CounterFamily {
    std::string help;
    std::map<Labels, std::unique_ptr<Counter>> series;
  };
  struct HistogramFamily {
    std::string help;
    std::map<Labels, std::unique_ptr<Histogram>> series;
  };
  struct GaugeFamily {
    std::string help;
    std::function<GaugeSamples()> collect;
  };

  mutable std::mutex mu_;
  std::map<std::string, CounterFamily> counters_;
  std::map<std::string, HistogramFamily> histograms_;
  std::map<std::string, GaugeFamily> gauges_;
};

// Escapes a label value for the text format (backslash, double quote, newline).
std::string EscapeLabelValue(const std::string& value);

}  // namespace iotpki::server
