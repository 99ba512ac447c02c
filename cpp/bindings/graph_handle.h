// The object behind pyrnn._core.Graph, shared by the graph and model-stream bindings.
#pragma once

#include <pybind11/pybind11.h>

#include <memory>

#include "bindings/instance.h"
#include "graph/plan_cache.h"

namespace pyrnn::bindings {

struct GraphHandle {
  std::shared_ptr<graph::PlanCache> plans;
};

inline GraphHandle& graph_of(pybind11::handle self) {
  return initialized<GraphHandle>(self, "Graph");
}

}  // namespace pyrnn::bindings
