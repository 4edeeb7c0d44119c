// No Abseil header may be included here (see sentencepiece_adapter.h).
#include "libs/tokenizer/sentencepiece_adapter.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <unordered_map>

namespace lethe::tokenizer_internal {
namespace {

// Feeds an in-memory list of sentences to the trainer.
class VectorSentenceIterator : public sentencepiece::SentenceIterator {
 public:
  explicit VectorSentenceIterator(const std::vector<std::string>& sentences)
      : sentences_(sentences) {}
  bool done() const override { return index_ >= sentences_.size(); }
  void Next() override { ++index_; }
  const std::string& value() const override { return sentences_[index_]; }
  sentencepiece::util::Status status() const override {
    return sentencepiece::util::Status();
  }

 private:
  const std::vector<std::string>& sentences_;
  size_t index_ = 0;
};

std::string Message(const sentencepiece::util::Status& status) {
  return status.ok() ? std::string() : status.ToString();
}

}  // namespace

SentencePieceAdapter::SentencePieceAdapter()
    : processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}

SentencePieceAdapter::~SentencePieceAdapter() = default;

std::string SentencePieceAdapter::LoadFile(const std::string& path) {
  return Message(processor_->Load(path));
}

std::string SentencePieceAdapter::LoadSerialized(
    const std::string& serialized_model) {
  return Message(processor_->LoadFromSerializedProto(serialized_model));
}

std::string SentencePieceAdapter::Encode(const std::string& text,
                                         std::vector<int>* ids) const {
  return Message(processor_->Encode(text, ids));
}

std::string SentencePieceAdapter::Decode(const std::vector<int>& ids,
                                         std::string* text) const {
  return Message(processor_->Decode(ids, text));
}

int SentencePieceAdapter::vocab_size() const {
  return processor_->GetPieceSize();
}
int SentencePieceAdapter::bos_id() const { return processor_->bos_id(); }
int SentencePieceAdapter::eos_id() const { return processor_->eos_id(); }
int SentencePieceAdapter::unk_id() const { return processor_->unk_id(); }
int SentencePieceAdapter::pad_id() const { return processor_->pad_id(); }

std::string TrainSentencePiece(
    const std::vector<std::string>& sentences,
    const std::map<std::string, std::string>& arguments,
    std::string* serialized_model) {
  const std::unordered_map<std::string, std::string> kwargs(arguments.begin(),
                                                            arguments.end());
  VectorSentenceIterator iterator(sentences);
  return Message(sentencepiece::SentencePieceTrainer::Train(kwargs, &iterator,
                                                            serialized_model));
}

}  // namespace lethe::tokenizer_internal
