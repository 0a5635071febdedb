// Which pipeline a CUDA problem runs (docs/design.md §17). The CUDA driver
// carries several pipelines for the same convolution; which is fastest depends
// on the GPU and the problem, so algo="auto" (Python) measures them on the
// user's device and records its choice here, per problem and direction. A
// problem nobody chose for runs the default pipeline: the one that has passed
// the CUDA tests on a GPU. Device-agnostic: compiled in every build (the CPU
// build exposes the same API to Python; its driver does not read it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "conv/conv_geometry.h"
#include "verified_on_gpu.h"

namespace fftconv {

enum class Pipeline : int {
  Default = 0,  // the verified default (Rows), or SmallPlane where backends.cuda_small_plane opts in
  Rows = 1,     // row-pruned: 1-D transforms along W over data rows, then along H (docs/design.md §4)
  Planes = 2,   // whole-plane: one batched 2-D R2C/C2R over every plane of a block (docs/design.md §17)
  SmallPlane = 3,   // the small-plane kernel, where it applies (docs/design.md §13)
};
constexpr int kPipelineCount = 4;

// Backward: both gradients in one pass (conv2d_backward). Only the small-plane kernel has
// such a pass; it runs where this direction recorded SmallPlane (after algo compared it)
// or where backends.cuda_small_plane opts in.
enum class Direction : int { Forward = 0, GradInput = 1, GradWeight = 2, Backward = 3 };
constexpr int kDirectionCount = 4;

struct PipelineInfo {
  const char* name;
};
const PipelineInfo& pipeline_info(Pipeline p);

// The GPU component (verified_on_gpu.h) that runs pipeline p in direction d.
GpuComponent component_of(Pipeline p, Direction d);

// Whether pipeline p runs this problem itself in direction d, rather than handing
// it to the row-pruned one (its kernel does not take the geometry or the dtype).
bool pipeline_applies(Pipeline p, const ConvGeometry2d& geometry, bool is_double, Direction d);

// The pipeline for a problem (the geometry's transform lengths do not enter:
// the small-plane kernel raises them), in this order: the calling thread's forced
// pipeline (set_forced_pipeline), the recorded choice, Default.
Pipeline pipeline_for(const ConvGeometry2d& p, int device, bool is_double, Direction d);

void set_pipeline_choice(const ConvGeometry2d& p, int device, bool is_double, Direction d, Pipeline choice);
void clear_pipeline_choices();
int64_t pipeline_choice_count();

// A pipeline forced on the calling thread (Default: none); returns the previous
// one. algo="auto" times each candidate this way.
Pipeline set_forced_pipeline(Pipeline p);

Pipeline pipeline_from_name(const std::string& name);
std::vector<std::string> pipeline_names();

}  // namespace fftconv
