#include "conv/pipeline_choice.h"

#include <c10/util/Exception.h>

#include "cuda/small_plane/forward.h"

#include <map>
#include <mutex>
#include <tuple>

namespace fftconv {
namespace {

constexpr PipelineInfo kInfo[kPipelineCount] = {{"default"}, {"rows"}, {"planes"}, {"small_plane"}};

// What defines the problem, not how a pipeline runs it (no n_fft).
using Key = std::tuple<int, bool, int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool>;

Key key_of(const ConvGeometry2d& p, int device, bool is_double, Direction d) {
  return Key{device,        is_double,      static_cast<int>(d), p.batch,         p.c_in,
             p.c_out,       p.groups,       p.kernel_h,          p.kernel_w,      p.h.in_len,
             p.w.in_len,    p.h.out_len,    p.w.out_len,         p.h.stride,      p.w.stride,
             p.h.dilation,  p.w.dilation,   p.h.shift,           p.w.shift,       p.h.circular};
}

std::mutex& table_mutex() {
  static std::mutex m;
  return m;
}
std::map<Key, Pipeline>& table() {
  static std::map<Key, Pipeline> t;
  return t;
}
thread_local Pipeline forced = Pipeline::Default;

}  // namespace

const PipelineInfo& pipeline_info(Pipeline p) {
  const int i = static_cast<int>(p);
  TORCH_CHECK(i >= 0 && i < kPipelineCount, "fftconv: no pipeline ", i);
  return kInfo[i];
}

GpuComponent component_of(Pipeline p, Direction d) {
  switch (p) {
    case Pipeline::Planes: return GpuComponent::PlanesPipeline;
    case Pipeline::SmallPlane:
      return d == Direction::GradWeight ? GpuComponent::SmallPlaneWeightGradient
             : d == Direction::Backward ? GpuComponent::SmallPlaneJointBackward
                                        : GpuComponent::SmallPlaneForward;
    default: return GpuComponent::RowsPipeline;
  }
}

bool pipeline_applies(Pipeline p, const ConvGeometry2d& geometry, bool is_double, Direction d) {
  switch (p) {
    case Pipeline::Default:
    case Pipeline::Rows: return d != Direction::Backward;  // no joint pass: the two pipelines
    case Pipeline::Planes: return d == Direction::Forward || d == Direction::GradInput;
    case Pipeline::SmallPlane:
      return !is_double && small_plane::applies(small_plane::pad_to_compiled_lengths(geometry));
  }
  return false;
}

Pipeline pipeline_for(const ConvGeometry2d& p, int device, bool is_double, Direction d) {
  if (forced != Pipeline::Default) return forced;
  std::lock_guard<std::mutex> lock(table_mutex());
  if (table().empty()) return Pipeline::Default;
  const auto it = table().find(key_of(p, device, is_double, d));
  return it == table().end() ? Pipeline::Default : it->second;
}

void set_pipeline_choice(const ConvGeometry2d& p, int device, bool is_double, Direction d, Pipeline choice) {
  std::lock_guard<std::mutex> lock(table_mutex());
  // Bounded like the other caches: a process that sees endless shapes forgets old choices.
  if (table().size() >= 4096) table().clear();
  table()[key_of(p, device, is_double, d)] = choice;
}

void clear_pipeline_choices() {
  std::lock_guard<std::mutex> lock(table_mutex());
  table().clear();
}

int64_t pipeline_choice_count() {
  std::lock_guard<std::mutex> lock(table_mutex());
  return static_cast<int64_t>(table().size());
}

Pipeline set_forced_pipeline(Pipeline p) {
  (void)pipeline_info(p);
  const Pipeline previous = forced;
  forced = p;
  return previous;
}

Pipeline pipeline_from_name(const std::string& name) {
  for (int i = 0; i < kPipelineCount; ++i)
    if (name == kInfo[i].name) return static_cast<Pipeline>(i);
  TORCH_CHECK_VALUE(false, "fftconv: pipeline must be one of 'default', 'rows', 'planes', 'small_plane', got '", name, "'");
}

std::vector<std::string> pipeline_names() {
  std::vector<std::string> names;
  for (int i = 0; i < kPipelineCount; ++i) names.emplace_back(kInfo[i].name);
  return names;
}

}  // namespace fftconv
