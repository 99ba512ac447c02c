// Times RTNeural's compile-time models (ModelT, Eigen backend) on the tiny recurrent networks of
// the pyrnn benchmark, as RTNeural's users build them; run.py compiles it against a given RTNeural
// checkout and checks its outputs against pyrnn's on the same weights.
//
// Usage: rtneural_bench MODEL WEIGHTS INPUT OUTPUT REPEATS
//   MODEL    lstm-8, lstm-16, lstm-32, lstm-64, gru-32, gru-64 or lstm-16x2 (I = 1 for all)
//   WEIGHTS  float32 per layer: weight_ih (G*H, I_l), weight_hh (G*H, H), bias_ih, bias_hh
//            (PyTorch layout and gate order)
//   INPUT    float32 samples (T)
//   OUTPUT   written: the top layer's h per sample, float32 (T, H)
// Each pass over the input is timed in blocks of kBlock samples; prints the median and the fastest
// block, in ns per sample, over REPEATS passes (the fastest is the figure least disturbed by other
// processes on a shared machine).
#include <RTNeural/RTNeural.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {

constexpr std::size_t kBlock = 4096;

std::vector<float> read_floats(const char* path) {
  std::ifstream file(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  std::vector<float> values(bytes.size() / sizeof(float));
  std::copy(bytes.begin(), bytes.begin() + values.size() * sizeof(float),
            reinterpret_cast<char*>(values.data()));
  return values;
}

struct Reader {
  const std::vector<float>& data;
  std::size_t at = 0;
  // rows x cols in PyTorch layout, returned transposed (cols x rows), as RTNeural's torch helpers
  // pass them.
  std::vector<std::vector<float>> transposed(int rows, int cols) {
    std::vector<std::vector<float>> out(cols, std::vector<float>(rows));
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) out[c][r] = data[at + r * cols + c];
    at += static_cast<std::size_t>(rows) * cols;
    return out;
  }
  std::vector<float> vector(int n) {
    std::vector<float> out(data.begin() + at, data.begin() + at + n);
    at += n;
    return out;
  }
};

// PyTorch's GRU gates are (r, z, n), RTNeural's (z, r, n): swaps the first two blocks of H.
template <class Rows>
void swap_rz(Rows& rows, int hidden) {
  for (auto& row : rows) std::swap_ranges(row.begin(), row.begin() + hidden, row.begin() + hidden);
}

template <class Layer>
void load_lstm(Layer& layer, Reader& reader, int in, int hidden) {
  layer.setWVals(reader.transposed(4 * hidden, in));
  layer.setUVals(reader.transposed(4 * hidden, hidden));
  std::vector<float> bias = reader.vector(4 * hidden);
  const std::vector<float> bias_hh = reader.vector(4 * hidden);
  for (int i = 0; i < 4 * hidden; ++i) bias[i] += bias_hh[i];
  layer.setBVals(bias);
}

template <class Layer>
void load_gru(Layer& layer, Reader& reader, int in, int hidden) {
  auto w = reader.transposed(3 * hidden, in);
  swap_rz(w, hidden);
  layer.setWVals(w);
  auto u = reader.transposed(3 * hidden, hidden);
  swap_rz(u, hidden);
  layer.setUVals(u);
  std::vector<std::vector<float>> bias{reader.vector(3 * hidden), reader.vector(3 * hidden)};
  swap_rz(bias, hidden);
  layer.setBVals(bias);
}

template <class Model>
int run(Model& model, int hidden, const std::vector<float>& input, const char* output_path,
        int repeats) {
  std::vector<float> output(input.size() * hidden);
  model.reset();
  for (std::size_t t = 0; t < input.size(); ++t) {
    model.forward(&input[t]);
    std::copy(model.getOutputs(), model.getOutputs() + hidden, output.begin() + t * hidden);
  }
  std::ofstream(output_path, std::ios::binary)
      .write(reinterpret_cast<const char*>(output.data()),
             static_cast<std::streamsize>(output.size() * sizeof(float)));
  std::vector<double> times;
  float sink = 0.0f;
  for (int r = 0; r < repeats; ++r) {
    for (std::size_t t0 = 0; t0 + kBlock <= input.size(); t0 += kBlock) {
      const auto start = std::chrono::steady_clock::now();
      for (std::size_t t = t0; t < t0 + kBlock; ++t) sink += model.forward(&input[t]);
      const std::chrono::duration<double, std::nano> elapsed =
          std::chrono::steady_clock::now() - start;
      times.push_back(elapsed.count() / static_cast<double>(kBlock));
    }
  }
  std::sort(times.begin(), times.end());
  std::printf("%.2f %.2f\n", times[times.size() / 2], times.front());
  std::fprintf(stderr, "(checksum %g)\n", static_cast<double>(sink));
  return 0;
}

template <int H>
int lstm(Reader& reader, const std::vector<float>& input, const char* out, int repeats) {
  RTNeural::ModelT<float, 1, H, RTNeural::LSTMLayerT<float, 1, H>> model;
  load_lstm(model.template get<0>(), reader, 1, H);
  return run(model, H, input, out, repeats);
}

template <int H>
int gru(Reader& reader, const std::vector<float>& input, const char* out, int repeats) {
  RTNeural::ModelT<float, 1, H, RTNeural::GRULayerT<float, 1, H>> model;
  load_gru(model.template get<0>(), reader, 1, H);
  return run(model, H, input, out, repeats);
}

int lstm_16x2(Reader& reader, const std::vector<float>& input, const char* out, int repeats) {
  RTNeural::ModelT<float, 1, 16, RTNeural::LSTMLayerT<float, 1, 16>,
                   RTNeural::LSTMLayerT<float, 16, 16>>
      model;
  load_lstm(model.template get<0>(), reader, 1, 16);
  load_lstm(model.template get<1>(), reader, 16, 16);
  return run(model, 16, input, out, repeats);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s MODEL WEIGHTS INPUT OUTPUT REPEATS\n", argv[0]);
    return 2;
  }
  const std::string name = argv[1];
  const std::vector<float> weights = read_floats(argv[2]);
  const std::vector<float> input = read_floats(argv[3]);
  const int repeats = std::max(1, std::atoi(argv[5]));
  Reader reader{weights};
  if (name == "lstm-8") return lstm<8>(reader, input, argv[4], repeats);
  if (name == "lstm-16") return lstm<16>(reader, input, argv[4], repeats);
  if (name == "lstm-32") return lstm<32>(reader, input, argv[4], repeats);
  if (name == "lstm-64") return lstm<64>(reader, input, argv[4], repeats);
  if (name == "gru-32") return gru<32>(reader, input, argv[4], repeats);
  if (name == "gru-64") return gru<64>(reader, input, argv[4], repeats);
  if (name == "lstm-16x2") return lstm_16x2(reader, input, argv[4], repeats);
  std::fprintf(stderr, "unknown model %s\n", name.c_str());
  return 2;
}
