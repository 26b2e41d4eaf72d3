// A compiled Jinja template (the engine behind ChatTemplate): lexed, parsed and checked
// once; rendered any number of times, from any thread.
#pragma once

#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "llmux/status.h"
#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/value.h"

namespace llmux::jinja {

class Template {
 public:
  // InvalidArgument with line and column on a syntax error or an unsupported construct.
  static StatusOr<std::unique_ptr<Template>> Parse(std::string source);

  // Renders with `variables` as globals (in order). `local_time` backs strftime_now().
  // InvalidArgument with the message of raise_exception, or the position and reason of
  // another runtime error. Const and thread-safe.
  StatusOr<std::string> Render(const std::vector<std::pair<std::string, Value>>& variables,
                               const std::function<std::tm()>& local_time) const;

  const std::string& source() const { return source_; }

 private:
  Template(std::string source, std::vector<StmtPtr> program)
      : source_(std::move(source)), program_(std::move(program)) {}

  std::string source_;
  std::vector<StmtPtr> program_;
};

}  // namespace llmux::jinja
