// The job resource survives the two encodings Lethe uses: binary protobuf
// (gRPC, the SQLite job store) and JSON (spec files, `--output json`).
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>

#include <string>

#include "gtest/gtest.h"
#include "lethe/v1/job.pb.h"

namespace lethe {
namespace {

using ::google::protobuf::util::JsonParseOptions;
using ::google::protobuf::util::JsonStringToMessage;
using ::google::protobuf::util::MessageDifferencer;
using ::google::protobuf::util::MessageToJsonString;

v1::Job SampleJob() {
  v1::Job job;
  job.set_name("jobs/42");
  job.set_request_id("req-7f3a");
  v1::JobSpec* spec = job.mutable_spec();
  spec->set_model_dir("/models/target");
  spec->set_data_dir("/data/tofu");
  spec->set_forget_split("forget10");
  spec->set_retain_split("retain90");
  spec->set_method(v1::NPO_RT);
  spec->mutable_method_params()->set_beta(0.1);
  spec->mutable_optimizer()->set_learning_rate(1e-5);
  spec->set_world_size(2);
  spec->set_backend(v1::GLOO);
  spec->mutable_run_policy()->mutable_deadline()->set_seconds(3600);
  job.set_state(v1::Job::RUNNING);
  v1::Job::StateChange* change = job.add_history();
  change->set_state(v1::Job::RUNNING);
  change->set_reason("SCHEDULED");
  change->mutable_time()->set_seconds(1795800000);
  (*job.mutable_progress()->mutable_loss_components())["forget_npo"] = 0.6931;
  job.mutable_progress()->set_step(17);
  (*job.mutable_evaluation_summary())["forget_quality"] = 1.5e-25;
  return job;
}

TEST(JobProtoTest, BinaryRoundTripIsExact) {
  const v1::Job job = SampleJob();
  std::string bytes;
  ASSERT_TRUE(job.SerializeToString(&bytes));
  v1::Job parsed;
  ASSERT_TRUE(parsed.ParseFromString(bytes));
  EXPECT_TRUE(MessageDifferencer::Equals(job, parsed)) << parsed.DebugString();
}

TEST(JobProtoTest, JsonRoundTripKeepsEveryField) {
  const v1::Job job = SampleJob();
  std::string json;
  ASSERT_TRUE(MessageToJsonString(job, &json).ok());
  EXPECT_NE(json.find("\"forgetSplit\":\"forget10\""), std::string::npos)
      << json;
  EXPECT_NE(json.find("\"method\":\"NPO_RT\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"deadline\":\"3600s\""), std::string::npos) << json;
  v1::Job parsed;
  ASSERT_TRUE(JsonStringToMessage(json, &parsed).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(job, parsed)) << parsed.DebugString();
}

TEST(JobProtoTest, SpecFilesMayUseProtoFieldNames) {
  v1::JobSpec spec;
  ASSERT_TRUE(JsonStringToMessage(
                  R"({"forget_split": "forget05", "method": "SIM_NPO",
                      "method_params": {"beta": 4.5}})",
                  &spec)
                  .ok());
  EXPECT_EQ(spec.forget_split(), "forget05");
  EXPECT_EQ(spec.method(), v1::SIM_NPO);
  EXPECT_DOUBLE_EQ(spec.method_params().beta(), 4.5);
}

TEST(JobProtoTest, UnknownFieldsAndEnumValuesAreRejected) {
  v1::JobSpec spec;
  EXPECT_FALSE(JsonStringToMessage(R"({"method": "NPO_XL"})", &spec).ok());
  EXPECT_FALSE(JsonStringToMessage(R"({"forget_splitt": "x"})", &spec).ok());
}

}  // namespace
}  // namespace lethe
