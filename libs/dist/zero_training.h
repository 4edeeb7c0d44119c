// The trainer's ZeRO optimizer (TrainingOptions::zero_stage, TrainingHooks::
// sharded_optimizer) over a data-parallel process group: a ShardedAdamW
// (libs/dist/sharded_optimizer.h) behind the trainer's
// ShardedTrainingOptimizer interface, AllRanksOk as one all-reduce.
//
//   TrainingHooks hooks{.reduce_gradients = ...,
//                       .sharded_optimizer = ZeroOptimizerFactory(*group)};
//   options.zero_stage = 2;
//   ASSIGN_OR_RETURN(auto summary, RunTraining(model, n, options, loss,
//   hooks));
//
// The group must outlive every RunTraining call that uses the factory.
#ifndef LETHE_LIBS_DIST_ZERO_TRAINING_H_
#define LETHE_LIBS_DIST_ZERO_TRAINING_H_

#include <cstdint>

#include "libs/dist/collective_group.h"
#include "libs/unlearn/trainer.h"

namespace lethe {

// `bucket_bytes`: ShardedAdamWOptions::bucket_bytes.
ShardedOptimizerFactory ZeroOptimizerFactory(
    CollectiveGroup& group,
    int64_t bucket_bytes = CollectiveGroup::kDefaultBucketBytes);

}  // namespace lethe

#endif  // LETHE_LIBS_DIST_ZERO_TRAINING_H_
