#include <algorithm>

#include "llmux/admission.h"

namespace llmux {

AdmittedCall::AdmittedCall(Admission* admission, AdmissionTicket ticket)
    : admission_(admission),
      ticket_(std::move(ticket)),
      left_(static_cast<size_t>(std::max(0, ticket_.request.num_choices))) {}

void AdmittedCall::ChoiceLeftQueue(size_t i) {
  if (i >= left_.size() || left_[i].exchange(true)) return;
  admission_->LeaveQueue(ticket_, 1);
}

void AdmittedCall::NeverSubmitted(size_t first) {
  int count = 0;
  for (size_t i = first; i < left_.size(); ++i) {
    if (!left_[i].exchange(true)) ++count;
  }
  if (count > 0) admission_->LeaveQueue(ticket_, count);
}

void AdmittedCall::Finish(const AdmissionUsage& usage) {
  if (finished_.exchange(true)) return;
  admission_->Finish(ticket_, usage);
}

}  // namespace llmux
