// The plans of one graph for the input shapes seen last. A forward call checks a plan out
// (removing it, so two threads never share one), runs it, and returns it; a second thread
// asking for the same shapes meanwhile makes its own plan.
#pragma once

#include <list>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "graph/plan.h"

namespace pyrnn::graph {

class PlanCache {
 public:
  explicit PlanCache(std::shared_ptr<const Graph> graph, std::size_t capacity = 4)
      : graph_(std::move(graph)), capacity_(capacity) {}

  const std::shared_ptr<const Graph>& graph() const noexcept { return graph_; }

  // A plan for these inputs, from the cache or newly made (may throw, naming the node).
  std::unique_ptr<Plan> acquire(const std::vector<ValueMeta>& inputs) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto it = plans_.begin(); it != plans_.end(); ++it) {
        if (same_inputs(it->first, inputs)) {
          std::unique_ptr<Plan> plan = std::move(it->second);
          plans_.erase(it);
          return plan;
        }
      }
    }
    return std::make_unique<Plan>(graph_, inputs);
  }

  void release(const std::vector<ValueMeta>& inputs, std::unique_ptr<Plan> plan) {
    std::lock_guard<std::mutex> lock(mutex_);
    plans_.emplace_front(inputs, std::move(plan));
    while (plans_.size() > capacity_) plans_.pop_back();
  }

  std::size_t size() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return plans_.size();
  }

 private:
  static bool same_inputs(const std::vector<ValueMeta>& a, const std::vector<ValueMeta>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
      if (a[i].dtype != b[i].dtype || a[i].shape != b[i].shape) return false;
    return true;
  }

  std::shared_ptr<const Graph> graph_;
  std::size_t capacity_;
  mutable std::mutex mutex_;
  std::list<std::pair<std::vector<ValueMeta>, std::unique_ptr<Plan>>> plans_;
};

}  // namespace pyrnn::graph
