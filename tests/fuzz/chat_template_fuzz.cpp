// Chat-template compilation and rendering. Input: "TEMPLATE\0ROLE\0CONTENT\0ROLE\0CONTENT...";
// byte 0 of TEMPLATE, when it is 0x01..0x04, picks a built-in template instead and the rest
// of the input is the messages. Invariants: no crash, no exception escapes, errors are
// Status values (a template may fail to compile or raise an exception while rendering).
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "llmux/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace llmux;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  ChatTemplateContext ctx;
  ctx.bos_token = "<s>";
  ctx.eos_token = "</s>";
  ctx.local_time = [] {
    std::tm t{};
    t.tm_year = 124;
    t.tm_mday = 1;
    return t;
  };
  StatusOr<std::unique_ptr<ChatTemplate>> tmpl = InvalidArgument("none");
  if (!in.empty() && in[0] >= 1 && in[0] <= 4) {
    static const std::vector<std::string> names = ChatTemplate::BuiltinNames();
    if (names.empty()) return 0;
    tmpl = ChatTemplate::Builtin(names[static_cast<size_t>(in[0] - 1) % names.size()], ctx);
    in.remove_prefix(1);
  } else {
    auto [source, rest] = fuzz::SplitAtNul(in);
    tmpl = ChatTemplate::Create(std::string(source), ctx);
    in = rest;
  }
  if (!tmpl.ok()) return 0;
  std::vector<ChatMessage> messages;
  while (!in.empty() && messages.size() < 16) {
    auto [role, r1] = fuzz::SplitAtNul(in);
    auto [content, r2] = fuzz::SplitAtNul(r1);
    messages.push_back(ChatMessage{std::string(role), std::string(content)});
    in = r2;
  }
  for (bool gen : {false, true}) (void)(*tmpl)->Render(messages, gen);
  return 0;
}
