// Narrow weight constants in model graphs: what add_constant accepts (int8 needs finite, positive
// scales, one per row; narrow types are matrices), which ops pack them (linear, conv1d, rnn,
// rnn_cell) and that every other use is refused when the node is built, naming the constant.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "graph/graph.h"

namespace g = pyrnn::graph;

namespace {

using Op = g::Graph::Operand;

Op name(const char* n) { return Op{Op::Name, n, 0}; }

g::Shape shape_of(std::initializer_list<std::int64_t> dims) {
  g::Shape shape;
  for (std::int64_t d : dims) shape.push_back(d);
  return shape;
}

// Runs `build` and returns the message of the std::invalid_argument it throws ("" if none).
template <class F>
std::string refusal(F build) {
  try {
    build();
  } catch (const std::invalid_argument& error) {
    return error.what();
  }
  return "";
}

bool contains(const std::string& text, const char* part) {
  return text.find(part) != std::string::npos;
}

void check_constants() {
  const std::vector<std::int8_t> q(12, 1);
  const std::vector<std::uint16_t> half(12, 0x3c00);  // 1.0
  std::vector<float> scales(3, 0.5f);
  g::Graph graph;
  std::string message =
      refusal([&] { graph.add_constant("w", g::DType::I8, shape_of({3, 4}), q.data(), nullptr); });
  PYRNN_CHECK(contains(message, "constant 'w': int8 needs one scale per row"));
  message = refusal([&] {
    graph.add_constant("h", g::DType::F16, shape_of({3, 4}), half.data(), scales.data());
  });
  PYRNN_CHECK(contains(message, "only int8 constants take scales, got float16"));
  message = refusal([&] { graph.add_constant("v", g::DType::F16, shape_of({12}), half.data()); });
  PYRNN_CHECK(contains(message, "float16 constants are weight matrices"));
  for (const float bad : {0.0f, -1.0f, std::nanf(""), INFINITY}) {
    scales[1] = bad;
    message = refusal(
        [&] { graph.add_constant("s", g::DType::I8, shape_of({3, 4}), q.data(), scales.data()); });
    PYRNN_CHECK(contains(message, "scale of row 1"));
  }
}

void check_uses() {
  const std::vector<std::int8_t> q(16, 3);
  const std::vector<float> scales(4, 0.25f), bias(4, 0.0f);
  const auto fresh = [&] {
    auto graph = std::make_unique<g::Graph>();
    graph->add_input("x", g::DType::F32, {-1, 4});
    graph->add_constant("w", g::DType::I8, shape_of({4, 4}), q.data(), scales.data());
    graph->add_constant("b", g::DType::F32, shape_of({4}), bias.data());
    return graph;
  };
  auto graph = fresh();
  graph->add_node("linear", {name("x"), name("w"), name("b")}, {"y"}, {}, "");  // packs it
  graph->set_outputs({"y"});
  graph = fresh();
  std::string message =
      refusal([&] { graph->add_node("add", {name("x"), name("w")}, {"y"}, {}, "fc.py:3"); });
  PYRNN_CHECK(contains(message, "'w' is a int8 weight; op 'add' takes it as a float32 value"));
  PYRNN_CHECK(contains(message, "fc.py:3"));
  g::Attrs norm;
  norm.set("normalized_rank", std::int64_t{2});
  norm.set("eps", 1e-5);
  message = refusal(
      [&] { graph->add_node("layer_norm", {name("x"), name("w"), Op{}}, {"z"}, norm, ""); });
  PYRNN_CHECK(contains(message, "weight 'w' is a int8 weight; this op takes float32"));
  message = refusal([&] { graph->set_outputs({"w"}); });
  PYRNN_CHECK(contains(message, "output 0 'w' is a int8 weight"));
  // The graph is unchanged by the refused nodes: a linear still builds on it.
  graph->add_node("linear", {name("x"), name("w"), Op{}}, {"y"}, {}, "");
}

// A graph packs a weight once however many nodes pack it alike; a graph built on another's
// constants takes its packed panels and copies of those it may share, fetching only the rest.
void check_sharing() {
  std::vector<float> w(32), b(8), u(32);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = 0.5f * static_cast<float>(i) - 3.0f;
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(i);
  for (std::size_t i = 0; i < u.size(); ++i) u[i] = -static_cast<float>(i);
  std::vector<std::string> fetched;
  const auto source = [&](const std::string& n) -> g::ConstantBytes {
    fetched.push_back(n);
    return {n == "w" ? w.data() : n == "b" ? b.data() : u.data(), nullptr};
  };
  const auto deferred = [&](g::Graph& graph, const char* wide) {
    graph.add_input("x", g::DType::F32, {-1, 4});
    graph.add_deferred_constant("w", g::DType::F32, shape_of({8, 4}));
    graph.add_deferred_constant("b", g::DType::F32, shape_of({8}));
    graph.add_deferred_constant("u", g::DType::F32, shape_of({8, 4}));
    graph.add_deferred_constant("v", g::DType::F32, shape_of({8, std::atoi(wide)}));
    graph.set_source(source);
  };
  auto base = std::make_shared<g::Graph>();
  deferred(*base, "4");
  base->add_node("linear", {name("x"), name("w"), name("b")}, {"y"}, {}, "");
  base->add_node("linear", {name("x"), name("w")}, {"z"}, {}, "");
  base->add_node("linear", {name("x"), name("v")}, {"t"}, {}, "");
  base->set_outputs({"y", "z", "t"});
  std::sort(fetched.begin(), fetched.end());
  PYRNN_CHECK(fetched == std::vector<std::string>({"b", "u", "v", "w"}));  // w once; u unread

  fetched.clear();
  g::Graph graph;
  deferred(graph, "2");                     // v: another shape here
  graph.share_from(base, {"w", "b", "v"});  // u: not the same bytes here
  graph.add_node("linear", {name("x"), name("w"), name("b")}, {"y"}, {}, "");
  graph.add_node("linear", {name("x"), name("u")}, {"z"}, {}, "");
  graph.set_outputs({"y", "z"});  // holds v, unread, as a copy: its own
  std::sort(fetched.begin(), fetched.end());
  PYRNN_CHECK(fetched == std::vector<std::string>({"u", "v"}));
  PYRNN_CHECK(graph.constant("b")->values() == base->constant("b")->values());
  std::vector<float> back(32);
  graph.read(*graph.constant("w"), back.data());
  PYRNN_CHECK(back == w);
  graph.read(*graph.constant("u"), back.data());
  PYRNN_CHECK(back == u);
}

}  // namespace

int main() {
  check_constants();
  check_uses();
  check_sharing();
  return pyrnn::testing::failures() == 0 ? 0 : 1;
}
