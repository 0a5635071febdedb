#include "cuda/cufft_plan_cache.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAMiscFunctions.h>
#include <c10/util/Exception.h>
#include <cuda_runtime.h>

#include <cstdint>

#include <list>
#include <map>
#include <tuple>

namespace fftconv {
namespace cuda {

const char* cufft_status_name(cufftResult status) {
  switch (status) {
    case CUFFT_SUCCESS: return "CUFFT_SUCCESS";
    case CUFFT_INVALID_PLAN: return "CUFFT_INVALID_PLAN";
    case CUFFT_ALLOC_FAILED: return "CUFFT_ALLOC_FAILED";
    case CUFFT_INVALID_TYPE: return "CUFFT_INVALID_TYPE";
    case CUFFT_INVALID_VALUE: return "CUFFT_INVALID_VALUE";
    case CUFFT_INTERNAL_ERROR: return "CUFFT_INTERNAL_ERROR";
    case CUFFT_EXEC_FAILED: return "CUFFT_EXEC_FAILED";
    case CUFFT_SETUP_FAILED: return "CUFFT_SETUP_FAILED";
    case CUFFT_INVALID_SIZE: return "CUFFT_INVALID_SIZE";
    case CUFFT_UNALIGNED_DATA: return "CUFFT_UNALIGNED_DATA";
    case CUFFT_INVALID_DEVICE: return "CUFFT_INVALID_DEVICE";
    case CUFFT_NO_WORKSPACE: return "CUFFT_NO_WORKSPACE";
    case CUFFT_NOT_IMPLEMENTED: return "CUFFT_NOT_IMPLEMENTED";
    case CUFFT_NOT_SUPPORTED: return "CUFFT_NOT_SUPPORTED";
    default: return "unknown cuFFT status";
  }
}

void check_cufft(cufftResult status, const char* what, int64_t n, int64_t batch, int64_t n_outer) {
  if (n_outer > 1) {
    TORCH_CHECK(status == CUFFT_SUCCESS, "fftconv: cuFFT ", what, " failed with ",
                cufft_status_name(status), " (", static_cast<int>(status), ") for ", batch,
                " 2-D transforms of ", n_outer, " x ", n, " points");
  }
  TORCH_CHECK(status == CUFFT_SUCCESS, "fftconv: cuFFT ", what, " failed with ",
              cufft_status_name(status), " (", static_cast<int>(status), ") for ", batch,
              " transforms of length ", n);
}

CufftPlan::~CufftPlan() {
  if (handle) cufftDestroy(handle);  // no throwing from a destructor
}

namespace {

// cuFFT launches its kernels through the driver API, which needs a context
// current on the calling thread. A thread whose first CUDA work is a cuFFT
// call (a new Python thread, autograd's device thread) has none until the
// runtime binds the device's primary context, and cuFFT then fails with
// CUFFT_EXEC_FAILED. cudaFree(nullptr) is the runtime no-op that binds it
// (PyTorch does the same, under the same mutex); once per thread and device.
// Failures are left to the cuFFT call that follows, which names them.
void bind_primary_context() {
  thread_local uint64_t bound = 0;  // one bit per device index < 64
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    (void)cudaGetLastError();
    return;
  }
  const uint64_t bit = device >= 0 && device < 64 ? uint64_t(1) << device : 0;
  if (bit != 0 && (bound & bit) != 0) return;
  cudaError_t st;
  {
    std::lock_guard<std::mutex> lock(*c10::cuda::getFreeMutex());
    st = cudaFree(nullptr);
  }
  if (st != cudaSuccess) {
    (void)cudaGetLastError();
    return;
  }
  bound |= bit;
}

using Key = std::tuple<int, int, bool, int64_t, int64_t, int64_t, int64_t>;

// As many plans as PyTorch's own cuFFT plan cache holds: one layer needs about ten in
// training (per direction, block batch and kind), so a small limit thrashes on a model
// with a few shapes, and every eviction's cufftDestroy synchronises the device. A plan
// here holds no work area (it comes from PyTorch's allocator at execution), only
// cuFFT's own small tables.
constexpr int64_t kDefaultPlanLimit = 4096;

struct PlanCache {
  std::mutex mutex;
  int64_t limit = kDefaultPlanLimit;
  std::list<Key> order;  // most recently used first
  std::map<Key, std::pair<std::shared_ptr<CufftPlan>, std::list<Key>::iterator>> plans;

  void trim() {
    while (static_cast<int64_t>(plans.size()) > limit && !order.empty()) {
      plans.erase(order.back());  // plans in use stay alive through their shared_ptr
      order.pop_back();
    }
  }
};

PlanCache& cache() {
  static PlanCache* c = new PlanCache();  // never destroyed: plans may outlive static teardown
  return *c;
}

cufftType type_of(FftKind kind, bool is_double) {
  switch (kind) {
    case FftKind::R2C: return is_double ? CUFFT_D2Z : CUFFT_R2C;
    case FftKind::C2R: return is_double ? CUFFT_Z2D : CUFFT_C2R;
    default: return is_double ? CUFFT_Z2Z : CUFFT_C2C;
  }
}

std::shared_ptr<CufftPlan> make_plan(FftKind kind, bool is_double, int64_t n, int64_t batch, int64_t n_outer,
                                     int64_t stride) {
  auto plan = std::make_shared<CufftPlan>();
  plan->n = n;
  plan->batch = batch;
  plan->n_outer = n_outer;
  check_cufft(cufftCreate(&plan->handle), "plan creation", n, batch, n_outer);
  // Work areas come from PyTorch's allocator at execution (stream-ordered).
  check_cufft(cufftSetAutoAllocation(plan->handle, 0), "setting auto allocation", n, batch, n_outer);
  const int rank = n_outer > 1 ? 2 : 1;
  long long dims[2] = {static_cast<long long>(n_outer), static_cast<long long>(n)};
  long long embed[1] = {static_cast<long long>(n)};
  const bool strided = stride > 0 && rank == 1;
  size_t work = 0;
  check_cufft(cufftMakePlanMany64(plan->handle, rank, rank == 2 ? dims : dims + 1, strided ? embed : nullptr,
                                  strided ? stride : 1, strided ? 1 : 0, strided ? embed : nullptr,
                                  strided ? stride : 1, strided ? 1 : 0, type_of(kind, is_double),
                                  static_cast<long long>(batch), &work),
              "plan creation (cufftMakePlanMany64)", n, batch, n_outer);
  plan->work_bytes = work;
  return plan;
}

}  // namespace

std::shared_ptr<CufftPlan> get_plan(int device, FftKind kind, bool is_double, int64_t n, int64_t batch,
                                    int64_t n_outer, int64_t stride) {
  PlanCache& c = cache();
  const Key key{device, static_cast<int>(kind), is_double, n, batch, n_outer, stride};
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.plans.find(key);
    if (it != c.plans.end()) {
      c.order.splice(c.order.begin(), c.order, it->second.second);
      return it->second.first;
    }
  }
  // Plan outside the lock: planning can take milliseconds.
  bind_primary_context();
  std::shared_ptr<CufftPlan> plan = make_plan(kind, is_double, n, batch, n_outer, stride);
  std::lock_guard<std::mutex> lock(c.mutex);
  auto it = c.plans.find(key);
  if (it != c.plans.end()) return it->second.first;  // another thread won the race
  if (c.limit > 0) {
    c.order.push_front(key);
    c.plans.emplace(key, std::make_pair(plan, c.order.begin()));
    c.trim();
  }
  return plan;
}

void exec_plan(CufftPlan& plan, FftKind kind, bool is_double, void* in, void* out, bool forward,
               const at::TensorOptions& device_opts) {
  bind_primary_context();
  std::lock_guard<std::mutex> lock(plan.mutex);
  at::Tensor work;
  if (plan.work_bytes > 0) {
    work = at::empty({static_cast<int64_t>(plan.work_bytes)}, device_opts.dtype(at::kByte));
    check_cufft(cufftSetWorkArea(plan.handle, work.data_ptr()), "setting the work area", plan.n, plan.batch, plan.n_outer);
  }
  check_cufft(cufftSetStream(plan.handle, at::cuda::getCurrentCUDAStream()), "setting the stream", plan.n, plan.batch, plan.n_outer);
  const int dir = forward ? CUFFT_FORWARD : CUFFT_INVERSE;
  cufftResult st;
  if (is_double) {
    switch (kind) {
      case FftKind::R2C: st = cufftExecD2Z(plan.handle, (cufftDoubleReal*)in, (cufftDoubleComplex*)out); break;
      case FftKind::C2R: st = cufftExecZ2D(plan.handle, (cufftDoubleComplex*)in, (cufftDoubleReal*)out); break;
      default: st = cufftExecZ2Z(plan.handle, (cufftDoubleComplex*)in, (cufftDoubleComplex*)out, dir);
    }
  } else {
    switch (kind) {
      case FftKind::R2C: st = cufftExecR2C(plan.handle, (cufftReal*)in, (cufftComplex*)out); break;
      case FftKind::C2R: st = cufftExecC2R(plan.handle, (cufftComplex*)in, (cufftReal*)out); break;
      default: st = cufftExecC2C(plan.handle, (cufftComplex*)in, (cufftComplex*)out, dir);
    }
  }
  check_cufft(st, "execution", plan.n, plan.batch, plan.n_outer);
}

void set_plan_cache_limit(int64_t n) {
  TORCH_CHECK(n >= 0, "fftconv: plan cache limit must be non-negative, got ", n);
  PlanCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.limit = n;
  c.trim();
}

int64_t plan_cache_size() {
  PlanCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return static_cast<int64_t>(c.plans.size());
}

void clear_plan_cache() {
  PlanCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.plans.clear();
  c.order.clear();
}

}  // namespace cuda
}  // namespace fftconv
