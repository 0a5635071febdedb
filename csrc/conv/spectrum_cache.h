// Kernel spectra cached across calls (docs/design.md §5): inference reuses
// the spectrum of an unchanged weight, and the backward pass reuses the
// forward's. Thread-safe, LRU-bounded.
//
// An entry is valid when the weight's values are those the spectrum was made
// from: an exact comparison with a stored copy (bitwise on the CPU), O(weight),
// small next to the transforms. Nothing can make it stale, edits through `.data` (which
// bump no version counter; torch.autograd.gradcheck perturbs that way)
// included. On CUDA a comparison read back by the host waits for the device, so
// the forward of a weight tensor cached at its current version compares on the
// device instead (unchecked_hit, device_checks.h), and entries that cannot
// match are not compared at all (find_cached_spectrum).
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "conv/conv_geometry.h"

#include <memory>

namespace fftconv {

struct SilentEditWatch;  // spectrum_cache.cpp

// Where one call's pipelines get the kernel spectrum. With the cache on (the
// default) it is the whole cached spectrum, made on a first call. With the
// cache off (limit 0) nothing outlives the call, and a pipeline that works
// group block by group block (the CPU's) makes each block's spectra when it
// gets there, so no spectrum larger than a chunk's is ever live: the forward's
// peak memory stays within a small multiple of the chunk size at the price of
// transforming the kernel on every call.
//
// Also the weight's finiteness check: a cached spectrum was made from finite
// values, so a cache hit needs no second pass over the weight. When
// weight_finite() is false nothing was made or cached, and the caller must
// take the direct fallback.
class KernelSpectrumSource {
 public:
  // `operands`: the call's other operands, whose finiteness is checked with
  // the weight's in one read-back (only theirs on a cache hit).
  KernelSpectrumSource(const at::Tensor& weight, const ConvGeometry2d& geom, at::TensorList operands = {});

  // The cached spectrum made from this very weight tensor at its current
  // version counter, found without comparing values (so without waiting for
  // the device): `stored` gets the copy of the values it was made from, for
  // the caller to compare on the device (device_checks.h). Empty when there is
  // no such entry; the constructor above then decides.
  // Also declined, for a while, for a tensor whose values were seen changed
  // without a version bump (report_weight_flag).
  static std::optional<KernelSpectrumSource> unchecked_hit(const at::Tensor& weight, const ConvGeometry2d& geom,
                                                           at::Tensor& stored);

  // A weight tensor's first call at a new version (an optimizer step), without reading its
  // finiteness back: the spectrum is made and cached as unchecked, for the caller to flag
  // NaN/Inf in the weight on the device. Later unchecked hits compare with the stored copy
  // on the device too (a NaN never compares equal, so such a weight is flagged every call);
  // the host path never takes an unchecked entry. Empty when the cache is off or the weight
  // is an inference tensor (no version to key on).
  static std::optional<KernelSpectrumSource> unchecked_new(const at::Tensor& weight, const ConvGeometry2d& geom);

  // After an unchecked hit's call: `flag` (one int32 on the device, set when
  // the weight's values differed from the stored ones) is read back without
  // waiting, and a later unchecked_hit of this tensor acts on it.
  void report_weight_flag(const at::Tensor& flag) const;

  // False when the weight or an operand holds NaN or Inf: nothing was made or
  // cached, and the caller must take the direct fallback.
  bool operands_finite() const { return finite_; }

  // Spectra of groups [g0, g0 + ng): (ng * opg, cpg, ...) in the device's
  // layout (kernel_spectrum.h); a view of the whole spectrum when cached.
  // Safe to call from the threads of a parallel loop.
  at::Tensor groups(int64_t g0, int64_t ng) const;

  // The whole spectrum (made on first use when the cache is off). Not for
  // concurrent use: call it on the thread that made the source.
  const at::Tensor& whole() const;

  // True when groups() makes spectra (cache off) rather than slicing cached ones.
  bool made_per_block() const { return !whole_.defined(); }

 private:
  struct Cached {};
  KernelSpectrumSource(Cached, const at::Tensor& weight, const ConvGeometry2d& geom, at::Tensor spectrum)
      : weight_(weight), geom_(geom), finite_(true), whole_(std::move(spectrum)) {}

  at::Tensor weight_;
  ConvGeometry2d geom_;
  bool finite_ = false;
  mutable at::Tensor whole_;
  std::shared_ptr<SilentEditWatch> watch_;  // unchecked hits only
};

void set_spectrum_cache_limit(int64_t entries);
int64_t spectrum_cache_limit();
int64_t spectrum_cache_size();
// Spectra found by unchecked_hit since the process started, and silent weight
// edits it learnt of (test hooks).
int64_t spectrum_cache_unchecked_hits();
int64_t spectrum_cache_value_comparisons();  // cached weights compared by value with a call's
int64_t spectrum_cache_silent_edits_seen();
int64_t spectrum_cache_host_checks();  // operand finiteness read back by the host (each waits for the device on CUDA)
void clear_spectrum_cache();

}  // namespace fftconv
