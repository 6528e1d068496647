#include "core/buffer_cache.h"

#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace calmkit::memory {
namespace {

// Size classes of 64 KiB: the shapes of one pass repeat exactly, so a class rarely wastes anything; a request
// takes a cached buffer of its class or up to an eighth larger.
constexpr size_t kClassBytes = size_t(64) << 10;

size_t sizeClass(size_t n) { return (n + kClassBytes - 1) / kClassBytes * kClassBytes; }

bool enabledFromEnv() {
  const char* v = std::getenv("CALMKIT_CPU_BUFFER_CACHE");
  return !(v && std::strcmp(v, "0") == 0);
}

// Process-lifetime state, deliberately leaked: buffers may be freed during static destruction, after any static
// object here would have been destroyed.
struct State {
  std::mutex mu;
  std::atomic<int> scopes{0};
  std::atomic<int64_t> tracked{0};  // entries in `blocks`
  std::atomic<bool> enabled{enabledFromEnv()};
  std::unordered_map<void*, size_t> blocks;  // every buffer the cache made, in use or free: its size class
  std::multimap<size_t, void*> free;         // cached buffers by size class
  int64_t cachedBytes = 0, peakCachedBytes = 0, hits = 0, misses = 0;
  int64_t capBytes = 0;
};

State& state() {
  static State* s = [] {
    auto* st = new State();
    // The cache only ever holds what a pass just freed; the cap guards against a pass of ever-changing sizes.
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    const int64_t physical = pages > 0 && page > 0 ? static_cast<int64_t>(pages) * page : (int64_t(8) << 30);
    st->capBytes = std::max<int64_t>(int64_t(1) << 30, physical / 4);
    return st;
  }();
  return *s;
}

// Frees every cached buffer (the caller holds the lock); returns them for freeing outside it.
std::vector<void*> takeAllFree(State& s) {
  std::vector<void*> out;
  for (auto& [size, p] : s.free) {
    s.blocks.erase(p);
    out.push_back(p);
  }
  s.tracked.store(static_cast<int64_t>(s.blocks.size()));
  s.free.clear();
  s.cachedBytes = 0;
  return out;
}

void deleteBuffer(void* p) {
  if (!p) return;
  State& s = state();
  // Nothing tracked means nothing to look up: outside passes a free costs what c10's does.
  if (s.tracked.load(std::memory_order_acquire) > 0) {
    std::unique_lock<std::mutex> lock(s.mu);
    auto it = s.blocks.find(p);
    if (it != s.blocks.end()) {
      const size_t size = it->second;
      if (s.scopes.load() > 0 && s.cachedBytes + static_cast<int64_t>(size) <= s.capBytes) {
        s.free.emplace(size, p);
        s.cachedBytes += static_cast<int64_t>(size);
        s.peakCachedBytes = std::max(s.peakCachedBytes, s.cachedBytes);
        return;
      }
      s.blocks.erase(it);
      s.tracked.store(static_cast<int64_t>(s.blocks.size()));
    }
  }
  c10::free_cpu(p);
}

class CachingCpuAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    State& s = state();
    void* p = nullptr;
    if (n >= kMinBytes && s.scopes.load() > 0) {
      const size_t c = sizeClass(n);
      {
        std::lock_guard<std::mutex> lock(s.mu);
        // The buffer of this class freed last (equal keys keep insertion order): the likeliest still in cache,
        // as glibc's own free lists would hand out. Else the next larger class within an eighth.
        auto [first, last] = s.free.equal_range(c);
        auto it = first != last ? std::prev(last) : s.free.lower_bound(c);
        if (it != s.free.end() && it->first <= c + c / 8) {
          p = it->second;
          s.cachedBytes -= static_cast<int64_t>(it->first);
          s.free.erase(it);
          ++s.hits;
        } else {
          ++s.misses;
        }
      }
      if (!p) {
        p = c10::alloc_cpu(c);
        std::lock_guard<std::mutex> lock(s.mu);
        s.blocks.emplace(p, c);
        s.tracked.store(static_cast<int64_t>(s.blocks.size()), std::memory_order_release);
      }
    } else {
      p = c10::alloc_cpu(n);
    }
    return {p, p, &deleteBuffer, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &deleteBuffer; }

  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }
};

}  // namespace

void installBufferCache() {
  static std::once_flag once;
  std::call_once(once, [] {
    static auto* allocator = new CachingCpuAllocator();
    // Priority 1 wins over c10's default CPU allocator (registered at 0).
    c10::SetCPUAllocator(allocator, 1);
  });
}

bool cacheEnabled() { return state().enabled.load(); }

void setCacheEnabled(bool on) { state().enabled.store(on); }

Scope::Scope() {
  State& s = state();
  if (!s.enabled.load()) return;
  active_ = true;
  s.scopes.fetch_add(1);
}

Scope::~Scope() {
  if (!active_) return;
  State& s = state();
  std::vector<void*> release;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.scopes.fetch_sub(1) == 1) release = takeAllFree(s);
  }
  for (void* p : release) c10::free_cpu(p);
}

Stats stats() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return Stats{s.hits, s.misses, s.cachedBytes, s.peakCachedBytes};
}

void resetStats() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.hits = s.misses = 0;
  s.peakCachedBytes = s.cachedBytes;
}

}  // namespace calmkit::memory
