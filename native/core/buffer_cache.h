// LibTorch's CPU allocator with a cache of large buffers for the span of a forward pass.
//
// Why: every fresh CPU tensor of 4 MiB or more is an mmap of its own (glibc's threshold, fixed at 4 MiB by
// runtime::configureMemory so that freed clip buffers go back to the system), and its first touch costs a page
// fault and the kernel zeroing every 4 KiB page. A Jukebox pass allocates the same few shapes over and over (a
// [tokens, width] stream, qkv, the MLP's activations, the encoder's [32, samples] maps), so without a cache it
// pays those faults for every block and every convolution: at width 1024 that made calmkit's fp32 blocks slower
// than eager PyTorch's, whose glibc keeps buffers of up to 32 MiB in its heap (benchmarks/RESULTS.md). Inside a
// Scope, buffers of kMinBytes or more freed by any thread are kept and handed out again for the same size
// class; when the last Scope in the process ends they are all freed, so the resident floor between passes is
// what it was without the cache. Contents and alignment (64 bytes, c10's) are those of any fresh tensor:
// results do not change.
//
// The cache's allocator replaces LibTorch's default CPU allocator (same c10::alloc_cpu / free_cpu underneath)
// and supports raw_allocate / raw_deallocate, which oneDNN's ideep engine uses. CALMKIT_CPU_BUFFER_CACHE=0 turns
// the caching off (every Scope does nothing), for measuring what it buys.
#pragma once
#include <cstddef>
#include <cstdint>

namespace calmkit::memory {

// Buffers smaller than this come from glibc's heap anyway (no fresh mapping) and are never cached.
constexpr size_t kMinBytes = size_t(4) << 20;

// Makes the caching allocator LibTorch's CPU allocator. Idempotent; runtime::configureMemory calls it.
void installBufferCache();

// Whether Scopes cache (default: on unless CALMKIT_CPU_BUFFER_CACHE=0). Changing it affects Scopes opened later.
bool cacheEnabled();
void setCacheEnabled(bool on);

// While a Scope lives, large CPU buffers are cached (see above). Scopes nest and may live on several threads.
class Scope {
 public:
  Scope();
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  bool active_ = false;
};

struct Stats {
  int64_t hits = 0;             // allocations served from the cache
  int64_t misses = 0;           // large allocations inside a Scope that needed a fresh buffer
  int64_t cachedBytes = 0;      // bytes held in the cache now
  int64_t peakCachedBytes = 0;  // the most it held since the last resetStats()
};
Stats stats();
void resetStats();

}  // namespace calmkit::memory
