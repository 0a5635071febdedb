// Runs an AOTInductor package (torch._inductor.aoti_compile_and_package) of a
// model converted with fftconv_ext, from C++ alone:
//
//   run_aoti <libfftconv_ops.so> <model.pt2> <input.bin> <output.bin>
//
// The package's graph calls the torch.ops.fftconv operators; they are registered
// by loading their library (fftconv_ext.library_path() gives its path) before the
// package is loaded. input.bin / output.bin hold one float32 tensor each: the
// number of dimensions (int64), the sizes (int64 each), then the values.
#include <dlfcn.h>

#include <cstdint>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

namespace {

at::Tensor read_tensor(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  int64_t dims = 0;
  in.read(reinterpret_cast<char*>(&dims), sizeof dims);
  if (dims < 0 || dims > 8) throw std::runtime_error(path + ": bad number of dimensions");
  std::vector<int64_t> sizes(static_cast<size_t>(dims));
  in.read(reinterpret_cast<char*>(sizes.data()), static_cast<std::streamsize>(dims * sizeof(int64_t)));
  at::Tensor t = at::empty(sizes, at::kFloat);
  in.read(reinterpret_cast<char*>(t.data_ptr<float>()), static_cast<std::streamsize>(t.numel() * sizeof(float)));
  if (!in) throw std::runtime_error(path + ": shorter than its header says");
  return t;
}

void write_tensor(const std::string& path, const at::Tensor& value) {
  const at::Tensor t = value.to(at::kFloat).contiguous();
  std::ofstream out(path, std::ios::binary);
  const int64_t dims = t.dim();
  out.write(reinterpret_cast<const char*>(&dims), sizeof dims);
  out.write(reinterpret_cast<const char*>(t.sizes().data()), static_cast<std::streamsize>(dims * sizeof(int64_t)));
  out.write(reinterpret_cast<const char*>(t.data_ptr<float>()), static_cast<std::streamsize>(t.numel() * sizeof(float)));
  if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: " << argv[0] << " <libfftconv_ops.so> <model.pt2> <input.bin> <output.bin>\n";
    return 2;
  }
  // Registers torch.ops.fftconv.* (its static initialisers run TORCH_LIBRARY).
  if (dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    std::cerr << "cannot load the fftconv_ext operator library: " << dlerror() << "\n";
    return 1;
  }
  try {
    torch::inductor::AOTIModelPackageLoader loader(argv[2]);
    const std::vector<at::Tensor> outputs = loader.run({read_tensor(argv[3])});
    write_tensor(argv[4], outputs.at(0));
    std::cout << "ran " << argv[2] << ": output " << outputs.at(0).sizes() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "run_aoti: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
