// The coordinator's security, attacked from outside: a real
// lethe-coordinator started with TLS, mutual TLS for workers and API tokens
// (certificates made at test time with `openssl`), called over real gRPC
// by clients holding the wrong credentials, and by the `lethe` CLI. Each
// refused action is checked to have changed nothing.
//
// Usage: security_process_test COORDINATOR_BINARY LETHE_BINARY WORKER_BINARY
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "lethe/v1/jobs_service.grpc.pb.h"
#include "lethe/v1/worker_service.grpc.pb.h"
#include "libs/auth/token_auth.h"
#include "libs/files/file_io.h"
#include "libs/rpc/test_certificates.h"
#include "libs/rpc/tls_credentials.h"
#include "libs/subprocess/subprocess.h"
#include "tests/cli_runner.h"
#include "tests/coordinator_harness.h"

namespace lethe {
namespace {

std::string coordinator_binary;
std::string lethe_binary;
std::string worker_binary;

constexpr char kAlice[] = "alice-token";        // team-a submitter
constexpr char kAliceViewer[] = "carol-token";  // team-a viewer
constexpr char kBob[] = "bob-token";            // team-b submitter
constexpr char kAdmin[] = "root-token";         // ops admin
constexpr int kMaxStreams = 2;

// Tenant team-a reads models from model/shared only, team-b from
// model/shared and its own model/team-b; ops (no tenant line) anywhere under
// the global --allowed_model_roots (model/).
std::string TokensFile(const std::string& data_root) {
  return absl::StrCat(
      "# sha256 principal tenant role\n", Sha256Hex(kAlice),
      " alice team-a submitter\n", Sha256Hex(kAliceViewer),
      " carol team-a viewer\n", Sha256Hex(kBob), " bob team-b submitter\n",
      Sha256Hex(kAdmin), " root ops admin\n",
      "tenant team-a model_roots=", data_root, "/model/shared\n",
      "tenant team-b model_roots=", data_root, "/model/shared,", data_root,
      "/model/team-b\n");
}

std::chrono::system_clock::time_point Deadline(int seconds = 10) {
  return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
}

std::shared_ptr<grpc::ChannelCredentials> Credentials(
    const ClientTlsOptions& options) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      ChannelCredentials(options);
  EXPECT_TRUE(credentials.ok()) << credentials.status();
  return credentials.ok() ? *credentials : grpc::InsecureChannelCredentials();
}

// A call's context with a deadline and, unless empty, a bearer token.
std::unique_ptr<grpc::ClientContext> Context(const std::string& token) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(Deadline());
  if (!token.empty()) {
    context->AddMetadata("authorization", absl::StrCat("Bearer ", token));
  }
  return context;
}

class SecurityProcessTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = FreshDir("security");
    absl::StatusOr<TestCertificates> certs =
        MakeTestCertificates(dir + "/certs");
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = new TestCertificates(*certs);
    data_root_ = new std::string(dir + "/data");
    tokens_file_ = new std::string(dir + "/tokens");
    ASSERT_TRUE(
        WriteFileAtomically(*tokens_file_, TokensFile(*data_root_)).ok());
    std::filesystem::create_directories(*data_root_ + "/model/shared");
    std::filesystem::create_directories(*data_root_ + "/model/team-b/private");
    std::filesystem::create_directories(*data_root_ + "/data");
    std::filesystem::create_directories(*data_root_ + "/out");
    for (const std::string file :
         {"/model/shared/config.json", "/model/shared/tokenizer.model",
          "/model/team-b/private/config.json",
          "/model/team-b/private/tokenizer.model", "/data/forget10.json",
          "/data/retain90.json"}) {
      ASSERT_TRUE(WriteFileAtomically(*data_root_ + file, "[]").ok());
    }
    absl::StatusOr<std::unique_ptr<RunningCoordinator>> coordinator =
        StartSecured(dir + "/coordinator");
    ASSERT_TRUE(coordinator.ok()) << coordinator.status();
    coordinator_ = coordinator->release();
  }

  // A coordinator with TLS, worker certificates and tokens.
  static absl::StatusOr<std::unique_ptr<RunningCoordinator>> StartSecured(
      const std::string& dir) {
    return RunningCoordinator::Start(
        coordinator_binary, dir,
        {.flags = {
             absl::StrCat("--tls_cert_file=", certs_->server_cert),
             absl::StrCat("--tls_key_file=", certs_->server_key),
             absl::StrCat("--tls_client_ca_file=", certs_->ca),
             absl::StrCat("--auth_tokens_file=", *tokens_file_),
             absl::StrCat("--max_streams_per_client=", kMaxStreams),
             absl::StrCat("--allowed_model_roots=", *data_root_, "/model"),
             absl::StrCat("--allowed_data_roots=", *data_root_, "/data"),
             absl::StrCat("--allowed_output_roots=", *data_root_, "/out")}});
  }
  static void TearDownTestSuite() {
    delete coordinator_;
    delete certs_;
    delete tokens_file_;
    delete data_root_;
  }

  void SetUp() override { ASSERT_NE(coordinator_, nullptr); }

  static std::string address() { return coordinator_->address(); }

  // The Jobs API over TLS, trusting the test CA.
  static std::unique_ptr<v1::Jobs::Stub> Jobs() {
    return v1::Jobs::NewStub(
        grpc::CreateChannel(address(), Credentials({.ca_file = certs_->ca})));
  }

  static v1::CreateJobRequest Request(const std::string& output,
                                      const std::string& request_id = "") {
    v1::CreateJobRequest request;
    v1::JobSpec& spec = *request.mutable_spec();
    spec.set_model_dir(*data_root_ + "/model/shared");
    spec.set_data_dir(*data_root_ + "/data");
    spec.set_forget_split("forget10");
    spec.set_method(v1::NPO_RT);
    spec.set_output_dir(absl::StrCat(*data_root_, "/out/", output));
    request.set_request_id(request_id);
    return request;
  }

  // Creates a job as `token`'s principal; fails the test otherwise.
  static v1::Job Create(const std::string& token, const std::string& output,
                        const std::string& request_id = "") {
    v1::Job job;
    const grpc::Status status = Jobs()->CreateJob(
        Context(token).get(), Request(output, request_id), &job);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return job;
  }

  // Every job the admin sees.
  static int CountAllJobs() {
    v1::ListJobsRequest request;
    request.set_page_size(1000);
    v1::ListJobsResponse response;
    const grpc::Status status =
        Jobs()->ListJobs(Context(kAdmin).get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.jobs_size();
  }

  static TestCertificates* certs_;
  static std::string* tokens_file_;
  static std::string* data_root_;
  static RunningCoordinator* coordinator_;
};
TestCertificates* SecurityProcessTest::certs_ = nullptr;
std::string* SecurityProcessTest::tokens_file_ = nullptr;
std::string* SecurityProcessTest::data_root_ = nullptr;
RunningCoordinator* SecurityProcessTest::coordinator_ = nullptr;

TEST_F(SecurityProcessTest, OnlyTlsClientsTrustingItsCaGetThrough) {
  using ::grpc::health::v1::Health;
  using ::grpc::health::v1::HealthCheckRequest;
  using ::grpc::health::v1::HealthCheckResponse;
  const auto check = [&](std::shared_ptr<grpc::ChannelCredentials> creds) {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    HealthCheckResponse reply;
    return Health::NewStub(grpc::CreateChannel(address(), creds))
        ->Check(&context, HealthCheckRequest(), &reply);
  };
  const grpc::Status tls = check(Credentials({.ca_file = certs_->ca}));
  EXPECT_TRUE(tls.ok()) << tls.error_message();
  EXPECT_EQ(check(grpc::InsecureChannelCredentials()).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // A client that trusts another CA does not talk to this server.
  EXPECT_EQ(check(Credentials({.ca_file = certs_->other_ca})).error_code(),
            grpc::StatusCode::UNAVAILABLE);

  // A plaintext Jobs client with a valid token is refused too.
  v1::ListJobsResponse response;
  auto context = Context(kAdmin);
  EXPECT_EQ(
      v1::Jobs::NewStub(
          grpc::CreateChannel(address(), grpc::InsecureChannelCredentials()))
          ->ListJobs(context.get(), v1::ListJobsRequest(), &response)
          .error_code(),
      grpc::StatusCode::UNAVAILABLE);
}

TEST_F(SecurityProcessTest, TheWorkerRegistryNeedsACertificateFromItsCa) {
  // A coordinator of its own: the worker registered here must not be given
  // the other tests' jobs.
  absl::StatusOr<std::unique_ptr<RunningCoordinator>> own =
      StartSecured(FreshDir("security_registry"));
  ASSERT_TRUE(own.ok()) << own.status();
  const std::string own_address = (*own)->address();
  const auto registry = [&](const ClientTlsOptions& options) {
    return v1::WorkerRegistry::NewStub(
        grpc::CreateChannel(own_address, Credentials(options)));
  };
  v1::RegisterWorkerRequest request;
  request.set_host("127.0.0.1");
  request.set_device("cpu");
  request.set_pid(12345);
  request.set_threads(1);
  request.set_store_port(1);
  v1::RegisterWorkerResponse response;

  // TLS without a client certificate: UNAUTHENTICATED, and the same for a
  // forged heartbeat or progress report.
  {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    const grpc::Status status =
        registry({.ca_file = certs_->ca})
            ->RegisterWorker(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << status.error_message();
    EXPECT_TRUE(absl::StrContains(status.error_message(), "certificate"))
        << status.error_message();
  }
  {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    v1::HeartbeatRequest heartbeat;
    heartbeat.set_worker_id("workers/1");
    v1::HeartbeatResponse reply;
    EXPECT_EQ(registry({.ca_file = certs_->ca})
                  ->Heartbeat(&context, heartbeat, &reply)
                  .error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    v1::ReportProgressResponse reply;
    EXPECT_EQ(
        registry({.ca_file = certs_->ca})
            ->ReportProgress(&context, v1::ReportProgressRequest(), &reply)
            .error_code(),
        grpc::StatusCode::UNAUTHENTICATED);
  }
  // A certificate from another CA: the handshake fails.
  {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    EXPECT_EQ(registry({.ca_file = certs_->ca,
                        .cert_file = certs_->other_client_cert,
                        .key_file = certs_->other_client_key})
                  ->RegisterWorker(&context, request, &response)
                  .error_code(),
              grpc::StatusCode::UNAVAILABLE);
  }
  // An API token is no worker credential.
  {
    auto context = Context(kAdmin);
    EXPECT_EQ(registry({.ca_file = certs_->ca})
                  ->RegisterWorker(context.get(), request, &response)
                  .error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  // The CA's own client certificate registers.
  {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    const grpc::Status status =
        registry({.ca_file = certs_->ca,
                  .cert_file = certs_->client_cert,
                  .key_file = certs_->client_key})
            ->RegisterWorker(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_FALSE(response.worker_id().empty());
  }
}

// Rank reports are authorised by the attempt's secret, which only the
// attempt's ranks receive (with their order), not by the attempt id that
// the job's history shows. Worker ids cannot be guessed.
TEST_F(SecurityProcessTest, ProgressReportsNeedTheAttemptsSecret) {
  absl::StatusOr<std::unique_ptr<RunningCoordinator>> own =
      StartSecured(FreshDir("security_reports"));
  ASSERT_TRUE(own.ok()) << own.status();
  auto registry = v1::WorkerRegistry::NewStub(grpc::CreateChannel(
      (*own)->address(), Credentials({.ca_file = certs_->ca,
                                      .cert_file = certs_->client_cert,
                                      .key_file = certs_->client_key})));
  v1::RegisterWorkerRequest request;
  request.set_host("127.0.0.1");
  request.set_device("cpu");
  request.set_pid(4242);
  request.set_threads(1);
  request.set_store_port(1);
  v1::RegisterWorkerResponse registered;
  {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    ASSERT_TRUE(registry->RegisterWorker(&context, request, &registered).ok());
  }
  EXPECT_TRUE(absl::StartsWith(registered.worker_id(), "workers/1-"));
  EXPECT_EQ(registered.worker_id().size(), 10u + 32u) << registered.worker_id();

  // A job for it (the tests' other coordinator has its own jobs).
  v1::Job job;
  {
    auto context = Context(kAlice);
    const grpc::Status status =
        v1::Jobs::NewStub(
            grpc::CreateChannel((*own)->address(),
                                Credentials({.ca_file = certs_->ca})))
            ->CreateJob(context.get(), Request("reports"), &job);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  // Heartbeats until the scheduler hands the worker its order.
  v1::Attempt order;
  for (int i = 0; i < 100 && order.attempt_id() == 0; ++i) {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    v1::HeartbeatRequest heartbeat;
    heartbeat.set_worker_id(registered.worker_id());
    v1::HeartbeatResponse reply;
    ASSERT_TRUE(registry->Heartbeat(&context, heartbeat, &reply).ok());
    if (reply.has_run()) order = reply.run();
    if (order.attempt_id() == 0) absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_NE(order.attempt_id(), 0) << (*own)->Log();
  EXPECT_EQ(order.job(), job.name());
  EXPECT_EQ(order.report_secret().size(), 32u);

  const auto report = [&](const std::string& secret) {
    v1::ReportProgressRequest progress;
    progress.set_attempt_id(order.attempt_id());
    progress.set_report_secret(secret);
    progress.mutable_progress()->set_step(7);
    progress.mutable_progress()->set_total_steps(9);
    progress.add_log_lines("forged?");
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    v1::ReportProgressResponse reply;
    return registry->ReportProgress(&context, progress, &reply);
  };
  const auto step = [&] {
    auto context = Context(kAlice);
    v1::GetJobRequest get;
    get.set_name(job.name());
    v1::Job now;
    EXPECT_TRUE(v1::Jobs::NewStub(
                    grpc::CreateChannel((*own)->address(),
                                        Credentials({.ca_file = certs_->ca})))
                    ->GetJob(context.get(), get, &now)
                    .ok());
    return now.progress().step();
  };
  for (const std::string& wrong : std::vector<std::string>{
           "", std::string(32, '0'), order.report_secret().substr(1)}) {
    const grpc::Status status = report(wrong);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << status.error_message();
  }
  EXPECT_EQ(step(), 0) << "a refused report changed the job";
  const grpc::Status accepted = report(order.report_secret());
  EXPECT_TRUE(accepted.ok()) << accepted.error_message();
  EXPECT_EQ(step(), 7);

  // Evaluation keys outside the evaluator's summary are dropped (they
  // would become metric labels and stored keys), and the job's log says so;
  // the known key of the same report is kept.
  {
    v1::ReportProgressRequest progress;
    progress.set_attempt_id(order.attempt_id());
    progress.set_report_secret(order.report_secret());
    (*progress.mutable_evaluation_summary())["forget_quality"] = 0.25;
    (*progress.mutable_evaluation_summary())["injected_key"] = 1;
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    v1::ReportProgressResponse reply;
    const grpc::Status status =
        registry->ReportProgress(&context, progress, &reply);
    EXPECT_TRUE(status.ok()) << status.error_message();
  }
  auto jobs = v1::Jobs::NewStub(grpc::CreateChannel(
      (*own)->address(), Credentials({.ca_file = certs_->ca})));
  {
    auto context = Context(kAlice);
    v1::GetJobRequest get;
    get.set_name(job.name());
    v1::Job now;
    ASSERT_TRUE(jobs->GetJob(context.get(), get, &now).ok());
    ASSERT_EQ(now.evaluation_summary_size(), 1);
    EXPECT_EQ(now.evaluation_summary().at("forget_quality"), 0.25);
  }
  {
    auto context = Context(kAlice);
    v1::StreamJobLogsRequest logs;
    logs.set_name(job.name());
    auto reader = jobs->StreamJobLogs(context.get(), logs);
    v1::LogEntry entry;
    bool said = false;
    while (reader->Read(&entry)) {
      said |= absl::StrContains(entry.message(),
                                "1 evaluation key(s) not of the evaluator's "
                                "summary (\"injected_key\")");
    }
    EXPECT_TRUE(reader->Finish().ok());
    EXPECT_TRUE(said) << "the job's log does not say what was dropped";
  }
}

TEST_F(SecurityProcessTest, EveryJobsCallNeedsAValidToken) {
  const int before = CountAllJobs();
  v1::Job job;
  auto stub = Jobs();
  for (const std::string& token :
       std::vector<std::string>{"", "not-a-token", Sha256Hex(kAdmin)}) {
    grpc::Status status =
        Jobs()->CreateJob(Context(token).get(), Request("unauth"), &job);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << token << ": " << status.error_message();
    v1::ListJobsResponse list;
    status =
        Jobs()->ListJobs(Context(token).get(), v1::ListJobsRequest(), &list);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    v1::GetJobRequest get;
    get.set_name("jobs/1");
    status = Jobs()->GetJob(Context(token).get(), get, &job);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    v1::WatchJobRequest watch;
    watch.set_name("jobs/1");
    auto context = Context(token);
    auto reader = stub->WatchJob(context.get(), watch);
    EXPECT_FALSE(reader->Read(&job));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  // Without a token the message says how to send one.
  const grpc::Status status =
      Jobs()->CreateJob(Context("").get(), Request("unauth"), &job);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "Bearer"))
      << status.error_message();
  EXPECT_EQ(CountAllJobs(), before);
  EXPECT_FALSE(std::filesystem::exists(*data_root_ + "/out/unauth"));
}

TEST_F(SecurityProcessTest, ViewersOnlyRead) {
  const v1::Job mine = Create(kAlice, "viewer_target");
  const int before = CountAllJobs();
  v1::Job job;
  grpc::Status status = Jobs()->CreateJob(Context(kAliceViewer).get(),
                                          Request("by_viewer"), &job);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "carol") &&
              absl::StrContains(status.error_message(), "viewer"))
      << status.error_message();
  v1::CancelJobRequest cancel;
  cancel.set_name(mine.name());
  status = Jobs()->CancelJob(Context(kAliceViewer).get(), cancel, &job);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  v1::DeleteJobRequest remove;
  remove.set_name(mine.name());
  google::protobuf::Empty empty;
  status = Jobs()->DeleteJob(Context(kAliceViewer).get(), remove, &empty);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // Reading its own tenant's job is fine.
  v1::GetJobRequest get;
  get.set_name(mine.name());
  status = Jobs()->GetJob(Context(kAliceViewer).get(), get, &job);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(job.state(), v1::Job::QUEUED);
  EXPECT_EQ(CountAllJobs(), before);
}

TEST_F(SecurityProcessTest, TenantsSeeOnlyTheirOwnJobs) {
  const v1::Job alices = Create(kAlice, "alice_job", "shared-request");
  EXPECT_EQ(alices.tenant(), "team-a");
  v1::Job job;
  auto stub = Jobs();

  // Bob's view of Alice's job is word for word that of a missing job.
  v1::GetJobRequest get;
  get.set_name(alices.name());
  grpc::Status hidden = Jobs()->GetJob(Context(kBob).get(), get, &job);
  get.set_name("jobs/999999");
  const grpc::Status missing = Jobs()->GetJob(Context(kBob).get(), get, &job);
  EXPECT_EQ(hidden.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(hidden.error_message(), absl::StrCat(alices.name(), " not found"));

  v1::CancelJobRequest cancel;
  cancel.set_name(alices.name());
  EXPECT_EQ(Jobs()->CancelJob(Context(kBob).get(), cancel, &job).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::DeleteJobRequest remove;
  remove.set_name(alices.name());
  google::protobuf::Empty empty;
  EXPECT_EQ(Jobs()->DeleteJob(Context(kBob).get(), remove, &empty).error_code(),
            grpc::StatusCode::NOT_FOUND);
  {
    v1::WatchJobRequest watch;
    watch.set_name(alices.name());
    auto context = Context(kBob);
    auto reader = stub->WatchJob(context.get(), watch);
    EXPECT_FALSE(reader->Read(&job));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    v1::StreamJobLogsRequest logs;
    logs.set_name(alices.name());
    auto context = Context(kBob);
    auto reader = stub->StreamJobLogs(context.get(), logs);
    v1::LogEntry entry;
    EXPECT_FALSE(reader->Read(&entry));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  }
  v1::ListJobsResponse list;
  ASSERT_TRUE(
      Jobs()->ListJobs(Context(kBob).get(), v1::ListJobsRequest(), &list).ok());
  for (const v1::Job& listed : list.jobs()) {
    EXPECT_EQ(listed.tenant(), "team-b") << listed.name();
  }

  // Nothing changed: Alice's job is still queued and hers.
  get.set_name(alices.name());
  ASSERT_TRUE(Jobs()->GetJob(Context(kAlice).get(), get, &job).ok());
  EXPECT_EQ(job.state(), v1::Job::QUEUED);
  EXPECT_EQ(job.history_size(), 1);

  // The same request_id in Bob's tenant is Bob's own job, not Alice's.
  const v1::Job bobs = Create(kBob, "bob_job", "shared-request");
  EXPECT_NE(bobs.name(), alices.name());
  EXPECT_EQ(bobs.tenant(), "team-b");
  // ... and it cannot take Alice's output directory by reusing it.
  v1::Job stolen;
  const grpc::Status steal = Jobs()->CreateJob(
      Context(kBob).get(), Request("alice_job", "shared-request-2"), &stolen);
  EXPECT_FALSE(steal.ok()) << stolen.name();

  // The admin sees both tenants and may cancel Alice's job.
  ASSERT_TRUE(
      Jobs()
          ->ListJobs(Context(kAdmin).get(), v1::ListJobsRequest(), &list)
          .ok());
  bool saw_alices = false, saw_bobs = false;
  for (const v1::Job& listed : list.jobs()) {
    saw_alices |= listed.name() == alices.name();
    saw_bobs |= listed.name() == bobs.name();
  }
  EXPECT_TRUE(saw_alices && saw_bobs);
  const grpc::Status cancelled =
      Jobs()->CancelJob(Context(kAdmin).get(), cancel, &job);
  EXPECT_TRUE(cancelled.ok()) << cancelled.error_message();
  EXPECT_EQ(job.state(), v1::Job::CANCELLED);
}

// The confused deputy of issue 20: a job that names another team's
// weights (or writes outside the output roots) is refused before any file
// is looked at, with the same answer whether the path exists or not.
TEST_F(SecurityProcessTest, PathsOutsideTheAllowedRootsAreRefused) {
  const std::string outside = FreshDir("security_outside");
  std::filesystem::create_directories(outside + "/private_model");
  ASSERT_TRUE(
      WriteFileAtomically(outside + "/private_model/config.json", "{}").ok());
  const int before = CountAllJobs();
  v1::Job job;
  grpc::Status answers[2];
  int i = 0;
  for (const std::string& model :
       {outside + "/private_model", outside + "/no_such_model"}) {
    v1::CreateJobRequest request = Request("copy");
    request.mutable_spec()->set_model_dir(model);
    answers[i] = Jobs()->CreateJob(Context(kAlice).get(), request, &job);
    EXPECT_EQ(answers[i].error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << answers[i].error_message();
    EXPECT_FALSE(absl::StrContains(answers[i].error_message(), outside))
        << answers[i].error_message();
    ++i;
  }
  EXPECT_EQ(answers[0].error_message(), answers[1].error_message());
  v1::CreateJobRequest request = Request("");
  request.mutable_spec()->set_output_dir(outside + "/copy");
  const grpc::Status output =
      Jobs()->CreateJob(Context(kAlice).get(), request, &job);
  EXPECT_EQ(output.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << output.error_message();
  EXPECT_EQ(CountAllJobs(), before);
  EXPECT_FALSE(std::filesystem::exists(outside + "/copy"));
  EXPECT_FALSE(std::filesystem::exists(*data_root_ + "/out/copy"));
}

// Per-tenant roots: team-a's token naming a model under team-b's own root
// (inside the global --allowed_model_roots) is refused at CreateJob, with
// the same answer whether the path exists or not, naming only team-a's
// roots; team-b's token may name it.
TEST_F(SecurityProcessTest, ATenantCannotNameAnotherTenantsRoot) {
  const int before = CountAllJobs();
  v1::Job job;
  grpc::Status answers[2];
  int i = 0;
  for (const std::string& model :
       {*data_root_ + "/model/team-b/private",
        *data_root_ + "/model/team-b/no_such_model"}) {
    v1::CreateJobRequest request = Request("a_takes_b");
    request.mutable_spec()->set_model_dir(model);
    answers[i] = Jobs()->CreateJob(Context(kAlice).get(), request, &job);
    EXPECT_EQ(answers[i].error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << answers[i].error_message();
    EXPECT_TRUE(
        absl::StrContains(answers[i].error_message(), "spec.model_dir") &&
        absl::StrContains(answers[i].error_message(),
                          *data_root_ + "/model/shared") &&
        absl::StrContains(answers[i].error_message(), "tenant \"team-a\""))
        << answers[i].error_message();
    EXPECT_FALSE(absl::StrContains(answers[i].error_message(), "team-b"))
        << answers[i].error_message();
    ++i;
  }
  EXPECT_EQ(answers[0].error_message(), answers[1].error_message());
  EXPECT_EQ(CountAllJobs(), before);
  EXPECT_FALSE(std::filesystem::exists(*data_root_ + "/out/a_takes_b"));

  // The same spec is fine for team-b, whose root it is.
  v1::CreateJobRequest request = Request("b_own_model");
  request.mutable_spec()->set_model_dir(*data_root_ + "/model/team-b/private");
  const grpc::Status own =
      Jobs()->CreateJob(Context(kBob).get(), request, &job);
  EXPECT_TRUE(own.ok()) << own.error_message();
  EXPECT_EQ(job.tenant(), "team-b");
  EXPECT_EQ(CountAllJobs(), before + 1);
}

TEST_F(SecurityProcessTest, RequestIdsAreBounded) {
  const int before = CountAllJobs();
  v1::Job job;
  const grpc::Status status = Jobs()->CreateJob(
      Context(kAlice).get(), Request("long_id", std::string(129, 'r')), &job);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "128"))
      << status.error_message();
  EXPECT_EQ(CountAllJobs(), before);
  EXPECT_FALSE(std::filesystem::exists(*data_root_ + "/out/long_id"));
  // 128 bytes are fine.
  Create(kAlice, "long_id", std::string(128, 'r'));
}

TEST_F(SecurityProcessTest, StreamsPerPrincipalAreCapped) {
  const v1::Job queued = Create(kBob, "streams");  // No worker: stays queued.
  auto stub = Jobs();
  v1::WatchJobRequest watch;
  watch.set_name(queued.name());
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::Job>>> readers;
  v1::Job job;
  for (int i = 0; i < kMaxStreams; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    contexts.back()->AddMetadata("authorization",
                                 absl::StrCat("Bearer ", kBob));
    readers.push_back(stub->WatchJob(contexts.back().get(), watch));
    ASSERT_TRUE(readers.back()->Read(&job)) << i;  // Open and served.
  }
  {
    auto context = Context(kBob);
    auto reader = stub->WatchJob(context.get(), watch);
    EXPECT_FALSE(reader->Read(&job));
    const grpc::Status status = reader->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << status.error_message();
  }
  {
    // Log streams count too; another principal has its own streams.
    v1::StreamJobLogsRequest logs;
    logs.set_name(queued.name());
    logs.set_follow(true);
    auto context = Context(kBob);
    auto reader = stub->StreamJobLogs(context.get(), logs);
    v1::LogEntry entry;
    while (reader->Read(&entry)) {
    }
    EXPECT_EQ(reader->Finish().error_code(),
              grpc::StatusCode::RESOURCE_EXHAUSTED);
    auto admin_context = Context(kAdmin);
    auto admin = stub->WatchJob(admin_context.get(), watch);
    EXPECT_TRUE(admin->Read(&job));
    admin_context->TryCancel();
    admin->Finish().IgnoreError();
  }
  // Closing one frees its slot (once the server has seen it go).
  contexts[0]->TryCancel();
  readers[0]->Finish().IgnoreError();
  bool reopened = false;
  for (int i = 0; i < 50 && !reopened; ++i) {
    auto context = Context(kBob);
    auto reader = stub->WatchJob(context.get(), watch);
    reopened = reader->Read(&job);
    context->TryCancel();
    reader->Finish().IgnoreError();
    if (!reopened) absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(reopened);
  for (size_t i = 1; i < contexts.size(); ++i) {
    contexts[i]->TryCancel();
    readers[i]->Finish().IgnoreError();
  }
}

TEST_F(SecurityProcessTest, TheCliSendsItsTokenOverTls) {
  const v1::Job job = Create(kAlice, "cli");
  const std::string coordinator = absl::StrCat("--coordinator=", address());
  const std::string ca = absl::StrCat("--tls_ca_file=", certs_->ca);
  CliResult result = RunCli(lethe_binary, {"get", job.name(), coordinator, ca,
                                           absl::StrCat("--token=", kAlice)});
  EXPECT_TRUE(result.exit.success())
      << result.exit.ToString() << result.stderr_text;
  EXPECT_TRUE(absl::StrContains(result.stdout_text, job.name()))
      << result.stdout_text;
  // Bob's token sees no such job; no token is refused with advice.
  result = RunCli(lethe_binary, {"get", job.name(), coordinator, ca,
                                 absl::StrCat("--token=", kBob)});
  EXPECT_EQ(result.exit.code, 1);
  EXPECT_TRUE(absl::StrContains(result.stderr_text, "not found"))
      << result.stderr_text;
  result = RunCli(lethe_binary, {"list", coordinator, ca});
  EXPECT_EQ(result.exit.code, 1);
  EXPECT_TRUE(absl::StrContains(result.stderr_text, "--token"))
      << result.stderr_text;
  // Without --tls_ca_file the CLI speaks plaintext and gets no answer.
  result = RunCli(lethe_binary, {"health", coordinator, "--timeout_seconds=2",
                                 absl::StrCat("--token=", kAlice)});
  EXPECT_EQ(result.exit.code, 1);
  result = RunCli(lethe_binary, {"health", coordinator, ca});
  EXPECT_TRUE(result.exit.success()) << result.stderr_text;
}

// A worker checks a job's paths against its own roots before it opens
// anything, whatever the coordinator allowed.
TEST(WorkerPathPolicyTest, AWorkerRefusesAJobOutsideItsRoots) {
  const std::string dir = FreshDir("worker_paths");
  for (const std::string sub : {"/allowed", "/other/model", "/other/data"}) {
    std::filesystem::create_directories(dir + sub);
  }
  for (const std::string file :
       {"/other/model/config.json", "/other/model/tokenizer.model",
        "/other/data/forget10.json", "/other/data/retain90.json"}) {
    ASSERT_TRUE(WriteFileAtomically(dir + file, "[]").ok());
  }
  absl::StatusOr<std::unique_ptr<RunningCoordinator>> coordinator =
      RunningCoordinator::Start(coordinator_binary, dir + "/coordinator");
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  const std::string log = dir + "/worker.log";
  absl::StatusOr<Subprocess> worker = Subprocess::Start(
      {worker_binary, "--coordinator=" + (*coordinator)->address(),
       "--threads=1", "--allowed_model_roots=" + dir + "/allowed"},
      {}, {.stdout_path = log, .stderr_path = log});
  ASSERT_TRUE(worker.ok()) << worker.status();

  v1::CreateJobRequest request;
  v1::JobSpec& spec = *request.mutable_spec();
  spec.set_model_dir(dir + "/other/model");
  spec.set_data_dir(dir + "/other/data");
  spec.set_forget_split("forget10");
  spec.set_method(v1::NPO_RT);
  spec.set_output_dir(dir + "/out");
  spec.mutable_run_policy()->set_max_restarts(0);
  v1::Job job;
  {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    const grpc::Status status =
        (*coordinator)->jobs().CreateJob(&context, request, &job);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (job.state() != v1::Job::FAILED && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(200));
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    v1::GetJobRequest get;
    get.set_name(job.name());
    ASSERT_TRUE((*coordinator)->jobs().GetJob(&context, get, &job).ok());
  }
  ASSERT_EQ(job.state(), v1::Job::FAILED)
      << (*coordinator)->Log() << ReadFileToString(log).value_or("");
  EXPECT_TRUE(absl::StrContains(job.error(), "spec.model_dir") &&
              absl::StrContains(job.error(), "--allowed_model_roots"))
      << job.error();
  EXPECT_FALSE(absl::StrContains(job.error(), "/other/model")) << job.error();
  // Refused before anything was written.
  EXPECT_FALSE(std::filesystem::exists(dir + "/out/logs"));
}

// A tenant's roots narrowed after its job was created (the coordinator
// restarted with a new tokens file) hold at the worker: the order carries
// the tenant's roots as they are now, and a worker with no roots of its
// own refuses the attempt before it opens or writes anything.
TEST(WorkerPathPolicyTest, AWorkerRefusesAJobOutsideItsTenantsRoots) {
  const std::string dir = FreshDir("worker_tenant_paths");
  for (const std::string sub :
       {"/models/a/m", "/models/b/m", "/data", "/out"}) {
    std::filesystem::create_directories(dir + sub);
  }
  for (const std::string file :
       {"/models/a/m/config.json", "/models/a/m/tokenizer.model",
        "/models/b/m/config.json", "/models/b/m/tokenizer.model",
        "/data/forget10.json", "/data/retain90.json"}) {
    ASSERT_TRUE(WriteFileAtomically(dir + file, "[]").ok());
  }
  const std::string tokens = absl::StrCat(
      Sha256Hex(kAlice), " alice team-a submitter\n", Sha256Hex(kBob),
      " bob team-b "
      "submitter\n");
  ASSERT_TRUE(WriteFileAtomically(dir + "/tokens-before", tokens).ok());
  ASSERT_TRUE(WriteFileAtomically(
                  dir + "/tokens-after",
                  absl::StrCat(tokens, "tenant team-a model_roots=", dir,
                               "/models/a\n"))
                  .ok());
  const auto flags = [&](const std::string& tokens_file) {
    return TestCoordinatorOptions{
        .database = dir + "/jobs.sqlite",
        .flags = {"--auth_tokens_file=" + tokens_file,
                  "--allowed_model_roots=" + dir + "/models",
                  "--allowed_data_roots=" + dir + "/data",
                  "--allowed_output_roots=" + dir + "/out"}};
  };
  v1::Job job;
  {
    // Team-a may still read all of models/: the job is created, and waits
    // (no worker).
    absl::StatusOr<std::unique_ptr<RunningCoordinator>> before =
        RunningCoordinator::Start(coordinator_binary, dir + "/before",
                                  flags(dir + "/tokens-before"));
    ASSERT_TRUE(before.ok()) << before.status();
    v1::CreateJobRequest request;
    v1::JobSpec& spec = *request.mutable_spec();
    spec.set_model_dir(dir + "/models/b/m");
    spec.set_data_dir(dir + "/data");
    spec.set_forget_split("forget10");
    spec.set_method(v1::NPO_RT);
    spec.set_output_dir(dir + "/out/job");
    spec.mutable_run_policy()->set_max_restarts(0);
    const grpc::Status status =
        (*before)->jobs().CreateJob(Context(kAlice).get(), request, &job);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(job.tenant(), "team-a");
  }
  absl::StatusOr<std::unique_ptr<RunningCoordinator>> after =
      RunningCoordinator::Start(coordinator_binary, dir + "/after",
                                flags(dir + "/tokens-after"));
  ASSERT_TRUE(after.ok()) << after.status();
  const std::string log = dir + "/worker.log";
  absl::StatusOr<Subprocess> worker = Subprocess::Start(
      {worker_binary, "--coordinator=" + (*after)->address(), "--threads=1"},
      {}, {.stdout_path = log, .stderr_path = log});
  ASSERT_TRUE(worker.ok()) << worker.status();

  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (job.state() != v1::Job::FAILED && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(200));
    v1::GetJobRequest get;
    get.set_name(job.name());
    ASSERT_TRUE((*after)->jobs().GetJob(Context(kAlice).get(), get, &job).ok());
  }
  ASSERT_EQ(job.state(), v1::Job::FAILED)
      << (*after)->Log() << ReadFileToString(log).value_or("");
  EXPECT_TRUE(absl::StrContains(job.error(), "spec.model_dir") &&
              absl::StrContains(job.error(), dir + "/models/a") &&
              absl::StrContains(job.error(), "tenant \"team-a\""))
      << job.error();
  EXPECT_FALSE(absl::StrContains(job.error(), "/models/b")) << job.error();
  // Refused before anything was written.
  EXPECT_FALSE(std::filesystem::exists(dir + "/out/job/logs"));
}

// Without TLS, worker certificates and tokens the coordinator serves
// loopback only, unless told --insecure.
TEST(ExposureTest, AnUnprotectedNonLoopbackListenerNeedsInsecure) {
  const std::string dir = FreshDir("exposure");
  const std::string log = dir + "/refused.log";
  absl::StatusOr<Subprocess> refused = Subprocess::Start(
      {coordinator_binary, "--listen=0.0.0.0:0",
       "--metrics_address=127.0.0.1:0", "--database=" + dir + "/jobs.sqlite"},
      {}, {.stdout_path = log, .stderr_path = log});
  ASSERT_TRUE(refused.ok()) << refused.status();
  absl::StatusOr<std::optional<ExitStatus>> exit =
      refused->WaitFor(absl::Seconds(20));
  ASSERT_TRUE(exit.ok() && exit->has_value()) << "it kept running";
  EXPECT_EQ((*exit)->code, 1) << (*exit)->ToString();
  const std::string text = ReadFileToString(log).value_or("");
  EXPECT_TRUE(absl::StrContains(text, "not a loopback address") &&
              absl::StrContains(text, "--insecure"))
      << text;

  absl::StatusOr<std::unique_ptr<RunningCoordinator>> insecure =
      RunningCoordinator::Start(
          coordinator_binary, dir + "/insecure",
          {.flags = {"--listen=0.0.0.0:0", "--insecure"}});
  ASSERT_TRUE(insecure.ok()) << insecure.status();
  EXPECT_TRUE(absl::StrContains((*insecure)->Log(), "INSECURE"))
      << (*insecure)->Log();
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc != 4) {
    std::cerr << "usage: " << argv[0]
              << " COORDINATOR_BINARY LETHE_BINARY WORKER_BINARY\n";
    return 2;
  }
  lethe::coordinator_binary = argv[1];
  lethe::lethe_binary = argv[2];
  lethe::worker_binary = argv[3];
  return RUN_ALL_TESTS();
}
