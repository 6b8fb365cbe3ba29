// keel: a latency histogram for /metrics, in Prometheus' form (cumulative buckets, sum, count).
#pragma once

#include <array>
#include <cstdint>
#include <iterator>
#include <ostream>

namespace keel::server {

class LatencyHistogram {
 public:
  // Upper bounds of the buckets, in microseconds (and +Inf).
  static constexpr uint64_t kBoundsUs[] = {100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000,
                                           100000, 250000, 1000000};

  void add(uint64_t us) {
    size_t b = 0;
    while (b < std::size(kBoundsUs) && us > kBoundsUs[b]) ++b;
    ++buckets_[b];
    ++count_;
    sumSeconds_ += double(us) / 1e6;
  }

  // `name`_bucket{le="..."}, `name`_sum and `name`_count, with HELP and TYPE.
  void write(std::ostream& o, const char* name, const char* help) const {
    o << "# HELP " << name << " " << help << "\n# TYPE " << name << " histogram\n";
    uint64_t cum = 0;
    for (size_t i = 0; i < buckets_.size(); ++i) {
      cum += buckets_[i];
      o << name << "_bucket{le=\"";
      if (i < std::size(kBoundsUs)) o << double(kBoundsUs[i]) / 1e6;
      else o << "+Inf";
      o << "\"} " << cum << "\n";
    }
    o << name << "_sum " << sumSeconds_ << "\n" << name << "_count " << count_ << "\n";
  }

 private:
  std::array<uint64_t, std::size(kBoundsUs) + 1> buckets_{};
  uint64_t count_ = 0;
  double sumSeconds_ = 0;
};

}  // namespace keel::server
