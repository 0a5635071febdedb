#include "settings.h"

#include <c10/util/Exception.h>

namespace fftconv {

Settings& settings() {
  static Settings s;
  return s;
}

std::vector<std::string> setting_names() {
  return {"cpu_lanes", "cpu_chunk_bytes", "device_checks", "cuda_small_plane", "cuda_small_plane_shared_bytes", "cuda_unverified"};
}

int64_t get_setting(const std::string& name) {
  const Settings& s = settings();
  if (name == "cpu_lanes") return s.cpu_lanes.load();
  if (name == "cpu_chunk_bytes") return s.cpu_chunk_bytes.load();
  if (name == "device_checks") return s.device_checks.load();
  if (name == "cuda_small_plane") return s.cuda_small_plane.load();
  if (name == "cuda_small_plane_shared_bytes") return s.cuda_small_plane_shared_bytes.load();
  if (name == "cuda_unverified") return s.cuda_unverified.load();
  TORCH_CHECK_VALUE(false, "fftconv: unknown setting '", name, "'");
}

void set_setting(const std::string& name, int64_t value) {
  Settings& s = settings();
  if (name == "cpu_lanes") {
    s.cpu_lanes.store(value != 0);
  } else if (name == "cpu_chunk_bytes") {
    TORCH_CHECK_VALUE(value >= (int64_t(4) << 10), "fftconv: cpu_chunk_bytes must be at least 4096, got ", value);
    s.cpu_chunk_bytes.store(value);
  } else if (name == "device_checks") {
    TORCH_CHECK_VALUE(value >= -1 && value <= 1, "fftconv: device_checks must be -1, 0 or 1, got ", value);
    s.device_checks.store(static_cast<int>(value));
  } else if (name == "cuda_small_plane") {
    s.cuda_small_plane.store(value != 0);
  } else if (name == "cuda_small_plane_shared_bytes") {
    TORCH_CHECK_VALUE(value >= (int64_t(1) << 10) && value <= (int64_t(200) << 10),
                      "fftconv: cuda_small_plane_shared_bytes must be in [1 KiB, 200 KiB], got ", value);
    s.cuda_small_plane_shared_bytes.store(value);
  } else if (name == "cuda_unverified") {
    s.cuda_unverified.store(value != 0);
  } else {
    TORCH_CHECK_VALUE(false, "fftconv: unknown setting '", name, "'");
  }
}

}  // namespace fftconv
