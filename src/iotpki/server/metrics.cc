#include "iotpki/server/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace iotpki::server {
namespace {

std::string FormatNumber(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    return std::to_string(static_cast<int64_t>(v));
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string RenderLabels(const Labels& labels, const std::string& extra_name = {},
                         const std::string& extra_value = {}) {
  if (labels.empty() && extra_name.empty()) return {};
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ',';
    first = false;
    out += k + "=\"" + EscapeLabelValue(v) + "\"";
  }
  if (!extra_name.empty()) {
    if (!first) out += ',';
    out += extra_name + "=\"" + EscapeLabelValue(extra_value) + "\"";
  }
  out += '}';
  return out;
}

}  // namespace

std::string EscapeLabelValue(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  std::sort(bounds_.begin(), bounds_.end());
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::Observe(double value) {
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  if (value > 0) {
    sum_micro_.fetch_add(static_cast<uint64_t>(value * 1e6), std::memory_order_relaxed);
  }
}

std::vector<uint64_t> Histogram::CumulativeCounts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    out[i] = total;
  }
  return out;
}

double Histogram::sum() const {
  return static_cast<double>(sum_micro_.load(std::memory_order_relaxed)) / 1e6;
}

Counter& Registry::GetCounter(const std::string& name, const std::string& help,
                              const Labels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  CounterFamily& family = counters_[name];
  if (family.help.empty()) family.help = help;
  auto& slot = family.series[labels];
  if (!slot) slot = std::make_unique<Counter>();
  return *slot;
}

Histogram& Registry::GetHistogram(const std::string& name, const std::string& help,
                                  const std::vector<double>& bounds, const Labels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  HistogramFamily& family = histograms_[name];
  if (family.help.empty()) family.help = help;
  auto& slot = family.series[labels];
  if (!slot) slot = std::make_unique<Histogram>(bounds);
  return *slot;
}

void Registry::AddGauge(const std::string& name, const std::string& help,
                        std::function<GaugeSamples()> collect) {
  std::lock_guard<std::mutex> lock(mu_);
  gauges_[name] = GaugeFamily{help, std::move(collect)};
}

uint64_t Registry::CounterValue(const std::string& name, const Labels& labels) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto f = counters_.find(name);
  if (f == counters_.end()) return 0;
  auto s = f->second.series.find(labels);
  return s == f->second.series.end() ? 0 : s->second->value();
}

std::string Registry::Render() const {
  // Gauges are collected outside the lock: a collector may be slow (a store query).
  std::vector<std::pair<std::string, GaugeFamily>> gauges;
  std::string out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, family] : counters_) {
      out += "# HELP " + name + " " + family.help + "\n# TYPE " + name + " counter\n";
      for (const auto& [labels, counter] : family.series) {
        out += name + RenderLabels(labels) + " " + std::to_string(counter->value()) + "\n";
      }
    }
    for (const auto& [name, family] : histograms_) {
      out += "# HELP " + name + " " + family.help + "\n# TYPE " + name + " histogram\n";
      for (const auto& [labels, h] : family.series) {
        auto counts = h->CumulativeCounts();
        for (size_t i = 0; i < h->bounds().size(); ++i) {
          out += name + "_bucket" + RenderLabels(labels, "le", FormatNumber(h->bounds()[i])) + " " +
                 std::to_string(counts[i]) + "\n";
        }
        out += name + "_bucket" + RenderLabels(labels, "le", "+Inf") + " " +
               std::to_string(counts.back()) + "\n";
        out += name + "_sum" + RenderLabels(labels) + " " + FormatNumber(h->sum()) + "\n";
        out += name + "_count" + RenderLabels(labels) + " " + std::to_string(counts.back()) + "\n";
      }
    }
    for (const auto& entry : gauges_) gauges.push_back(entry);
  }
  for (const auto& [name, family] : gauges) {
    out += "# HELP " + name + " " + family.help + "\n# TYPE " + name + " gauge\n";
    for (const auto& [labels, value] : family.collect()) {
      out += name + RenderLabels(labels) + " " + FormatNumber(value) + "\n";
    }
  }
  return out;
}

}  // namespace iotpki::server
