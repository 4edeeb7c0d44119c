// The NPO paper's headline on the embedded benchmark: runs several unlearning
// methods from the same target model with the same budget, evaluates TOFU's
// forget quality and model utility after every epoch, and writes a table
// (<output>.md, <output>.csv) and a plot of forget quality against model
// utility (<output>.png, drawn by gnuplot when it is installed).
//
//   lethe prepare-benchmark
//   bazel run //benchmarks:method_comparison --
//     --benchmark=$PWD/.lethe/benchmark --output=$PWD/docs/method_comparison
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "libs/data/qa_example.h"
#include "libs/data/tofu_dataset.h"
#include "libs/eval/tofu_evaluator.h"
#include "libs/eval/tofu_summary.h"
#include "libs/files/file_io.h"
#include "libs/model/hf_checkpoint.h"
#include "libs/status/status_macros.h"
#include "libs/tokenizer/tokenizer.h"
#include "libs/unlearn/unlearning_run.h"

ABSL_FLAG(std::string, benchmark, ".lethe/benchmark",
          "a directory prepared by `lethe prepare-benchmark`");
ABSL_FLAG(std::string, methods, "GA,GradDiff,NPO,NPO_RT,SimNPO,OFMU,IHL",
          "comma-separated unlearning methods");
ABSL_FLAG(std::string, forget_split, "forget10", "split to forget");
ABSL_FLAG(std::string, retain_split, "retain90", "retain split");
ABSL_FLAG(int, epochs, 5, "unlearning epochs per method");
ABSL_FLAG(double, learning_rate, 2e-4, "peak learning rate (every method)");
ABSL_FLAG(int, batch_size, 8, "examples per step");
ABSL_FLAG(int, max_new_tokens, 200, "generation limit of the evaluation");
ABSL_FLAG(int, threads, 2, "CPU threads for LibTorch");
ABSL_FLAG(std::string, output, "docs/method_comparison",
          "output path prefix (.md, .csv, .png are appended)");

namespace lethe {
namespace {

struct Point {
  std::string method;
  int epoch = 0;
  double forget_quality = 0;
  double model_utility = 0;
  double forget_probability = 0;
  double forget_rouge = 0;
};

double SummaryValue(const nlohmann::json& summary, const char* key) {
  if (!summary.contains(key) || !summary[key].is_number()) return NAN;
  return summary[key].get<double>();
}

absl::Status WritePlot(const std::vector<std::string>& methods,
                       const std::string& output) {
  std::string script = absl::StrCat(
      "set terminal pngcairo size 900,600 noenhanced\n", "set output '", output,
      ".png'\n",
      "set title 'Forget quality vs model utility per epoch (embedded "
      "benchmark)'\n",
      "set xlabel 'model utility'\nset ylabel 'forget quality (KS p-value)'\n",
      "set logscale y\nset yrange [1e-12:2]\nset key outside right\n",
      "set grid\n", "set datafile separator ','\nplot ");
  for (size_t m = 0; m < methods.size(); ++m) {
    absl::StrAppend(&script, m == 0 ? "" : ", ", "'", output,
                    ".csv' using ($1==", m,
                    " ? $4 : 1/0):3 with linespoints title '", methods[m], "'");
  }
  absl::StrAppend(&script, "\n");
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

absl::Status WriteTables(const std::vector<Point>& points,
                         const std::vector<std::string>& methods,
                         const std::string& output) {
  std::string csv;
  std::string markdown =
      "| method | epoch | forget quality | model utility | forget prob | "
      "forget ROUGE-L |\n|---|---:|---:|---:|---:|---:|\n";
  for (const Point& point : points) {
    const size_t index =
        std::find(methods.begin(), methods.end(), point.method) -
        methods.begin();
    absl::StrAppendFormat(&csv, "%d,%d,%.6g,%.6g,%.6g,%.6g\n", index,
                          point.epoch, point.forget_quality,
                          point.model_utility, point.forget_probability,
                          point.forget_rouge);
    absl::StrAppendFormat(
        &markdown, "| %s | %d | %.3g | %.3f | %.3f | %.3f |\n", point.method,
        point.epoch, point.forget_quality, point.model_utility,
        point.forget_probability, point.forget_rouge);
  }
  RETURN_IF_ERROR(WriteFileAtomically(output + ".csv", csv));
  return WriteFileAtomically(output + ".md", markdown);
}

absl::Status Run() {
  const std::string dir = absl::GetFlag(FLAGS_benchmark);
  const std::string output = absl::GetFlag(FLAGS_output);
  const int threads = absl::GetFlag(FLAGS_threads);
  at::set_num_threads(threads);
  ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                   Tokenizer::Load(dir + "/target/tokenizer.model"));
  ASSIGN_OR_RETURN(PromptTemplate prompt_template,
                   PromptTemplateByName("plain"));
  const std::string data_dir = dir + "/data";
  const std::string forget_split = absl::GetFlag(FLAGS_forget_split);
  ASSIGN_OR_RETURN(TofuEvalData eval_data,
                   ReadTofuEvalData(data_dir, forget_split));
  ASSIGN_OR_RETURN(nlohmann::ordered_json retain_log,
                   ReadTofuEvalLog(dir + "/retain/TOFU_EVAL.json"));
  ASSIGN_OR_RETURN(std::vector<TofuRecord> forget,
                   ReadTofuSplit(data_dir, forget_split));
  ASSIGN_OR_RETURN(std::vector<TofuRecord> retain,
                   ReadTofuSplit(data_dir, absl::GetFlag(FLAGS_retain_split)));

  std::vector<std::string> methods =
      absl::StrSplit(absl::GetFlag(FLAGS_methods), ',', absl::SkipEmpty());
  std::vector<Point> points;
  for (const std::string& name : methods) {
    ASSIGN_OR_RETURN(UnlearningMethod method, ParseUnlearningMethod(name));
    ASSIGN_OR_RETURN(std::shared_ptr<LlamaForCausalLM> model,
                     LoadLlamaCheckpoint(dir + "/target"));
    const TofuEvalOptions eval_options{.max_new_tokens =
                                           absl::GetFlag(FLAGS_max_new_tokens)};
    auto evaluate = [&](int epoch) -> absl::Status {
      model->eval();
      TofuEvaluator evaluator(*model, *tokenizer, prompt_template,
                              eval_options);
      ASSIGN_OR_RETURN(TofuEvalResult result,
                       evaluator.Evaluate(eval_data, &retain_log));
      model->train();
      const Point point{
          .method = name,
          .epoch = epoch,
          .forget_quality = SummaryValue(result.summary, "forget_quality"),
          .model_utility = SummaryValue(result.summary, "model_utility"),
          .forget_probability = SummaryValue(result.summary, "forget_Q_A_Prob"),
          .forget_rouge = SummaryValue(result.summary, "forget_Q_A_ROUGE")};
      std::cout << absl::StrFormat(
                       "%-8s epoch %d: forget quality %.3g, model utility "
                       "%.3f, forget prob %.3f, forget ROUGE-L %.3f",
                       name, epoch, point.forget_quality, point.model_utility,
                       point.forget_probability, point.forget_rouge)
                << std::endl;
      points.push_back(point);
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(evaluate(0));
    UnlearningData data{.pad_id = tokenizer->eos_id()};
    auto tokenize = [&](const std::vector<TofuRecord>& records) {
      return TokenizeRecords(*tokenizer, prompt_template, records, 256);
    };
    ASSIGN_OR_RETURN(data.forget, tokenize(forget));
    ASSIGN_OR_RETURN(data.retain, tokenize(retain));
    if (method == UnlearningMethod::kIdkDpo) {
      ASSIGN_OR_RETURN(data.alternate, tokenize(RefusalAlternates(forget, 1)));
    } else if (method == UnlearningMethod::kLlmu) {
      ASSIGN_OR_RETURN(data.alternate,
                       tokenize(RandomAnswerAlternates(forget, retain, 1)));
    }
    UnlearningOptions options{.method = method,
                              .params = DefaultObjectiveParams(method)};
    options.training = {
        .learning_rate = absl::GetFlag(FLAGS_learning_rate),
        .weight_decay = 0.01,
        .warmup_epochs = 1.0,
        .max_grad_norm = 1.0,
        .num_epochs = absl::GetFlag(FLAGS_epochs),
        .per_device_batch_size = absl::GetFlag(FLAGS_batch_size),
        .seed = 1,
        .threads = threads};
    ASSIGN_OR_RETURN(
        TrainingSummary summary,
        RunUnlearning(*model, data, options,
                      {.training = {.on_epoch_end = [&](int epoch) {
                         return evaluate(epoch + 1);
                       }}}));
    std::cout << absl::StrFormat("%s: %d steps in %.0fs", name,
                                 summary.total_steps, summary.seconds)
              << std::endl;
  }
  RETURN_IF_ERROR(WriteTables(points, methods, output));
  return WritePlot(methods, output);
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
