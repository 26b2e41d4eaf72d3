#include "tokenizer/jinja/template.h"

#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/jinja/lexer.h"
#include "tokenizer/jinja/parser.h"

namespace llmux::jinja {

StatusOr<std::unique_ptr<Template>> Template::Parse(std::string source) {
  LLMUX_ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenize(source));
  LLMUX_ASSIGN_OR_RETURN(std::vector<StmtPtr> program, jinja::Parse(source, tokens));
  LLMUX_RETURN_IF_ERROR(CheckSupported(source, program));
  return std::unique_ptr<Template>(new Template(std::move(source), std::move(program)));
}

StatusOr<std::string> Template::Render(const std::vector<std::pair<std::string, Value>>& variables,
                                       const std::function<std::tm()>& local_time) const {
  Interpreter interp(source_, local_time);
  Environment globals(nullptr);
  interp.InstallGlobals(globals);
  for (const auto& [name, value] : variables) globals.Set(name, value);
  return interp.Render(program_, globals);
}

}  // namespace llmux::jinja
