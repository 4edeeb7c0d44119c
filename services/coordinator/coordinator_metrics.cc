#include "services/coordinator/coordinator_metrics.h"

#include "libs/metrics/metric_catalog.h"

namespace lethe {
namespace {

template <typename Builder>
auto& Register(Builder builder, const std::string& name,
               prometheus::Registry& registry) {
  const MetricInfo& info = CatalogMetric(name);
  return builder.Name(info.name).Help(info.help).Register(registry);
}

auto& Gauge(const std::string& name, prometheus::Registry& registry) {
  return Register(prometheus::BuildGauge(), name, registry);
}
auto& Counter(const std::string& name, prometheus::Registry& registry) {
  return Register(prometheus::BuildCounter(), name, registry);
}
auto& Histogram(const std::string& name, prometheus::Registry& registry) {
  return Register(prometheus::BuildHistogram(), name, registry);
}

// 1 ms to about 17 minutes, doubling.
prometheus::Histogram::BucketBoundaries SecondsBuckets() {
  prometheus::Histogram::BucketBoundaries buckets;
  for (double bound = 0.001; bound < 1100; bound *= 2) {
    buckets.push_back(bound);
  }
  return buckets;
}

template <typename T>
void RemoveSeries(prometheus::Family<T>& family, T* metric) {
  if (metric != nullptr) family.Remove(metric);
}

}  // namespace

CoordinatorMetrics::CoordinatorMetrics(prometheus::Registry& registry)
    : jobs_(Gauge("lethe_jobs", registry)),
      queue_length_(Gauge("lethe_job_queue_length", registry)),
      workers_registered_(Gauge("lethe_workers_registered", registry)),
      workers_healthy_(Gauge("lethe_workers_healthy", registry)),
      workers_busy_(Gauge("lethe_workers_busy", registry)),
      jobs_waiting_for_workers_(
          Gauge("lethe_jobs_waiting_for_workers", registry)),
      restarts_(Counter("lethe_job_restarts_total", registry)),
      failures_(Counter("lethe_job_failures_total", registry)),
      store_errors_(Counter("lethe_job_store_errors_total", registry)),
      finished_(Counter("lethe_jobs_finished_total", registry)),
      api_requests_(Counter("lethe_api_requests_total", registry)),
      api_latency_(Histogram("lethe_api_request_duration_seconds", registry)),
      scheduling_latency_(
          Histogram("lethe_scheduling_latency_seconds", registry)),
      job_step_(Gauge("lethe_job_step", registry)),
      job_total_steps_(Gauge("lethe_job_total_steps", registry)),
      job_epoch_(Gauge("lethe_job_epoch", registry)),
      job_loss_(Gauge("lethe_job_loss", registry)),
      job_learning_rate_(Gauge("lethe_job_learning_rate", registry)),
      job_grad_norm_(Gauge("lethe_job_grad_norm", registry)),
      job_tokens_(Counter("lethe_job_tokens_total", registry)),
      job_tokens_per_second_(Gauge("lethe_job_tokens_per_second", registry)),
      job_step_duration_(
          Histogram("lethe_job_step_duration_seconds", registry)),
      job_allreduce_duration_(
          Histogram("lethe_job_allreduce_duration_seconds", registry)),
      job_checkpoint_duration_(
          Histogram("lethe_job_checkpoint_write_duration_seconds", registry)),
      job_last_step_time_(
          Gauge("lethe_job_last_step_timestamp_seconds", registry)),
      job_forget_quality_(Gauge("lethe_job_forget_quality", registry)),
      job_model_utility_(Gauge("lethe_job_model_utility", registry)),
      job_reference_cache_seconds_(
          Gauge("lethe_job_reference_cache_build_seconds", registry)),
      job_resident_memory_(Gauge("lethe_job_resident_memory_bytes", registry)) {
  queue_length_.Add({});
  workers_registered_.Add({});
  workers_healthy_.Add({});
  workers_busy_.Add({});
  scheduling_latency_.Add({}, SecondsBuckets());
  for (int state = v1::Job::QUEUED; state <= v1::Job::CANCELLED; ++state) {
    jobs_.Add(
        {{"state", v1::Job::State_Name(static_cast<v1::Job::State>(state))}});
  }
}

void CoordinatorMetrics::SetJobCounts(
    const std::map<v1::Job::State, int64_t>& by_state) {
  for (int state = v1::Job::QUEUED; state <= v1::Job::CANCELLED; ++state) {
    const auto found = by_state.find(static_cast<v1::Job::State>(state));
    const double count = found == by_state.end() ? 0 : found->second;
    jobs_
        .Add({{"state",
               v1::Job::State_Name(static_cast<v1::Job::State>(state))}})
        .Set(count);
    if (state == v1::Job::QUEUED) queue_length_.Add({}).Set(count);
  }
}

void CoordinatorMetrics::SetJobsWaitingForWorkers(int jobs) {
  jobs_waiting_for_workers_.Add({}).Set(jobs);
}

void CoordinatorMetrics::SetWorkers(int registered, int healthy, int busy) {
  workers_registered_.Add({}).Set(registered);
  workers_healthy_.Add({}).Set(healthy);
  workers_busy_.Add({}).Set(busy);
}

void CoordinatorMetrics::JobTransition(v1::Job::State from, v1::Job::State to,
                                       const std::string& reason,
                                       absl::Duration queued_for) {
  if (from == v1::Job::RUNNING && to == v1::Job::QUEUED) {
    restarts_.Add({{"reason", reason}}).Increment();
  }
  if (to == v1::Job::RUNNING && from == v1::Job::QUEUED) {
    scheduling_latency_.Add({}, SecondsBuckets())
        .Observe(absl::ToDoubleSeconds(queued_for));
  }
  if (to == v1::Job::FAILED) failures_.Add({{"reason", reason}}).Increment();
  if (to == v1::Job::SUCCEEDED || to == v1::Job::FAILED ||
      to == v1::Job::CANCELLED) {
    finished_.Add({{"state", v1::Job::State_Name(to)}}).Increment();
  }
}

void CoordinatorMetrics::StoreError(const std::string& operation) {
  store_errors_.Add({{"operation", operation}}).Increment();
}

void CoordinatorMetrics::ApiCall(const std::string& method,
                                 const std::string& code, double seconds) {
  api_requests_.Add({{"method", method}, {"code", code}}).Increment();
  if (seconds >= 0) {
    api_latency_.Add({{"method", method}}, SecondsBuckets()).Observe(seconds);
  }
}

CoordinatorMetrics::JobSeries& CoordinatorMetrics::SeriesLocked(
    const std::string& job) {
  auto found = series_.find(job);
  if (found != series_.end()) return found->second;
  const prometheus::Labels labels = {{"job", job}};
  JobSeries series{
      .step = &job_step_.Add(labels),
      .total_steps = &job_total_steps_.Add(labels),
      .epoch = &job_epoch_.Add(labels),
      .learning_rate = &job_learning_rate_.Add(labels),
      .grad_norm = &job_grad_norm_.Add(labels),
      .tokens = &job_tokens_.Add(labels),
      .tokens_per_second = &job_tokens_per_second_.Add(labels),
      .step_duration = &job_step_duration_.Add(labels, SecondsBuckets()),
      .allreduce_duration =
          &job_allreduce_duration_.Add(labels, SecondsBuckets()),
      .checkpoint_duration =
          &job_checkpoint_duration_.Add(labels, SecondsBuckets()),
      .last_step_time = &job_last_step_time_.Add(labels),
      .resident_memory = &job_resident_memory_.Add(labels)};
  return series_.emplace(job, series).first->second;
}

void CoordinatorMetrics::JobProgress(const std::string& job,
                                     const v1::ReportProgressRequest& report,
                                     absl::Time now) {
  absl::MutexLock lock(&mu_);
  JobSeries& series = SeriesLocked(job);
  const prometheus::Labels labels = {{"job", job}};
  if (report.has_progress()) {
    const v1::Job::Progress& progress = report.progress();
    series.step->Set(progress.step());
    series.total_steps->Set(progress.total_steps());
    series.epoch->Set(progress.epoch());
    series.tokens_per_second->Set(progress.tokens_per_second());
    series.last_step_time->Set(absl::ToUnixMicros(now) / 1e6);
    for (const auto& [name, value] : progress.loss_components()) {
      if (name == "learning_rate") {
        series.learning_rate->Set(value);
      } else if (name == "grad_norm") {
        series.grad_norm->Set(value);
      } else {
        prometheus::Gauge*& gauge = series.losses[name];
        if (gauge == nullptr) {
          gauge = &job_loss_.Add({{"job", job}, {"term", name}});
        }
        gauge->Set(value);
      }
    }
  }
  if (report.tokens() > 0) series.tokens->Increment(report.tokens());
  if (report.step_seconds() > 0) {
    series.step_duration->Observe(report.step_seconds());
    series.allreduce_duration->Observe(report.allreduce_seconds());
  }
  if (report.checkpoint_seconds() > 0) {
    series.checkpoint_duration->Observe(report.checkpoint_seconds());
  }
  if (report.resident_memory_bytes() > 0) {
    series.resident_memory->Set(report.resident_memory_bytes());
  }
  if (report.reference_cache_seconds() > 0) {
    if (series.reference_cache_seconds == nullptr) {
      series.reference_cache_seconds =
          &job_reference_cache_seconds_.Add(labels);
    }
    series.reference_cache_seconds->Set(report.reference_cache_seconds());
  }
  const auto& evaluation = report.evaluation_summary();
  if (const auto it = evaluation.find("forget_quality");
      it != evaluation.end()) {
    if (series.forget_quality == nullptr) {
      series.forget_quality = &job_forget_quality_.Add(labels);
    }
    series.forget_quality->Set(it->second);
  }
  if (const auto it = evaluation.find("model_utility");
      it != evaluation.end()) {
    if (series.model_utility == nullptr) {
      series.model_utility = &job_model_utility_.Add(labels);
    }
    series.model_utility->Set(it->second);
  }
}

void CoordinatorMetrics::JobEnded(const std::string& job) {
  absl::MutexLock lock(&mu_);
  auto found = series_.find(job);
  if (found == series_.end()) return;
  JobSeries& series = found->second;
  RemoveSeries(job_step_, series.step);
  RemoveSeries(job_total_steps_, series.total_steps);
  RemoveSeries(job_epoch_, series.epoch);
  RemoveSeries(job_learning_rate_, series.learning_rate);
  RemoveSeries(job_grad_norm_, series.grad_norm);
  RemoveSeries(job_tokens_, series.tokens);
  RemoveSeries(job_tokens_per_second_, series.tokens_per_second);
  RemoveSeries(job_step_duration_, series.step_duration);
  RemoveSeries(job_allreduce_duration_, series.allreduce_duration);
  RemoveSeries(job_checkpoint_duration_, series.checkpoint_duration);
  RemoveSeries(job_last_step_time_, series.last_step_time);
  RemoveSeries(job_resident_memory_, series.resident_memory);
  RemoveSeries(job_forget_quality_, series.forget_quality);
  RemoveSeries(job_model_utility_, series.model_utility);
  RemoveSeries(job_reference_cache_seconds_, series.reference_cache_seconds);
  for (const auto& [name, gauge] : series.losses) {
    RemoveSeries(job_loss_, gauge);
  }
  series_.erase(found);
}

}  // namespace lethe
