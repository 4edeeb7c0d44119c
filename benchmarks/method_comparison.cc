// A fair comparison of Lethe's 13 unlearning methods on the embedded
// benchmark, each with the same small tuning budget: for every method, a
// grid of learning rate (--learning_rates) x the method's main coefficient
// (its default times --coefficient_scales; GA has none, MSA's alpha takes
// the MSA paper's values --msa_alphas), every point trained from a fresh
// copy of the target with the same settings (--epochs, --batch_size 8, one
// warm-up epoch, weight decay 0.01, gradient clipping 1, seed 1, --threads)
// and evaluated once at the end with the full TOFU evaluation. Per method, the
// selected point is the one of highest forget quality among those whose model
// utility is at least --utility_floor x the target's (ties: higher model
// utility); when none reaches the floor, the one of highest model utility,
// marked "below the floor". The main coefficients (kMethodSetups below) and
// every other setting are printed at the start.
//
//   lethe prepare-benchmark
//   bazel build --config=ci //benchmarks:method_comparison
//   ./bazel-bin/benchmarks/method_comparison
//     --benchmark=$PWD/.lethe/benchmark --output=$PWD/docs/method_comparison
//
// Writes <output>.grid.csv (every evaluated point, the target's row
// "target" first; rewritten atomically after each point), <output>.md (the
// selected points, then the whole grid), <output>.csv (the target's row and
// the selected points) and <output>.png (model utility against forget
// quality, every point per method, the selected ones bigger; drawn by
// gnuplot when it is installed). The run is resumable: killed and started
// again with the same flags, it skips the points already in
// <output>.grid.csv (same method, learning rate and coefficient value).
// That file does not record --epochs, --batch_size, --max_new_tokens or the
// splits: delete it (or change --output) after changing them. The report
// covers the points of this invocation's grid; other rows of the file are
// kept but not reported.
//
// REGLU and PGA train LoRA adapters on every projection (REGLU paper: rank
// 32, alpha 64; PGA paper: rank 16, alpha 32) and are evaluated with them
// active (REGLU's unfolded adapters give its unlearned model; PGA without
// its inference-time projection). MSA fine-tunes <benchmark>/base on the
// forget set and on a retain subsample with the same training options, then
// adds -alpha x the forget vector + beta (1) x the retain vector.
//
// Time with 2 CPU threads on an otherwise idle machine, mini model,
// forget10 (100 examples, 13 steps an epoch, 4 epochs): a point takes 10 to
// 30 s (loading, unlearning in 2 to 6 s, the evaluation with
// --max_new_tokens 64 in 5 to 30 s, longest for collapsed models that never
// stop generating), except OFMU, about 3 minutes (double backward). The
// default grid (111 points, 9 of them OFMU's, plus the target) takes about
// an hour to an hour and a half; other processes on the cores can make it
// several times longer.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "libs/data/qa_example.h"
#include "libs/data/tofu_dataset.h"
#include "libs/eval/tofu_eval_data.h"
#include "libs/eval/tofu_evaluator.h"
#include "libs/eval/tofu_summary.h"
#include "libs/files/file_io.h"
#include "libs/model/hf_checkpoint.h"
#include "libs/model/llama_model.h"
#include "libs/model/lora.h"
#include "libs/status/status_macros.h"
#include "libs/tokenizer/tokenizer.h"
#include "libs/unlearn/msa.h"
#include "libs/unlearn/objective_params.h"
#include "libs/unlearn/trainer.h"
#include "libs/unlearn/unlearning_run.h"

ABSL_FLAG(std::string, benchmark, ".lethe/benchmark",
          "a directory prepared by `lethe prepare-benchmark`");
ABSL_FLAG(std::string, methods,
          "GA,GradDiff,NPO,NPO_RT,NPO_KL,SimNPO,IdkDPO,LLMU,OFMU,IHL,REGLU,MSA,"
          "PGA",
          "comma-separated unlearning methods");
ABSL_FLAG(std::string, forget_split, "forget10", "split to forget");
ABSL_FLAG(std::string, retain_split, "retain90", "retain split");
ABSL_FLAG(std::string, holdout_split, "holdout10",
          "PGA's clean examples, paired with the forget split by index");
ABSL_FLAG(int, epochs, 4, "unlearning epochs of every grid point");
ABSL_FLAG(std::string, learning_rates, "3e-4,1e-3,3e-3",
          "comma-separated peak learning rates (every method)");
ABSL_FLAG(std::string, coefficient_scales, "0.5,1,2",
          "comma-separated factors of each method's main coefficient's "
          "default");
ABSL_FLAG(std::string, msa_alphas, "1,1.5,2",
          "comma-separated values of MSA's alpha (the MSA paper's sweep)");
ABSL_FLAG(double, utility_floor, 0.95,
          "selection keeps points whose model utility is at least this "
          "fraction of the target's");
ABSL_FLAG(int, batch_size, 8, "examples per step");
ABSL_FLAG(int, max_new_tokens, 64, "generation limit of the evaluation");
ABSL_FLAG(int, threads, 2, "CPU threads for LibTorch");
ABSL_FLAG(std::string, output, "docs/method_comparison",
          "output path prefix (.grid.csv, .md, .csv, .png are appended)");

namespace lethe {
namespace {

constexpr char kTargetName[] = "target";
constexpr char kGridHeader[] =
    "method,learning_rate,coefficient,value,forget_quality,model_utility,"
    "forget_prob,forget_rouge,seconds";
// Forget quality's usual threshold (a KS p-value), drawn on the plot.
constexpr double kForgetQualityThreshold = 0.05;
// The plot's lowest forget quality; smaller values are drawn there.
constexpr double kPlotFloor = 1e-12;
// One colour per method on the plot (cycled past 13 methods).
constexpr const char* kPlotColours[] = {
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf", "#000080", "#808000", "#ff1493"};

// How one method is tuned: the coefficient varied with the learning rate
// (none for GA) and the LoRA adapters it trains (rank 0: all weights).
struct MethodSetup {
  UnlearningMethod method;
  const char* coefficient;
  double ObjectiveParams::*field;
  int64_t lora_rank;
  double lora_alpha;
};

// The one place that names each method's main coefficient.
const MethodSetup kMethodSetups[] = {
    {UnlearningMethod::kGa, nullptr, nullptr, 0, 0},
    {UnlearningMethod::kGradDiff, "alpha", &ObjectiveParams::alpha, 0, 0},
    {UnlearningMethod::kNpo, "beta", &ObjectiveParams::beta, 0, 0},
    {UnlearningMethod::kNpoRt, "beta", &ObjectiveParams::beta, 0, 0},
    {UnlearningMethod::kNpoKl, "beta", &ObjectiveParams::beta, 0, 0},
    {UnlearningMethod::kSimNpo, "beta", &ObjectiveParams::beta, 0, 0},
    {UnlearningMethod::kIdkDpo, "beta", &ObjectiveParams::beta, 0, 0},
    {UnlearningMethod::kLlmu, "gamma", &ObjectiveParams::gamma, 0, 0},
    {UnlearningMethod::kOfmu, "ofmu_rho", &ObjectiveParams::ofmu_rho, 0, 0},
    {UnlearningMethod::kIhl, "alpha", &ObjectiveParams::alpha, 0, 0},
    // The REGLU paper's LoRA: every projection, rank 32, alpha 64.
    {UnlearningMethod::kReglu, "reglu_rol_weight",
     &ObjectiveParams::reglu_rol_weight, 32, 64},
    {UnlearningMethod::kMsa, "alpha", &ObjectiveParams::alpha, 0, 0},
    // The PGA paper's LoRA: every projection, rank 16, alpha 32.
    {UnlearningMethod::kPga, "pga_align_weight",
     &ObjectiveParams::pga_align_weight, 16, 32},
};

absl::StatusOr<const MethodSetup*> SetupOf(const std::string& name) {
  ASSIGN_OR_RETURN(const UnlearningMethod method, ParseUnlearningMethod(name));
  for (const MethodSetup& setup : kMethodSetups) {
    if (setup.method == method) return &setup;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("no tuning setup for method ", name));
}

// One grid point: the method's name ("target" for the target's row), the
// learning rate and the coefficient's value (NaN where there is none).
struct GridPoint {
  std::string method;
  double learning_rate = NAN;
  std::string coefficient;
  double value = NAN;
};

struct Metrics {
  double forget_quality = NAN;
  double model_utility = NAN;
  double forget_prob = NAN;
  double forget_rouge = NAN;
};

struct GridRow {
  GridPoint point;
  Metrics metrics;
  double seconds = 0;  // Loading, unlearning and evaluating.
};

// `result`, its error (if any) prefixed with `context`.
template <typename T>
absl::StatusOr<T> InContext(absl::StatusOr<T> result,
                            absl::string_view context) {
  if (result.ok()) return result;
  return absl::Status(result.status().code(),
                      absl::StrCat(context, ": ", result.status().message()));
}

// A number as the grid file and the tables write it; NaN as "".
std::string Num(double value) {
  return std::isnan(value) ? "" : absl::StrFormat("%.6g", value);
}

std::string PointKey(const GridPoint& point) {
  return absl::StrCat(point.method, ",", Num(point.learning_rate), ",",
                      point.coefficient, ",", Num(point.value));
}

std::string LearningRateText(const GridPoint& point) {
  return std::isnan(point.learning_rate) ? "-" : Num(point.learning_rate);
}

std::string CoefficientText(const GridPoint& point) {
  if (point.coefficient.empty()) return "-";
  return absl::StrCat(point.coefficient, "=", Num(point.value));
}

std::string CsvLine(const GridRow& row) {
  const Metrics& m = row.metrics;
  return absl::StrJoin(
      {row.point.method, Num(row.point.learning_rate), row.point.coefficient,
       Num(row.point.value), Num(m.forget_quality), Num(m.model_utility),
       Num(m.forget_prob), Num(m.forget_rouge), Num(row.seconds)},
      ",");
}

absl::StatusOr<double> ParseNum(absl::string_view text) {
  if (text.empty()) return NAN;
  double value = 0;
  if (!absl::SimpleAtod(text, &value)) {
    return absl::InvalidArgumentError(absl::StrCat("not a number: ", text));
  }
  return value;
}

absl::StatusOr<std::vector<double>> ParseNumList(absl::string_view flag,
                                                 absl::string_view text) {
  std::vector<double> values;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    ASSIGN_OR_RETURN(const double value,
                     InContext(ParseNum(part), absl::StrCat("--", flag)));
    values.push_back(value);
  }
  if (values.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, " is empty"));
  }
  return values;
}

// The evaluated points, kept in <path> (kGridHeader's columns), which is
// rewritten whole and atomically after each new point.
class GridFile {
 public:
  static absl::StatusOr<GridFile> Open(const std::string& path) {
    GridFile grid(path);
    if (!std::filesystem::exists(path)) return grid;
    ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
    std::vector<std::string> lines =
        absl::StrSplit(text, '\n', absl::SkipWhitespace());
    if (lines.empty() || lines[0] != kGridHeader) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": not a grid file (its header is not ", kGridHeader, ")"));
    }
    for (size_t i = 1; i < lines.size(); ++i) {
      ASSIGN_OR_RETURN(
          GridRow row,
          InContext(ParseLine(lines[i]), absl::StrCat(path, " line ", i + 1)));
      grid.rows_.push_back(std::move(row));
    }
    return grid;
  }

  const GridRow* Find(const GridPoint& point) const {
    const std::string key = PointKey(point);
    for (const GridRow& row : rows_) {
      if (PointKey(row.point) == key) return &row;
    }
    return nullptr;
  }

  absl::Status Append(const GridRow& row) {
    rows_.push_back(row);
    std::string text = absl::StrCat(kGridHeader, "\n");
    for (const GridRow& r : rows_) absl::StrAppend(&text, CsvLine(r), "\n");
    return WriteFileAtomically(path_, text);
  }

  size_t size() const { return rows_.size(); }

 private:
  explicit GridFile(std::string path) : path_(std::move(path)) {}

  static absl::StatusOr<GridRow> ParseLine(absl::string_view line) {
    const std::vector<absl::string_view> cells = absl::StrSplit(line, ',');
    if (cells.size() != 9) {
      return absl::InvalidArgumentError(
          absl::StrCat("expected 9 columns, got ", cells.size()));
    }
    std::vector<double> numbers;
    for (size_t i : {1, 3, 4, 5, 6, 7, 8}) {
      ASSIGN_OR_RETURN(const double number, ParseNum(cells[i]));
      numbers.push_back(number);
    }
    return GridRow{.point = {.method = std::string(cells[0]),
                             .learning_rate = numbers[0],
                             .coefficient = std::string(cells[2]),
                             .value = numbers[1]},
                   .metrics = {.forget_quality = numbers[2],
                               .model_utility = numbers[3],
                               .forget_prob = numbers[4],
                               .forget_rouge = numbers[5]},
                   .seconds = numbers[6]};
  }

  std::string path_;
  std::vector<GridRow> rows_;
};

// What every grid point shares.
struct Context {
  std::string benchmark;
  const Tokenizer* tokenizer = nullptr;
  PromptTemplate prompt_template;
  TofuEvalData eval_data;
  nlohmann::ordered_json retain_log;
  TofuEvalOptions eval_options;
  TrainingOptions training;
  // The retain rank REGLU gets (see RegluRetainRank).
  int64_t reglu_retain_rank = 0;
  // theta_0 of MSA, loaded on first use; never changed.
  std::shared_ptr<LlamaForCausalLM> msa_base;
};

// The tokenized sets, each method taking what it needs (DataFor).
struct Datasets {
  std::vector<QaExample> forget;
  std::vector<QaExample> retain;
  std::vector<QaExample> holdout;
  std::vector<QaExample> refusals;        // IdkDPO's preferred answers.
  std::vector<QaExample> random_answers;  // LLMU's.
  int pad_id = 0;
};

UnlearningData DataFor(UnlearningMethod method, const Datasets& sets) {
  UnlearningData data{
      .forget = sets.forget, .retain = sets.retain, .pad_id = sets.pad_id};
  if (method == UnlearningMethod::kIdkDpo) data.alternate = sets.refusals;
  if (method == UnlearningMethod::kLlmu) data.alternate = sets.random_answers;
  if (method == UnlearningMethod::kPga) data.holdout = sets.holdout;
  return data;
}

double SummaryValue(const nlohmann::json& summary, const char* key) {
  if (!summary.contains(key) || !summary[key].is_number()) return NAN;
  return summary[key].get<double>();
}

// The full TOFU evaluation, once.
absl::StatusOr<Metrics> Evaluate(LlamaForCausalLM& model,
                                 const Context& context) {
  model.eval();
  TofuEvaluator evaluator(model, *context.tokenizer, context.prompt_template,
                          context.eval_options);
  ASSIGN_OR_RETURN(TofuEvalResult result,
                   evaluator.Evaluate(context.eval_data, &context.retain_log));
  const nlohmann::json& summary = result.summary;
  return Metrics{.forget_quality = SummaryValue(summary, "forget_quality"),
                 .model_utility = SummaryValue(summary, "model_utility"),
                 .forget_prob = SummaryValue(summary, "forget_Q_A_Prob"),
                 .forget_rouge = SummaryValue(summary, "forget_Q_A_ROUGE")};
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

std::string RowText(const GridRow& row) {
  const Metrics& m = row.metrics;
  return absl::StrFormat(
      "%-8s lr %-6s %-22s forget quality %.3g, model utility %.3f, forget "
      "prob %.3f, forget ROUGE-L %.3f (%.0fs)",
      row.point.method, LearningRateText(row.point), CoefficientText(row.point),
      m.forget_quality, m.model_utility, m.forget_prob, m.forget_rouge,
      row.seconds);
}

// The coefficient values of a method's grid: default x scales (MSA: the
// given alphas; GA: none).
std::vector<double> CoefficientValues(const MethodSetup& setup,
                                      const std::vector<double>& scales,
                                      const std::vector<double>& msa_alphas) {
  if (setup.field == nullptr) return {NAN};
  if (setup.method == UnlearningMethod::kMsa) return msa_alphas;
  const double base = DefaultObjectiveParams(setup.method).*setup.field;
  std::vector<double> values;
  for (const double scale : scales) values.push_back(base * scale);
  return values;
}

ObjectiveParams ParamsFor(const MethodSetup& setup, double value,
                          const Context& context) {
  ObjectiveParams params = DefaultObjectiveParams(setup.method);
  if (setup.field != nullptr) params.*setup.field = value;
  if (setup.method == UnlearningMethod::kReglu) {
    params.reglu_retain_rank = context.reglu_retain_rank;
  }
  return params;
}

// Unlearns a fresh target at `point` and evaluates it.
absl::StatusOr<GridRow> RunPoint(const MethodSetup& setup,
                                 const GridPoint& point,
                                 const UnlearningData& data, Context& context) {
  const auto start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(std::shared_ptr<LlamaForCausalLM> model,
                   LoadLlamaCheckpoint(context.benchmark + "/target"));
  if (setup.lora_rank > 0) {
    RETURN_IF_ERROR(
        AttachLora(*model, {.rank = setup.lora_rank,
                            .alpha = setup.lora_alpha,
                            .target_modules = LoraTargetableModules()}));
    FreezeAllButLora(*model);
  }
  TrainingOptions training = context.training;
  training.learning_rate = point.learning_rate;
  TrainingSummary summary;
  if (setup.method == UnlearningMethod::kMsa) {
    if (context.msa_base == nullptr) {
      ASSIGN_OR_RETURN(context.msa_base,
                       LoadLlamaCheckpoint(context.benchmark + "/base"));
    }
    ASSIGN_OR_RETURN(
        summary,
        RunModelStateArithmetic(
            *model, data,
            {.base = context.msa_base,
             .alpha = point.value,
             .beta = DefaultObjectiveParams(UnlearningMethod::kMsa).beta,
             .training = training}));
  } else {
    ASSIGN_OR_RETURN(
        summary,
        RunUnlearning(*model, data,
                      {.method = setup.method,
                       .params = ParamsFor(setup, point.value, context),
                       .training = training,
                       // As jobs do (the spec's default rows of 128).
                       .pack_row_length = 128}));
  }
  const double unlearning_seconds = SecondsSince(start);
  // Evaluated with the adapters on: REGLU's unfolded ones give its
  // unlearned model, PGA's are what it trained.
  if (HasLora(*model)) SetLoraEnabled(*model, true);
  ASSIGN_OR_RETURN(const Metrics metrics, Evaluate(*model, context));
  const GridRow row{
      .point = point, .metrics = metrics, .seconds = SecondsSince(start)};
  std::cout << RowText(row)
            << absl::StrFormat(" [%d steps, loading and unlearning %.0fs]",
                               summary.steps.size(), unlearning_seconds)
            << std::endl;
  return row;
}

// REGLU's reglu_retain_rank: its default unless ValidateObjectiveParams
// refuses it, then min(default, the narrowest projection's output width).
// *note says what RILA does with it on this model's projections.
int64_t RegluRetainRank(LlamaForCausalLM& model, std::string* note) {
  ObjectiveParams params = DefaultObjectiveParams(UnlearningMethod::kReglu);
  const int64_t rank = params.reglu_retain_rank;
  std::map<std::string, int64_t> widths;  // d_out per projection name.
  int64_t narrowest = rank;
  for (const NamedProjection& projection : model.Projections()) {
    const int64_t width = projection.projection->linear->weight.size(0);
    widths[projection.name] = width;
    narrowest = std::min(narrowest, width);
  }
  const absl::Status valid =
      ValidateObjectiveParams(UnlearningMethod::kReglu, params);
  if (!valid.ok()) {
    *note = absl::StrCat("retain rank k ", rank, " refused (", valid.message(),
                         "): k = ", narrowest);
    return narrowest;
  }
  std::vector<std::string> narrower;
  for (const auto& [name, width] : widths) {
    if (width < rank) narrower.push_back(absl::StrCat(name, " ", width));
  }
  *note = absl::StrCat("retain rank k ", rank, " accepted");
  if (!narrower.empty()) {
    absl::StrAppend(&*note, "; RILA cuts k to d_out on ",
                    absl::StrJoin(narrower, ", "));
  }
  return rank;
}

void PrintSetup(const std::vector<const MethodSetup*>& setups,
                const std::vector<double>& learning_rates,
                const std::vector<double>& scales,
                const std::vector<double>& msa_alphas,
                const std::string& reglu_note, const Context& context) {
  const TrainingOptions& t = context.training;
  std::cout << absl::StrFormat(
                   "Budget per point: %d epochs, batch %d, warm-up %.0f "
                   "epoch, weight decay %g, max grad norm %g, seed %d; "
                   "learning rates %s; evaluation max_new_tokens %d",
                   t.num_epochs, t.per_device_batch_size, t.warmup_epochs,
                   t.weight_decay, t.max_grad_norm, t.seed,
                   absl::StrJoin(
                       learning_rates, ",",
                       [](std::string* out, double v) { out->append(Num(v)); }),
                   context.eval_options.max_new_tokens)
            << std::endl;
  std::cout << absl::StrFormat("%-9s %-17s %-8s %-16s %-14s %s", "method",
                               "coefficient", "default", "grid values", "LoRA",
                               "note")
            << std::endl;
  for (const MethodSetup* setup : setups) {
    std::string values;
    for (const double v : CoefficientValues(*setup, scales, msa_alphas)) {
      absl::StrAppend(&values, values.empty() ? "" : ",", Num(v));
    }
    const std::string name = UnlearningMethodName(setup->method);
    std::string note;
    if (setup->method == UnlearningMethod::kReglu) note = reglu_note;
    if (setup->method == UnlearningMethod::kMsa) {
      note = absl::StrCat(
          "beta ", Num(DefaultObjectiveParams(UnlearningMethod::kMsa).beta),
          "; theta_0 = <benchmark>/base, both fine-tunes with the budget");
    }
    if (setup->method == UnlearningMethod::kPga) {
      note = "clean examples: --holdout_split; no inference-time projection";
    }
    std::cout << absl::StrFormat(
                     "%-9s %-17s %-8s %-16s %-14s %s", name,
                     setup->coefficient == nullptr ? "-" : setup->coefficient,
                     setup->field == nullptr
                         ? "-"
                         : Num(DefaultObjectiveParams(setup->method).*
                               setup->field),
                     setup->field == nullptr ? "-" : values,
                     setup->lora_rank == 0
                         ? "-"
                         : absl::StrFormat("all r%d a%g", setup->lora_rank,
                                           setup->lora_alpha),
                     note)
              << std::endl;
  }
}

// Per method, the selected row (see the top of this file) and its note.
struct Selection {
  const GridRow* row = nullptr;
  std::string note;
};

Selection Select(const std::vector<const GridRow*>& rows, double floor) {
  Selection best;
  const GridRow* most_useful = nullptr;
  for (const GridRow* row : rows) {
    const Metrics& m = row->metrics;
    if (std::isnan(m.model_utility)) continue;
    if (most_useful == nullptr ||
        m.model_utility > most_useful->metrics.model_utility) {
      most_useful = row;
    }
    if (m.model_utility < floor || std::isnan(m.forget_quality)) continue;
    if (best.row == nullptr) {
      best.row = row;
      continue;
    }
    const Metrics& b = best.row->metrics;
    if (m.forget_quality > b.forget_quality ||
        (m.forget_quality == b.forget_quality &&
         m.model_utility > b.model_utility)) {
      best.row = row;
    }
  }
  if (best.row == nullptr && most_useful != nullptr) {
    best = {.row = most_useful, .note = "below the floor"};
  }
  return best;
}

std::string MarkdownLine(const std::vector<std::string>& cells) {
  return absl::StrCat("| ", absl::StrJoin(cells, " | "), " |\n");
}

// The cells every table shares: method, learning rate, coefficient=value,
// forget quality, model utility, forget prob, forget ROUGE-L.
std::vector<std::string> MetricCells(const GridRow& row) {
  const Metrics& m = row.metrics;
  return {row.point.method,
          LearningRateText(row.point),
          CoefficientText(row.point),
          absl::StrFormat("%.3g", m.forget_quality),
          absl::StrFormat("%.3f", m.model_utility),
          absl::StrFormat("%.3f", m.forget_prob),
          absl::StrFormat("%.3f", m.forget_rouge)};
}

// The shared columns' header, then `extra` columns (name, alignment rule).
std::string MarkdownHeader(
    const std::vector<std::pair<std::string, std::string>>& extra) {
  std::vector<std::string> names = {
      "method",        "learning rate", "coefficient",   "forget quality",
      "model utility", "forget prob",   "forget ROUGE-L"};
  std::vector<std::string> rule = {
      "---", "---:", "---", "---:", "---:", "---:", "---:"};
  for (const auto& [name, alignment] : extra) {
    names.push_back(name);
    rule.push_back(alignment);
  }
  return MarkdownLine(names) + MarkdownLine(rule);
}

struct MethodResult {
  std::string method;
  std::vector<const GridRow*> rows;  // This invocation's grid points.
  Selection selection;
};

absl::Status WriteTables(const GridRow& target,
                         const std::vector<MethodResult>& results, double floor,
                         const std::string& settings,
                         const std::string& output) {
  const std::string floor_text = absl::StrFormat(
      "model utility >= %.3f (%g x the target's %.3f)", floor,
      absl::GetFlag(FLAGS_utility_floor), target.metrics.model_utility);
  std::string markdown = absl::StrFormat(
      "Unlearning methods on the embedded benchmark, each tuned over the "
      "same grid (%s). Selected per method: the highest forget quality with "
      "%s; ties: higher model utility.\n\n",
      settings, floor_text);
  absl::StrAppend(&markdown, MarkdownHeader({{"note", "---"}}));
  std::string csv = absl::StrCat(kGridHeader, ",note\n", CsvLine(target),
                                 ",before unlearning\n");
  auto add_selected = [&](const GridRow& row, const std::string& note) {
    std::vector<std::string> cells = MetricCells(row);
    cells.push_back(note);
    absl::StrAppend(&markdown, MarkdownLine(cells));
  };
  add_selected(target, "before unlearning");
  for (const MethodResult& result : results) {
    if (result.selection.row == nullptr) continue;
    add_selected(*result.selection.row, result.selection.note);
    absl::StrAppend(&csv, CsvLine(*result.selection.row), ",",
                    result.selection.note, "\n");
  }
  absl::StrAppend(&markdown, "\nEvery grid point:\n\n",
                  MarkdownHeader({{"seconds", "---:"}, {"selected", "---"}}));
  for (const MethodResult& result : results) {
    for (const GridRow* row : result.rows) {
      std::vector<std::string> cells = MetricCells(*row);
      cells.push_back(absl::StrFormat("%.0f", row->seconds));
      cells.push_back(row == result.selection.row ? "yes" : "");
      absl::StrAppend(&markdown, MarkdownLine(cells));
    }
  }
  RETURN_IF_ERROR(WriteFileAtomically(output + ".csv", csv));
  return WriteFileAtomically(output + ".md", markdown);
}

// A gnuplot data block of (model utility, forget quality) points.
std::string DataBlock(const std::string& name,
                      const std::vector<const GridRow*>& rows) {
  std::string block = absl::StrCat("$", name, " << EOD\n");
  for (const GridRow* row : rows) {
    const Metrics& m = row->metrics;
    if (!std::isfinite(m.model_utility) || !std::isfinite(m.forget_quality)) {
      continue;
    }
    absl::StrAppendFormat(&block, "%.6g %.6g\n", m.model_utility,
                          std::max(m.forget_quality, kPlotFloor));
  }
  return absl::StrCat(block, "EOD\n");
}

absl::Status WritePlot(const GridRow& target,
                       const std::vector<MethodResult>& results, double floor,
                       const std::string& output) {
  // The floor as data, so that autoscaling keeps it in view.
  std::string data = absl::StrFormat("$floor << EOD\n%.6g %g\n%.6g 2\nEOD\n",
                                     floor, kPlotFloor, floor);
  absl::StrAppend(&data, DataBlock("target", {&target}));
  std::vector<std::string> plots = {
      absl::StrFormat("$floor with lines dt 2 lw 1.5 lc rgb 'gray40' title "
                      "'MU floor (%g x target)'",
                      absl::GetFlag(FLAGS_utility_floor)),
      "$target with points pt 3 ps 2.5 lc rgb 'black' title 'target'"};
  for (size_t m = 0; m < results.size(); ++m) {
    const MethodResult& result = results[m];
    const std::string grid = absl::StrCat("grid", m);
    const std::string selected = absl::StrCat("selected", m);
    absl::StrAppend(&data, DataBlock(grid, result.rows));
    std::vector<const GridRow*> chosen;
    if (result.selection.row != nullptr) {
      chosen.push_back(result.selection.row);
    }
    absl::StrAppend(&data, DataBlock(selected, chosen));
    // One point type and colour per method; pt 3 (the target's) skipped.
    const int style = static_cast<int>(m) + (m >= 2 ? 2 : 1);
    const char* colour = kPlotColours[m % std::size(kPlotColours)];
    plots.push_back(
        absl::StrFormat("$%s with points pt %d ps 1.2 lc rgb '%s' title '%s'",
                        grid, style, colour, result.method));
    plots.push_back(
        absl::StrFormat("$%s with points pt %d ps 3 lw 2 lc rgb '%s' notitle",
                        selected, style, colour));
  }
  const std::string script = absl::StrCat(
      "set terminal pngcairo size 1000,650 noenhanced\n", "set output '",
      output, ".png'\n", data,
      "set title 'Forget quality vs model utility, every grid point (big: "
      "selected)'\n",
      "set xlabel 'model utility'\n",
      "set ylabel 'forget quality (KS p-value; below 1e-12 drawn at 1e-12)'\n",
      "set logscale y\nset yrange [1e-12:2]\nset key outside right\n",
      "set grid\nset offsets graph 0.03, graph 0.03, 0, 0\n",
      absl::StrFormat("set arrow from graph 0, first %g to graph 1, first %g "
                      "nohead dt 3 lw 1.5 lc rgb 'gray40'\n"
                      "set label 'forget quality %g' at graph 0.01, first %g "
                      "textcolor rgb 'gray40'\n",
                      kForgetQualityThreshold, kForgetQualityThreshold,
                      kForgetQualityThreshold, 2 * kForgetQualityThreshold),
      "plot ", absl::StrJoin(plots, ", \\\n     "), "\n");
  const std::string script_path = output + ".gnuplot";
  RETURN_IF_ERROR(WriteFileAtomically(script_path, script));
  if (std::system("command -v gnuplot >/dev/null") != 0) {
    std::cout << "gnuplot is not installed: no plot (script in " << script_path
              << ")" << std::endl;
    return absl::OkStatus();
  }
  if (std::system(absl::StrCat("gnuplot '", script_path, "'").c_str()) != 0) {
    return absl::InternalError("gnuplot failed on " + script_path);
  }
  std::remove(script_path.c_str());
  return absl::OkStatus();
}

absl::StatusOr<Datasets> TokenizeSets(const Tokenizer& tokenizer,
                                      const PromptTemplate& prompt_template,
                                      const std::string& data_dir) {
  auto read = [&](const std::string& split) {
    return ReadTofuSplit(data_dir, split);
  };
  ASSIGN_OR_RETURN(const std::vector<TofuRecord> forget,
                   read(absl::GetFlag(FLAGS_forget_split)));
  ASSIGN_OR_RETURN(const std::vector<TofuRecord> retain,
                   read(absl::GetFlag(FLAGS_retain_split)));
  ASSIGN_OR_RETURN(const std::vector<TofuRecord> holdout,
                   read(absl::GetFlag(FLAGS_holdout_split)));
  auto tokenize = [&](const std::vector<TofuRecord>& records) {
    return TokenizeRecords(tokenizer, prompt_template, records, 256);
  };
  Datasets sets{.pad_id = tokenizer.eos_id()};
  ASSIGN_OR_RETURN(sets.forget, tokenize(forget));
  ASSIGN_OR_RETURN(sets.retain, tokenize(retain));
  ASSIGN_OR_RETURN(sets.holdout, tokenize(holdout));
  ASSIGN_OR_RETURN(sets.refusals, tokenize(RefusalAlternates(forget, 1)));
  ASSIGN_OR_RETURN(sets.random_answers,
                   tokenize(RandomAnswerAlternates(forget, retain, 1)));
  return sets;
}

absl::Status Run() {
  const std::string dir = absl::GetFlag(FLAGS_benchmark);
  const std::string output = absl::GetFlag(FLAGS_output);
  const int threads = absl::GetFlag(FLAGS_threads);
  at::set_num_threads(threads);
  ASSIGN_OR_RETURN(
      const std::vector<double> learning_rates,
      ParseNumList("learning_rates", absl::GetFlag(FLAGS_learning_rates)));
  ASSIGN_OR_RETURN(const std::vector<double> scales,
                   ParseNumList("coefficient_scales",
                                absl::GetFlag(FLAGS_coefficient_scales)));
  ASSIGN_OR_RETURN(const std::vector<double> msa_alphas,
                   ParseNumList("msa_alphas", absl::GetFlag(FLAGS_msa_alphas)));
  std::vector<const MethodSetup*> setups;
  for (absl::string_view name :
       absl::StrSplit(absl::GetFlag(FLAGS_methods), ',', absl::SkipEmpty())) {
    ASSIGN_OR_RETURN(const MethodSetup* setup, SetupOf(std::string(name)));
    setups.push_back(setup);
  }

  ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                   Tokenizer::Load(dir + "/target/tokenizer.model"));
  Context context{.benchmark = dir, .tokenizer = tokenizer.get()};
  ASSIGN_OR_RETURN(context.prompt_template, PromptTemplateByName("plain"));
  const std::string data_dir = dir + "/data";
  ASSIGN_OR_RETURN(
      context.eval_data,
      ReadTofuEvalData(data_dir, absl::GetFlag(FLAGS_forget_split)));
  ASSIGN_OR_RETURN(context.retain_log,
                   ReadTofuEvalLog(dir + "/retain/TOFU_EVAL.json"));
  context.eval_options.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  context.training = {.learning_rate = learning_rates[0],
                      .weight_decay = 0.01,
                      .warmup_epochs = 1.0,
                      .max_grad_norm = 1.0,
                      .num_epochs = absl::GetFlag(FLAGS_epochs),
                      .per_device_batch_size = absl::GetFlag(FLAGS_batch_size),
                      .seed = 1,
                      .threads = threads};
  ASSIGN_OR_RETURN(const Datasets sets,
                   TokenizeSets(*tokenizer, context.prompt_template, data_dir));

  ASSIGN_OR_RETURN(std::shared_ptr<LlamaForCausalLM> target_model,
                   LoadLlamaCheckpoint(dir + "/target"));
  std::string reglu_note;
  context.reglu_retain_rank = RegluRetainRank(*target_model, &reglu_note);
  PrintSetup(setups, learning_rates, scales, msa_alphas, reglu_note, context);

  const std::filesystem::path parent =
      std::filesystem::path(output).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  ASSIGN_OR_RETURN(GridFile grid, GridFile::Open(output + ".grid.csv"));
  if (grid.size() > 0) {
    std::cout << "Resuming: " << grid.size() << " points in " << output
              << ".grid.csv" << std::endl;
  }

  const GridPoint target_point{.method = kTargetName};
  if (grid.Find(target_point) == nullptr) {
    const auto start = std::chrono::steady_clock::now();
    ASSIGN_OR_RETURN(const Metrics metrics, Evaluate(*target_model, context));
    const GridRow row{.point = target_point,
                      .metrics = metrics,
                      .seconds = SecondsSince(start)};
    std::cout << RowText(row) << std::endl;
    RETURN_IF_ERROR(grid.Append(row));
  }
  target_model.reset();

  // GridFile::Append may move rows: keys here, pointers after the loop.
  std::vector<std::pair<std::string, std::vector<GridPoint>>> method_points;
  for (const MethodSetup* setup : setups) {
    const std::string name = UnlearningMethodName(setup->method);
    const UnlearningData data = DataFor(setup->method, sets);
    std::vector<GridPoint> points;
    for (const double learning_rate : learning_rates) {
      for (const double value : CoefficientValues(*setup, scales, msa_alphas)) {
        const GridPoint point{.method = name,
                              .learning_rate = learning_rate,
                              .coefficient = setup->coefficient == nullptr
                                                 ? ""
                                                 : setup->coefficient,
                              .value = value};
        points.push_back(point);
        if (const GridRow* done = grid.Find(point)) {
          std::cout << RowText(*done) << " [from the grid file]" << std::endl;
          continue;
        }
        ASSIGN_OR_RETURN(
            const GridRow row,
            InContext(RunPoint(*setup, point, data, context), PointKey(point)));
        RETURN_IF_ERROR(grid.Append(row));
      }
    }
    method_points.emplace_back(name, std::move(points));
  }

  const GridRow& target = *grid.Find(target_point);
  const double floor =
      absl::GetFlag(FLAGS_utility_floor) * target.metrics.model_utility;
  std::vector<MethodResult> results;
  std::cout << "Selected (" << absl::StrFormat("model utility >= %.3f", floor)
            << "):" << std::endl;
  for (const auto& [name, points] : method_points) {
    MethodResult result{.method = name};
    for (const GridPoint& point : points) {
      result.rows.push_back(grid.Find(point));
    }
    result.selection = Select(result.rows, floor);
    if (result.selection.row != nullptr) {
      std::cout << RowText(*result.selection.row) << " "
                << result.selection.note << std::endl;
    }
    results.push_back(std::move(result));
  }
  const std::string settings = absl::StrFormat(
      "epochs %d, batch %d, learning rates %s, coefficient x %s, MSA alpha "
      "%s, max_new_tokens %d",
      context.training.num_epochs, context.training.per_device_batch_size,
      absl::GetFlag(FLAGS_learning_rates),
      absl::GetFlag(FLAGS_coefficient_scales), absl::GetFlag(FLAGS_msa_alphas),
      context.eval_options.max_new_tokens);
  RETURN_IF_ERROR(WriteTables(target, results, floor, settings, output));
  return WritePlot(target, results, floor, output);
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = lethe::Run();
  if (!status.ok()) {
    std::cerr << "method_comparison: " << status << std::endl;
    return 1;
  }
  return 0;
}
