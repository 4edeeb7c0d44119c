#include "services/coordinator/output_claim.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "libs/files/file_io.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

std::string ClaimPath(const std::string& output_dir) {
  return output_dir + "/.lethe-job.json";
}

}  // namespace

absl::Status CheckOutputClaim(
    const std::string& output_dir, const std::string& request_id,
    const std::function<bool(const std::string& job)>& job_exists,
    const std::function<bool(const std::string& job)>& caller_may_see) {
  const std::string path = ClaimPath(output_dir);
  if (!std::filesystem::exists(path)) return absl::OkStatus();
  const absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  const nlohmann::json claim = nlohmann::json::parse(*text, nullptr, false);
  if (!claim.is_object() || !claim.contains("job") ||
      !claim["job"].is_string()) {
    return absl::DataLossError(
        absl::StrCat(path, ": not a job's claim on its output directory"));
  }
  const std::string owner = claim["job"];
  const std::string owner_request = claim.value("request_id", "");
  if (!request_id.empty() && owner_request == request_id) {
    return absl::OkStatus();
  }
  if (job_exists && !job_exists(owner)) return absl::OkStatus();
  if (caller_may_see && !caller_may_see(owner)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "spec.output_dir: ", output_dir,
        " belongs to another tenant's job (each job writes its own "
        "directory; choose another)"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "spec.output_dir: ", output_dir, " belongs to ", owner,
      " (each job writes its own directory; choose another, or `lethe "
      "delete ",
      owner, "` once it has ended to free this one)"));
}

absl::Status WriteOutputClaim(const std::string& output_dir,
                              const std::string& job,
                              const std::string& request_id) {
  std::error_code error;
  std::filesystem::create_directories(output_dir, error);
  if (error) {
    return absl::PermissionDeniedError(absl::StrCat(
        "spec.output_dir: cannot create ", output_dir, ": ", error.message()));
  }
  const nlohmann::json claim = {{"job", job}, {"request_id", request_id}};
  return WriteFileAtomically(ClaimPath(output_dir), claim.dump() + "\n");
}

void ReleaseOutputClaim(const std::string& output_dir, const std::string& job) {
  const std::string path = ClaimPath(output_dir);
  const nlohmann::json claim = nlohmann::json::parse(
      ReadFileToString(path).value_or(""), nullptr, false);
  if (claim.is_object() && claim.value("job", "") == job) {
    std::error_code ignored;
    std::filesystem::remove(path, ignored);
  }
}

}  // namespace lethe
