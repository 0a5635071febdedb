#include "conv/spectrum_cache.h"

#include <c10/core/TensorImpl.h>
#include <c10/util/intrusive_ptr.h>

#include <ATen/Parallel.h>

#include <c10/core/Event.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "nonfinite/direct_fallback.h"
#include "conv/kernel_spectrum.h"

namespace fftconv {

// What the device checks (device_checks.h) have told the host about one weight
// tensor, read back without waiting: the flag "values changed without a
// version bump" of its last device-checked call, copied to the host
// asynchronously. A weight seen edited that way (a training loop that
// updates `.data`) would otherwise flag every call and take the slow direct
// path each time; instead it goes back to host checks for a number of calls
// that doubles with every edit seen.
struct SilentEditWatch {
  std::mutex mutex;
  at::Tensor readback;                 // host copy of the last reported flag, or undefined
  std::unique_ptr<c10::Event> ready;   // recorded after the copy (null: readback is already there)
  int64_t host_checks_left = 0;        // calls to take the host checks before the device ones again
  int64_t penalty = 16;                // host-checked calls after the next edit seen

  // Reads a finished readback; true when the device checks may run this call.
  bool allow_device_checks() {
    std::lock_guard<std::mutex> lock(mutex);
    if (readback.defined() && (ready == nullptr || ready->query())) {
      const bool edited = readback.data_ptr<int32_t>()[0] != 0;
      readback = at::Tensor();
      ready.reset();
      if (edited) {
        silent_edits_seen().fetch_add(1, std::memory_order_relaxed);
        host_checks_left = penalty;
        penalty = std::min<int64_t>(penalty * 2, int64_t(1) << 20);
      }
    }
    if (host_checks_left > 0) {
      --host_checks_left;
      return false;
    }
    return true;
  }

  // Starts reading back `flag` (one int on the call's device) unless a read is still out.
  void report(const at::Tensor& flag) {
    std::lock_guard<std::mutex> lock(mutex);
    if (readback.defined()) return;
    if (flag.is_cpu()) {
      readback = flag.clone();
      return;
    }
    readback = at::empty({1}, at::TensorOptions().dtype(at::kInt).pinned_memory(true));
    readback.copy_(flag, /*non_blocking=*/true);
    ready = std::make_unique<c10::Event>(flag.device().type());
    const c10::impl::VirtualGuardImpl impl(flag.device().type());
    ready->record(impl.getStream(flag.device()));
  }

  static std::atomic<int64_t>& silent_edits_seen() {
    static std::atomic<int64_t> n{0};
    return n;
  }
};

namespace {

struct Entry {
  std::vector<int64_t> key;  // sizes, strides, dtype, device, geometry
  at::Tensor spectrum;
  at::Tensor values;  // a copy of the weight the spectrum was made from
  // The weight tensor it was made for: when that tensor's values change (a
  // training step), its new spectrum replaces this entry instead of joining it.
  c10::weak_intrusive_ptr<c10::TensorImpl> owner{c10::intrusive_ptr<c10::TensorImpl>()};
  int64_t version = -1;  // owner's version counter then (-1: an inference tensor, which has none)
  bool checked = true;   // its values were read back finite (false: unchecked_new, flagged on the device)
  // shared by the owner's successive entries (a new spectrum keeps what was seen of the tensor)
  std::shared_ptr<SilentEditWatch> watch = std::make_shared<SilentEditWatch>();
};

struct SpectrumCache {
  std::mutex mutex;
  int64_t limit = 32;
  std::list<Entry> entries;  // most recently used first

  void trim() {
    while (static_cast<int64_t>(entries.size()) > limit) entries.pop_back();
  }
};

std::atomic<int64_t> unchecked_hits{0};
std::atomic<int64_t> value_comparisons{0};
std::atomic<int64_t> host_checks{0};

// A tensor's version counter, or -1 for inference tensors (they have none).
int64_t version_of(const at::Tensor& t) {
  return t.is_inference() ? -1 : static_cast<int64_t>(t.unsafeGetTensorImpl()->version_counter().current_version());
}

SpectrumCache& cache() {
  static SpectrumCache* c = new SpectrumCache();  // outlives static teardown
  return *c;
}

std::vector<int64_t> make_key(const at::Tensor& w, const ConvGeometry2d& p) {
  std::vector<int64_t> k;
  for (int64_t v : w.sizes()) k.push_back(v);
  for (int64_t v : w.strides()) k.push_back(v);
  k.push_back(static_cast<int64_t>(w.scalar_type()));
  k.push_back(static_cast<int64_t>(w.device().type()));
  k.push_back(w.device().index());
  k.push_back(w.storage_offset());
  for (const AxisGeometry* a : {&p.h, &p.w}) {
    k.push_back(a->n_fft);
    k.push_back(a->tap_begin);
    k.push_back(a->tap_count);
    k.push_back(a->shift);
    k.push_back(a->dilation);
  }
  k.push_back(p.groups);
  return k;
}

// Bitwise equal on the CPU (memcmp: at::equal costs ~5x more, a tenth of a
// small layer's call); value-equal on CUDA. Bitwise is the stricter of the
// two (-0.0 vs 0.0 only costs a recomputation), and the key has already
// matched sizes, strides and dtype.
bool same_values(const at::Tensor& stored, const at::Tensor& weight) {
  value_comparisons.fetch_add(1, std::memory_order_relaxed);
  if (weight.is_cpu() && weight.is_contiguous() && stored.is_contiguous()) {
    // in parallel slices: on a small layer the serial compare of a 1.5 MB
    // weight was ~5% of a two-thread call
    const int64_t bytes = weight.numel() * static_cast<int64_t>(weight.element_size());
    const char* a = static_cast<const char*>(stored.data_ptr());
    const char* b = static_cast<const char*>(weight.data_ptr());
    std::atomic<bool> same{true};
    at::parallel_for(0, bytes, int64_t(256) << 10, [&](int64_t begin, int64_t end) {
      if (same.load(std::memory_order_relaxed) && std::memcmp(a + begin, b + begin, end - begin) != 0)
        same.store(false, std::memory_order_relaxed);
    });
    return same.load();
  }
  return at::equal(stored, weight);
}


// A cached tensor is read by a call on the current stream. The caching allocator knows
// only the stream it was allocated on: without a record it could hand the memory to
// another allocation once the entry is replaced (an optimizer step) or trimmed, while
// this stream may still be reading it. A no-op on the allocation stream and on the CPU.
void used_on_current_stream(const at::Tensor& t) {
  if (!t.defined() || t.is_cpu()) return;
  const c10::impl::VirtualGuardImpl impl(t.device().type());
  impl.recordDataPtrOnStream(t.storage().data_ptr(), impl.getStream(t.device()));
}

// The cached spectrum of this weight's values, or an undefined tensor. Values
// are compared only where they can match: not with another live tensor's
// entry (another layer's weight; two live weights with equal values are rare
// and only cost a second entry), nor with this tensor's own entry once its
// version has moved on (an optimizer step). On CUDA every comparison waits for
// the device, so a training step compares nothing here; the entries of dead
// tensors (the views conv1d makes per call) are still found by value.
at::Tensor find_cached_spectrum(const at::Tensor& weight, const std::vector<int64_t>& key) {
  SpectrumCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  const int64_t version = version_of(weight);
  for (auto it = c.entries.begin(); it != c.entries.end(); ++it) {
    if (it->key != key || !it->checked) continue;  // an unchecked entry may hold NaN/Inf
    auto alive = it->owner.lock();
    if (alive && alive.get() != weight.unsafeGetTensorImpl()) continue;
    if (alive && it->version != version) continue;
    if (!same_values(it->values, weight)) continue;
    c.entries.splice(c.entries.begin(), c.entries, it);
    used_on_current_stream(c.entries.front().spectrum);
    return c.entries.front().spectrum;
  }
  return at::Tensor();
}

// Makes the spectrum and caches it (the weight must be finite, or checked=false).
at::Tensor make_cached_spectrum(const at::Tensor& weight, const ConvGeometry2d& geom, std::vector<int64_t> key,
                                bool checked = true) {
  SpectrumCache& c = cache();
  at::Tensor spec = kernel_spectrum(weight, geom);
  Entry e;
  e.key = key;
  e.spectrum = spec;
  e.values = weight.detach().clone();
  e.checked = checked;
  e.owner = c10::weak_intrusive_ptr<c10::TensorImpl>(
      c10::intrusive_ptr<c10::TensorImpl>::reclaim_copy(weight.unsafeGetTensorImpl()));
  e.version = version_of(weight);
  std::lock_guard<std::mutex> lock(c.mutex);
  c.entries.remove_if([&](const Entry& old) {  // this weight's stale spectrum (same geometry)
    if (old.key != key) return false;
    auto alive = old.owner.lock();
    if (!alive || alive.get() != weight.unsafeGetTensorImpl()) return false;
    e.watch = old.watch;
    return true;
  });
  c.entries.push_front(std::move(e));
  c.trim();
  return spec;
}

}  // namespace

KernelSpectrumSource::KernelSpectrumSource(const at::Tensor& weight, const ConvGeometry2d& geom,
                                           at::TensorList operands)
    : weight_(weight), geom_(geom) {
  const bool caching = spectrum_cache_limit() > 0;
  std::vector<int64_t> key;
  if (caching) {
    key = make_key(weight, geom);
    whole_ = find_cached_spectrum(weight, key);
    if (whole_.defined()) {  // only finite weights are ever cached: the operands alone
      host_checks.fetch_add(1, std::memory_order_relaxed);
      finite_ = all_finite(operands);
      if (!finite_) whole_ = at::Tensor();
      return;
    }
  }
  std::vector<at::Tensor> all(operands.begin(), operands.end());
  all.push_back(weight);
  host_checks.fetch_add(1, std::memory_order_relaxed);
  finite_ = all_finite(all);
  if (finite_ && caching) whole_ = make_cached_spectrum(weight, geom, std::move(key));
}

std::optional<KernelSpectrumSource> KernelSpectrumSource::unchecked_hit(const at::Tensor& weight,
                                                                      const ConvGeometry2d& geom, at::Tensor& stored) {
  if (spectrum_cache_limit() == 0) return std::nullopt;
  const int64_t version = version_of(weight);
  if (version < 0) return std::nullopt;
  const std::vector<int64_t> key = make_key(weight, geom);
  SpectrumCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  for (auto it = c.entries.begin(); it != c.entries.end(); ++it) {
    if (it->key != key || it->version != version) continue;
    // The same TensorImpl: the weak reference keeps a dead one's address from being reused.
    auto alive = it->owner.lock();
    if (!alive || alive.get() != weight.unsafeGetTensorImpl()) continue;
    if (!it->watch->allow_device_checks()) return std::nullopt;
    c.entries.splice(c.entries.begin(), c.entries, it);
    stored = c.entries.front().values;
    used_on_current_stream(stored);  // the device checks compare the weight with it
    used_on_current_stream(c.entries.front().spectrum);
    unchecked_hits.fetch_add(1, std::memory_order_relaxed);
    KernelSpectrumSource source(Cached{}, weight, geom, c.entries.front().spectrum);
    source.watch_ = c.entries.front().watch;
    return source;
  }
  return std::nullopt;
}

std::optional<KernelSpectrumSource> KernelSpectrumSource::unchecked_new(const at::Tensor& weight,
                                                                      const ConvGeometry2d& geom) {
  const int64_t version = version_of(weight);
  if (spectrum_cache_limit() == 0 || version < 0) return std::nullopt;
  const std::vector<int64_t> key = make_key(weight, geom);
  {
    // this version has an entry, which unchecked_hit declined (host checks for a while)
    SpectrumCache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    for (const Entry& e : c.entries) {
      if (e.key != key || e.version != version) continue;
      auto alive = e.owner.lock();
      if (alive && alive.get() == weight.unsafeGetTensorImpl()) return std::nullopt;
    }
  }
  return KernelSpectrumSource(Cached{}, weight, geom,
                              make_cached_spectrum(weight, geom, key, /*checked=*/false));
}

void KernelSpectrumSource::report_weight_flag(const at::Tensor& flag) const {
  if (watch_) watch_->report(flag);
}

at::Tensor KernelSpectrumSource::groups(int64_t g0, int64_t ng) const {
  if (whole_.defined()) return whole_.narrow(0, g0 * geom_.opg, ng * geom_.opg);
  return kernel_spectrum(weight_, geom_, g0 * geom_.opg, ng * geom_.opg);
}

const at::Tensor& KernelSpectrumSource::whole() const {
  if (!whole_.defined()) whole_ = kernel_spectrum(weight_, geom_);
  return whole_;
}

void set_spectrum_cache_limit(int64_t entries) {
  TORCH_CHECK(entries >= 0, "fftconv: cache limit must be non-negative, got ", entries);
  SpectrumCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.limit = entries;
  c.trim();
}

int64_t spectrum_cache_limit() {
  SpectrumCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.limit;
}

int64_t spectrum_cache_size() {
  SpectrumCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return static_cast<int64_t>(c.entries.size());
}

int64_t spectrum_cache_unchecked_hits() { return unchecked_hits.load(); }
int64_t spectrum_cache_value_comparisons() { return value_comparisons.load(); }
int64_t spectrum_cache_host_checks() { return host_checks.load(); }
int64_t spectrum_cache_silent_edits_seen() { return SilentEditWatch::silent_edits_seen().load(); }

void clear_spectrum_cache() {
  SpectrumCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.entries.clear();
}

}  // namespace fftconv
