#include "libs/jobs/job_state.h"

#include "gtest/gtest.h"

namespace lethe {
namespace {

TEST(JobStateTest, OnlySucceededFailedAndCancelledAreFinal) {
  const google::protobuf::EnumDescriptor* states = v1::Job::State_descriptor();
  int finals = 0;
  for (int i = 0; i < states->value_count(); ++i) {
    const auto state = static_cast<v1::Job::State>(states->value(i)->number());
    const bool final_state = state == v1::Job::SUCCEEDED ||
                             state == v1::Job::FAILED ||
                             state == v1::Job::CANCELLED;
    EXPECT_EQ(IsFinalState(state), final_state) << states->value(i)->name();
    finals += IsFinalState(state);
  }
  EXPECT_EQ(finals, 3);
}

}  // namespace
}  // namespace lethe
