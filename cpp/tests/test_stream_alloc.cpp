// Streams (of recurrent networks and of whole model graphs): step and feed agree with one
// whole-sequence forward(), allocate nothing after the stream exists, share one network across
// threads, refuse concurrent use of one stream, and are usable in a child process forked while
// another thread of the parent held them.
//
// Allocations are counted, on glibc, by interposing malloc & co. in this executable (forwarding to
// glibc's __libc_* entry points), so an allocation by any code path -- operator new, C or C++,
// ours or a library's -- is seen; elsewhere by replacing the global operator new/delete.
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>
#define PYRNN_TEST_FORK 1
#else
#define PYRNN_TEST_FORK 0
#endif

#include "check.h"
#include "core/dispatch.h"
#include "core/sequence.h"
#include "core/stream.h"
#include "graph/model_stream.h"
#include "runtime/thread_pool.h"

// -- allocation counting --------------------------------------------------------------------------
namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};
inline void note_allocation() {
  if (g_counting.load(std::memory_order_relaxed))
    g_allocations.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

#if defined(__SANITIZE_ADDRESS__)
#define PYRNN_COUNT_MALLOC 0  // ASan owns malloc and operator new: nothing is counted
#elif defined(__GLIBC__)
#define PYRNN_COUNT_MALLOC 1
#else
#define PYRNN_COUNT_MALLOC 0
#endif

#if PYRNN_COUNT_MALLOC
extern "C" {
void* __libc_malloc(std::size_t size);
void* __libc_calloc(std::size_t count, std::size_t size);
void* __libc_realloc(void* pointer, std::size_t size);
void* __libc_memalign(std::size_t alignment, std::size_t size);
void __libc_free(void* pointer);

void* malloc(std::size_t size) {
  note_allocation();
  return __libc_malloc(size);
}
void* calloc(std::size_t count, std::size_t size) {
  note_allocation();
  return __libc_calloc(count, size);
}
void* realloc(void* pointer, std::size_t size) {
  note_allocation();
  return __libc_realloc(pointer, size);
}
void* aligned_alloc(std::size_t alignment, std::size_t size) {
  note_allocation();
  return __libc_memalign(alignment, size);
}
void* memalign(std::size_t alignment, std::size_t size) {
  note_allocation();
  return __libc_memalign(alignment, size);
}
int posix_memalign(void** pointer, std::size_t alignment, std::size_t size) {
  note_allocation();
  *pointer = __libc_memalign(alignment, size);
  return *pointer == nullptr ? 12 /* ENOMEM */ : 0;
}
void free(void* pointer) { __libc_free(pointer); }
}
#define PYRNN_RAW_MALLOC __libc_malloc
#define PYRNN_RAW_MEMALIGN __libc_memalign
#define PYRNN_RAW_FREE __libc_free
#else
#define PYRNN_RAW_MALLOC std::malloc
#define PYRNN_RAW_MEMALIGN std::aligned_alloc
#define PYRNN_RAW_FREE std::free
#endif

// Without malloc interposition, count operator new instead. (With it, operator new is left to
// the C++ runtime, which calls malloc: replacing both would break valgrind, which swaps in its
// own operator new but cannot see inlined or cloned copies of our delete.)
#if !PYRNN_COUNT_MALLOC && !defined(__SANITIZE_ADDRESS__)
#define PYRNN_REPLACEMENT
namespace {
void* counted_new(std::size_t size) {
  note_allocation();
  if (void* pointer = PYRNN_RAW_MALLOC(size == 0 ? 1 : size)) return pointer;
  throw std::bad_alloc();
}
void* counted_new(std::size_t size, std::align_val_t alignment) {
  note_allocation();
  const std::size_t align = static_cast<std::size_t>(alignment);
  if (void* pointer = PYRNN_RAW_MEMALIGN(align, (size + align - 1) / align * align)) return pointer;
  throw std::bad_alloc();
}
}  // namespace

PYRNN_REPLACEMENT void* operator new(std::size_t size) { return counted_new(size); }
PYRNN_REPLACEMENT void* operator new[](std::size_t size) { return counted_new(size); }
PYRNN_REPLACEMENT void* operator new(std::size_t size, std::align_val_t align) {
  return counted_new(size, align);
}
PYRNN_REPLACEMENT void* operator new[](std::size_t size, std::align_val_t align) {
  return counted_new(size, align);
}
PYRNN_REPLACEMENT void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return counted_new(size);
  } catch (...) {
    return nullptr;
  }
}
PYRNN_REPLACEMENT void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept {
  return operator new(size, tag);
}
PYRNN_REPLACEMENT void operator delete(void* pointer) noexcept { PYRNN_RAW_FREE(pointer); }
PYRNN_REPLACEMENT void operator delete[](void* pointer) noexcept { PYRNN_RAW_FREE(pointer); }
PYRNN_REPLACEMENT void operator delete(void* pointer, std::size_t) noexcept {
  PYRNN_RAW_FREE(pointer);
}
PYRNN_REPLACEMENT void operator delete[](void* pointer, std::size_t) noexcept {
  PYRNN_RAW_FREE(pointer);
}
PYRNN_REPLACEMENT void operator delete(void* pointer, std::align_val_t) noexcept {
  PYRNN_RAW_FREE(pointer);
}
PYRNN_REPLACEMENT void operator delete[](void* pointer, std::align_val_t) noexcept {
  PYRNN_RAW_FREE(pointer);
}
PYRNN_REPLACEMENT void operator delete(void* pointer, std::size_t, std::align_val_t) noexcept {
  PYRNN_RAW_FREE(pointer);
}
PYRNN_REPLACEMENT void operator delete[](void* pointer, std::size_t, std::align_val_t) noexcept {
  PYRNN_RAW_FREE(pointer);
}
#endif

// -- the tests ------------------------------------------------------------------------------------
namespace {

using pyrnn::CellKind;

struct Case {
  CellKind kind;
  int input, hidden, layers, proj, rows;
};

// A network with PyTorch-like random weights (+-1/sqrt(H)), kept alive with its raw storage.
std::shared_ptr<const pyrnn::Network> make_network(const Case& c, std::mt19937& rng) {
  const pyrnn::NetworkConfig config{c.kind, c.input, c.hidden, c.layers, false, c.proj, {}};
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.hidden));
  const int G = config.gates(), H = c.hidden, P = config.output_size();
  std::vector<std::vector<float>> storage;
  std::vector<pyrnn::RawLayerWeights> weights;
  storage.reserve(c.layers * 5);
  auto add = [&](std::size_t n) {
    storage.emplace_back(n);
    for (float& x : storage.back()) x = scale * uniform(rng);
    return storage.back().data();
  };
  for (int l = 0; l < c.layers; ++l) {
    pyrnn::RawLayerWeights w;
    w.w_ih = add(std::size_t(G) * H * config.layer_input_size(l));
    w.w_hh = add(std::size_t(G) * H * P);
    w.b_ih = add(std::size_t(G) * H);
    w.b_hh = add(std::size_t(G) * H);
    if (c.proj > 0) w.w_hr = add(std::size_t(P) * H);
    weights.push_back(w);
  }
  return std::make_shared<const pyrnn::Network>(config, weights);
}

std::vector<float> random_vector(std::size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = uniform(rng);
  return v;
}

// Steps, feeds of awkward lengths (crossing the feed chunk), resets and state round trips,
// all with allocation counting on; results compared with forward() over the same sequence.
void check_stream(const Case& c, const pyrnn::KernelTable& kernels) {
  std::mt19937 rng(42);
  const auto network = make_network(c, rng);
  const pyrnn::NetworkConfig& config = network->config();
  const int N = c.rows, I = c.input, P = config.output_size(), H = c.hidden, L = c.layers;
  pyrnn::Stream stream(network, N);
  // One row of a small network runs the tiny kernels, anything else the general path.
  PYRNN_CHECK(stream.tiny() == (N == 1 && I <= 4 && H <= 64 && c.proj == 0));
  const int feed_lengths[] = {1, 3, stream.chunk_steps() + 5, 2 * stream.chunk_steps() + 1, 17};
  int steps = 40;  // single steps first
  for (int length : feed_lengths) steps += length;
  const std::vector<float> x = random_vector(std::size_t(steps) * N * I, rng);
  std::vector<float> out(std::size_t(steps) * N * P, -1.0f);
  std::vector<float> h(std::size_t(L) * N * P), cc(std::size_t(L) * N * H);

  const long before = g_allocations.load();
  g_counting.store(true);
  int t = 0;
  for (; t < 40; ++t)
    stream.step(kernels, x.data() + std::size_t(t) * N * I, I, out.data() + std::size_t(t) * N * P,
                P);
  for (int length : feed_lengths) {
    stream.feed(kernels, {x.data() + std::size_t(t) * N * I, N * I, I, length, N, I},
                {out.data() + std::size_t(t) * N * P, N * P, P, length, N, P});
    t += length;
  }
  stream.get_state(h.data(), cc.data());
  stream.reset();
  stream.reset_row(N - 1);
  stream.set_state(h.data(), cc.data());
  for (int repeat = 0; repeat < 500; ++repeat)  // many more steps: still nothing allocated
    stream.step(kernels, x.data(), I, out.data(), P);
  g_counting.store(false);
  PYRNN_CHECK(g_allocations.load() - before == 0);
  if (g_allocations.load() != before)
    std::fprintf(stderr, "  %ld allocations in step/feed (kind %d, %d layers, %s)\n",
                 g_allocations.load() - before, int(c.kind), L, kernels.name);

  // The same sequence through forward(): step/feed outputs and final state agree.
  std::vector<float> ref_out(out.size()), ref_h(h.size()), ref_c(cc.size());
  pyrnn::forward(kernels, *network, {x.data(), N * I, I, steps, N, I},
                 {ref_out.data(), N * P, P, steps, N, P}, nullptr, nullptr, ref_h.data(),
                 ref_c.data());
  // The general path: same kernels, same order of operations per step; the only difference is
  // where chunk boundaries fall, which changes no arithmetic. The tiny kernels round their
  // activations and sums differently by an ulp or two. 1e-6 absolute + relative allows for that.
  // Step 0's output was overwritten by the repeats after set_state, so it is left out.
  for (std::size_t i = std::size_t(N) * P; i < out.size(); ++i)
    PYRNN_CHECK_CLOSE(out[i], ref_out[i], 1e-6, 1e-6);
  for (std::size_t i = 0; i < h.size(); ++i) PYRNN_CHECK_CLOSE(h[i], ref_h[i], 1e-6, 1e-6);
  if (c.kind == CellKind::Lstm)
    for (std::size_t i = 0; i < cc.size(); ++i) PYRNN_CHECK_CLOSE(cc[i], ref_c[i], 1e-6, 1e-6);
}

// Eight threads, one shared network, one stream each: bit-identical to a single thread, and
// nothing allocated while they step and feed (counted on every thread: scratch made lazily per
// thread would show only here). Counting starts once every thread has made its stream and
// stops once all are done stepping, so thread start and exit are not counted.
void check_threads(const pyrnn::KernelTable& kernels) {
  std::mt19937 rng(7);
  const Case c{CellKind::Lstm, 5, 19, 2, 0, 3};
  const auto network = make_network(c, rng);
  const int N = c.rows, I = c.input, P = network->config().output_size(), T = 300;
  const std::vector<float> x = random_vector(std::size_t(T) * N * I, rng);
  constexpr int kThreads = 8;
  std::atomic<int> ready{0}, done{0};
  std::atomic<bool> go{false};
  auto run = [&](std::vector<float>& out, bool together) {
    pyrnn::Stream stream(network, N);
    if (together) {
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
    }
    int t = 0;
    for (; t < T / 2; ++t)
      stream.step(kernels, x.data() + std::size_t(t) * N * I, I,
                  out.data() + std::size_t(t) * N * P, P);
    const int rest = T - t;  // crosses a feed chunk
    stream.feed(kernels, {x.data() + std::size_t(t) * N * I, N * I, I, rest, N, I},
                {out.data() + std::size_t(t) * N * P, N * P, P, rest, N, P});
    if (together) done.fetch_add(1);
  };
  std::vector<float> expected(std::size_t(T) * N * P);
  run(expected, false);
  std::vector<std::vector<float>> results(kThreads, std::vector<float>(expected.size()));
  std::vector<std::thread> threads;
  for (auto& result : results) threads.emplace_back(run, std::ref(result), true);
  while (ready.load() < kThreads) std::this_thread::yield();
  const long before = g_allocations.load();
  g_counting.store(true);
  go.store(true);
  while (done.load() < kThreads) std::this_thread::yield();
  g_counting.store(false);
  const long allocated = g_allocations.load() - before;
  for (auto& thread : threads) thread.join();
  PYRNN_CHECK(allocated == 0);
  if (allocated != 0)
    std::fprintf(stderr, "  %ld allocations in step/feed on %d threads (%s)\n", allocated, kThreads,
                 kernels.name);
  for (const auto& result : results) PYRNN_CHECK(result == expected);
}

// A stream held by one thread: a second thread's call fails cleanly and changes nothing.
void check_exclusive(const pyrnn::KernelTable& kernels) {
  std::mt19937 rng(3);
  const Case c{CellKind::Gru, 4, 8, 1, 0, 2};
  pyrnn::Stream stream(make_network(c, rng), c.rows);
  const std::vector<float> x = random_vector(std::size_t(c.rows) * c.input, rng);
  std::vector<float> out(std::size_t(c.rows) * 8), before(out.size()), after(out.size());
  stream.step(kernels, x.data(), c.input, out.data(), 8);
  stream.get_state(before.data(), nullptr);
  bool refused = false;
  {
    const pyrnn::Stream::Exclusive held(stream);
    std::thread other([&] {
      try {
        stream.step(kernels, x.data(), c.input, out.data(), 8);
      } catch (const std::runtime_error&) {
        refused = true;
      }
    });
    other.join();
  }
  PYRNN_CHECK(refused);
  stream.get_state(after.data(), nullptr);
  PYRNN_CHECK(before == after);
  bool bidirectional_refused = false;
  try {
    const pyrnn::NetworkConfig config{CellKind::Gru, 1, 1, 1, true, 0, {}};
    const std::vector<float> w(3, 0.5f);
    const pyrnn::RawLayerWeights raw{w.data(), w.data(), nullptr, nullptr, nullptr};
    pyrnn::Stream(std::make_shared<const pyrnn::Network>(config, std::vector{raw, raw}), 1);
  } catch (const std::invalid_argument&) {
    bidirectional_refused = true;
  }
  PYRNN_CHECK(bidirectional_refused);
}

// A whole model streamed: causal conv1d (kept frames) -> slice -> permute -> linear -> LSTM ->
// linear -> log_softmax, outputs (N, T, 10) and h_n. Steps and feeds allocate nothing and
// agree with one planned forward over the whole sequence.
void check_model_stream(const pyrnn::KernelTable& kernels) {
  namespace g = pyrnn::graph;
  std::mt19937 rng(11);
  const int N = 2, C = 6, F = 8, H = 12, K = 3, O = 10;
  auto graph = std::make_shared<g::Graph>();
  graph->add_input("x", g::DType::F32, {-1, C, -1});
  const auto constant = [&](const char* name, std::initializer_list<std::int64_t> dims) {
    g::Shape shape;
    for (std::int64_t d : dims) shape.push_back(d);
    const std::vector<float> data = random_vector(std::size_t(shape.numel()), rng);
    graph->add_constant(name, g::DType::F32, shape, data.data());
  };
  constant("conv.w", {C, C, K});
  constant("conv.b", {C});
  constant("fc.w", {F, C});
  constant("w_ih", {4 * H, F});
  constant("w_hh", {4 * H, H});
  constant("b_ih", {4 * H});
  constant("b_hh", {4 * H});
  constant("head.w", {O, H});
  using Op = g::Graph::Operand;
  const auto name = [](const char* n) { return Op{Op::Name, n, 0}; };
  const auto literal = [](std::int64_t v) { return Op{Op::Literal, "", v}; };
  const auto attrs = [](std::initializer_list<std::pair<const char*, g::AttrValue>> list) {
    g::Attrs a;
    for (const auto& [key, value] : list) a.set(key, value);
    return a;
  };
  graph->add_node("conv1d", {name("x"), name("conv.w"), name("conv.b")}, {"c"},
                  attrs({{"stride", std::int64_t{1}},
                         {"padding", std::vector<std::int64_t>{K - 1, K - 1}},
                         {"dilation", std::int64_t{1}},
                         {"groups", std::int64_t{1}}}),
                  "");
  graph->add_node("slice", {name("c"), literal(0), literal(1 - K)}, {"s"},
                  attrs({{"dim", std::int64_t{2}}, {"step", std::int64_t{1}}}), "");
  graph->add_node("permute", {name("s")}, {"p"},
                  attrs({{"dims", std::vector<std::int64_t>{0, 2, 1}}}), "");
  graph->add_node("linear", {name("p"), name("fc.w"), Op{}}, {"f"}, {}, "");
  graph->add_node("rnn",
                  {name("f"), Op{}, Op{}, name("w_ih"), name("w_hh"), name("b_ih"), name("b_hh")},
                  {"r", "h_n", "c_n"},
                  attrs({{"mode", std::string("lstm")},
                         {"num_layers", std::int64_t{1}},
                         {"bidirectional", false},
                         {"batch_first", true},
                         {"has_biases", true}}),
                  "");
  graph->add_node("linear", {name("r"), name("head.w")}, {"y"}, {}, "");
  graph->add_node("log_softmax", {name("y")}, {"z"}, attrs({{"dim", std::int64_t{-1}}}), "");
  graph->set_outputs({"z", "h_n"});

  g::ModelStream stream(graph, g::find_stream_layout(*graph, nullptr), N, 4);
  PYRNN_CHECK(stream.layout().input_time[0] == 2);
  const int lengths[] = {1, 3, 4, 9, 17};
  int T = 30;
  for (int length : lengths) T += length;
  const std::vector<float> x = random_vector(std::size_t(N) * C * T, rng);
  // Frames and chunks in the stream's layout, gathered before counting starts.
  const auto gather = [&](int t0, int count) {
    std::vector<float> part(std::size_t(N) * C * count);
    for (int r = 0; r < N * C; ++r)
      for (int t = 0; t < count; ++t)
        part[std::size_t(r) * count + t] = x[std::size_t(r) * T + t0 + t];
    return part;
  };
  std::vector<std::vector<float>> pieces;
  std::vector<int> counts;
  for (int t = 0; t < 30; ++t) counts.push_back(-1);
  for (int length : lengths) counts.push_back(length);
  int t0 = 0;
  for (int count : counts) {
    pieces.push_back(gather(t0, count < 0 ? 1 : count));
    t0 += count < 0 ? 1 : count;
  }
  std::vector<float> z(std::size_t(N) * T * O), h_n(std::size_t(N) * H);
  std::vector<std::vector<float>> z_pieces;
  for (int count : counts) z_pieces.emplace_back(std::size_t(N) * (count < 0 ? 1 : count) * O);

  const long before = g_allocations.load();
  g_counting.store(true);
  for (std::size_t i = 0; i < counts.size(); ++i) {
    const void* in[] = {pieces[i].data()};
    void* out[] = {z_pieces[i].data(), h_n.data()};
    const g::RunStatus status =
        counts[i] < 0 ? stream.step(kernels, in, out) : stream.feed(kernels, counts[i], in, out);
    PYRNN_CHECK(status.message == nullptr);
  }
  g_counting.store(false);
  PYRNN_CHECK(g_allocations.load() - before == 0);
  if (g_allocations.load() != before)
    std::fprintf(stderr, "  %ld allocations in model stream step/feed (%s)\n",
                 g_allocations.load() - before, kernels.name);

  // The whole sequence at once.
  g::ValueMeta meta;
  meta.shape.push_back(N);
  meta.shape.push_back(C);
  meta.shape.push_back(T);
  g::Plan plan(graph, {meta});
  std::vector<float> ref_z(z.size()), ref_h(h_n.size());
  const void* in[] = {x.data()};
  void* out[] = {ref_z.data(), ref_h.data()};
  PYRNN_CHECK(plan.run(kernels, in, out).message == nullptr);
  t0 = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    const int count = counts[i] < 0 ? 1 : counts[i];
    for (int n = 0; n < N; ++n)
      for (int t = 0; t < count; ++t)
        for (int o = 0; o < O; ++o)
          PYRNN_CHECK_CLOSE(z_pieces[i][(std::size_t(n) * count + t) * O + o],
                            ref_z[(std::size_t(n) * T + t0 + t) * O + o], 2e-6, 2e-6);
    t0 += count;
  }
  for (std::size_t i = 0; i < h_n.size(); ++i) PYRNN_CHECK_CLOSE(h_n[i], ref_h[i], 2e-6, 2e-6);
}

#if PYRNN_TEST_FORK
// fork() while another thread holds the stream: that thread does not exist in the child, so the
// child must be able to use the stream (the stale hold is from the parent's fork generation),
// while in the parent the hold stays in force until its thread lets go.
void check_fork(const pyrnn::KernelTable& kernels) {
  std::mt19937 rng(5);
  const Case c{CellKind::Lstm, 3, 8, 2, 0, 1};
  pyrnn::Stream stream(make_network(c, rng), c.rows);
  const std::vector<float> x = random_vector(c.input, rng);
  std::vector<float> out(8);
  // A raw pthread, not std::thread: std::thread's heap-allocated start state belongs to the
  // holding thread, which the child lacks, so valgrind's leak check in the child would report it.
  struct Holder {
    pyrnn::Stream* stream;
    std::atomic<bool> holding{false}, release{false};
  } context{&stream};
  pthread_t holder;
  const auto hold = [](void* arg) -> void* {
    auto* h = static_cast<Holder*>(arg);
    const pyrnn::Stream::Exclusive held(*h->stream);
    h->holding.store(true);
    while (!h->release.load()) sched_yield();
    return nullptr;
  };
  PYRNN_CHECK(pthread_create(&holder, nullptr, hold, &context) == 0);
  std::atomic<bool>& holding = context.holding;
  std::atomic<bool>& release = context.release;
  while (!holding.load()) std::this_thread::yield();
  const std::uint32_t generation = pyrnn::fork_generation();
  const pid_t child = fork();
  if (child == 0) {
    int code = pyrnn::fork_generation() == generation + 1 ? 0 : 3;
    try {
      stream.step(kernels, x.data(), c.input, out.data(), 8);
    } catch (const std::runtime_error&) {
      code = 4;
    }
    _exit(code);
  }
  bool refused_in_parent = false;
  try {
    stream.step(kernels, x.data(), c.input, out.data(), 8);
  } catch (const std::runtime_error&) {
    refused_in_parent = true;
  }
  release.store(true);
  pthread_join(holder, nullptr);
  int status = -1;
  PYRNN_CHECK(child > 0 && waitpid(child, &status, 0) == child);
  PYRNN_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  PYRNN_CHECK(refused_in_parent);
  PYRNN_CHECK(pyrnn::fork_generation() == generation);
}
#endif

}  // namespace

// Calls every allocation function the counter replaces, once each, with counting on; returns
// how many it called. A counter blind to one of them would let that kind of allocation through
// unseen (AlignedBuffer, the core's scratch, allocates with aligned_alloc).
// volatile: the compiler may otherwise elide an allocation and its release.
long allocate_once_each_way() {
  long calls = 0;
  g_counting.store(true);
  int* volatile object = new int(1);
  ++calls;
#if PYRNN_COUNT_MALLOC
  void* volatile raw[6] = {};
  raw[0] = std::malloc(16);
  raw[1] = std::calloc(2, 8);
  raw[2] = std::realloc(nullptr, 16);
  raw[3] = std::aligned_alloc(64, 64);
  raw[4] = memalign(64, 64);
  void* aligned = nullptr;
  const int status = posix_memalign(&aligned, 64, 64);
  raw[5] = aligned;
  calls += 6;
  g_counting.store(false);
  PYRNN_CHECK(status == 0);
  for (void* pointer : raw) {
    PYRNN_CHECK(pointer != nullptr);
    std::free(pointer);
  }
#else
  int* volatile array = new int[4];
  auto* volatile wide = new std::max_align_t[2];
  auto* volatile over = new (std::align_val_t(64)) char[64];
  int* volatile quiet = new (std::nothrow) int(2);
  calls += 4;
  g_counting.store(false);
  delete[] array;
  delete[] wide;
  operator delete[](over, std::align_val_t(64));
  delete quiet;
#endif
  delete object;
  return calls;
}

int main() {
  // The counter must see every kind of allocation, or a zero count proves nothing.
  const long calls = allocate_once_each_way();
  // Valgrind swaps in its own malloc for ours (its memcheck run is about memory errors, not this
  // count) and ASan owns malloc: there the count is known to be blind, and says so.
  const char* preload = std::getenv("LD_PRELOAD");
  [[maybe_unused]] const bool under_valgrind =
      preload != nullptr && std::strstr(preload, "vgpreload") != nullptr;
#if defined(__SANITIZE_ADDRESS__)
  const bool blind = true;
#else
  const bool blind = under_valgrind;
#endif
  if (blind)
    std::printf("test_stream_alloc: allocations cannot be counted here (valgrind or ASan)\n");
  else
    PYRNN_CHECK(g_allocations.load() == calls);
  g_allocations.store(0);

  // First, before anything has started the thread pool: a network too small to split never
  // touches it, so not even its first step makes the pool.
  check_stream({CellKind::Lstm, 1, 8, 1, 0, 1}, pyrnn::active_kernels());

  for (const std::string& isa : pyrnn::available_isas()) {
    pyrnn::set_isa(isa);
    const pyrnn::KernelTable& kernels = pyrnn::active_kernels();
    for (CellKind kind : {CellKind::RnnTanh, CellKind::RnnRelu, CellKind::Lstm, CellKind::Gru}) {
      check_stream({kind, 3, 17, 1, 0, 1}, kernels);  // tiny kernels
      check_stream({kind, 1, 16, 2, 0, 1}, kernels);  // tiny kernels, two layers in one call
      check_stream({kind, 1, 33, 3, 0, 4}, kernels);
    }
    check_stream({CellKind::Lstm, 7, 33, 2, 5, 3}, kernels);
    // Again with every step split across three threads (33 hidden units: three blocks): the
    // pool's regions and barriers allocate nothing either.
    pyrnn::ThreadPool::instance().set_threads(3);
    pyrnn::set_split_every_step(true);
    for (CellKind kind : {CellKind::RnnTanh, CellKind::Lstm, CellKind::Gru})
      check_stream({kind, 1, 33, 3, 0, 4}, kernels);
    check_stream({CellKind::Lstm, 7, 33, 2, 5, 3}, kernels);
    pyrnn::set_split_every_step(false);
    pyrnn::ThreadPool::instance().set_threads(pyrnn::available_cpus());
    check_threads(kernels);
    check_exclusive(kernels);
    check_model_stream(kernels);
#if PYRNN_TEST_FORK
    check_fork(kernels);
#endif
  }
  if (pyrnn::testing::failures() != 0) {
    std::fprintf(stderr, "%d checks failed\n", pyrnn::testing::failures());
    return 1;
  }
  std::printf("test_stream_alloc: all checks passed on %zu ISAs (allocations counted: %s)\n",
              pyrnn::available_isas().size(),
              blind                ? "no"
              : PYRNN_COUNT_MALLOC ? "malloc and new"
                                   : "new only");
  return 0;
}
