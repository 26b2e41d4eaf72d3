// Unit tests of the Jinja-subset engine with exact expected strings (the behaviour of
// @huggingface/jinja; chat_template_golden_test.cpp checks the same against the live oracle).
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja/template.h"
#include "tokenizer/jinja/value.h"

namespace llmux::jinja {
namespace {

std::tm FixedTime() {
  std::tm t{};
  t.tm_year = 2024 - 1900;
  t.tm_mon = 6;  // July
  t.tm_mday = 4;
  t.tm_hour = 9;
  t.tm_min = 5;
  return t;
}

Value Message(const std::string& role, const std::string& content) {
  Dict d;
  d.Set("role", Value::Str(role));
  d.Set("content", Value::Str(content));
  return Value::MakeDict(std::move(d));
}

StatusOr<std::string> Render(const std::string& source) {
  LLMUX_ASSIGN_OR_RETURN(auto tmpl, Template::Parse(source));
  std::vector<std::pair<std::string, Value>> vars = {
      {"messages", Value::List({Message("system", "Sys"), Message("user", " Hi ")})},
      {"bos_token", Value::Str("<s>")},
      {"add_generation_prompt", Value::Bool(true)}};
  return tmpl->Render(vars, FixedTime);
}

std::string Ok(const std::string& source) {
  auto r = Render(source);
  EXPECT_TRUE(r.ok()) << source << " -> " << r.status().ToString();
  return r.ok() ? *r : "<error>";
}

TEST(JinjaEngineTest, TextAndOutput) {
  EXPECT_EQ(Ok("plain text"), "plain text");
  EXPECT_EQ(Ok("{{ bos_token }}x{{ 1 + 2 }}"), "<s>x3");
  EXPECT_EQ(Ok("a\n"), "a");  // one trailing newline is dropped, as Jinja does
}

TEST(JinjaEngineTest, WhitespaceControlAndBlockTrimming) {
  EXPECT_EQ(Ok("a  {%- if true -%}  b  {%- endif -%}  c"), "abc");
  EXPECT_EQ(Ok("x\n  {% if true %}\n  y\n  {% endif %}\nz"), "x\n  y\nz");
  EXPECT_EQ(Ok("  {{ 'k' }}\n"), "  k");  // lstrip_blocks leaves {{ }} alone
  EXPECT_EQ(Ok("a {# note #} b {#- tight -#} c"), "a  bc");
}

TEST(JinjaEngineTest, LoopsAndLoopVariables) {
  EXPECT_EQ(Ok("{% for m in messages %}{{ loop.index }}/{{ loop.length }}{{ loop.first }}"
               "{{ loop.last }}{{ loop.revindex }};{% endfor %}"),
            "1/2truefalse2;2/2falsetrue1;");
  EXPECT_EQ(Ok("{% for x in [] %}x{% else %}none{% endfor %}"), "none");
  EXPECT_EQ(Ok("{% for m in messages if m.role == 'user' %}{{ m.content }}{% endfor %}"), " Hi ");
  EXPECT_EQ(Ok("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}{{ v }}{% endfor %}"), "a1b2");
  EXPECT_EQ(Ok("{% for i in range(6) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 4 %}"
               "{% break %}{% endif %}{{ i }}{% endfor %}"),
            "023");
}

TEST(JinjaEngineTest, SetNamespaceAndScoping) {
  EXPECT_EQ(Ok("{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
               "{% endfor %}{{ ns.n }}"),
            "2");
  EXPECT_EQ(Ok("{% set x = 1 %}{% for i in [1] %}{% set x = 5 %}{% endfor %}{{ x }}"), "1");
  EXPECT_EQ(Ok("{% set a, b = ['p', 'q'] %}{{ b }}{{ a }}"), "qp");
  EXPECT_EQ(Ok("{% set blk %}[{{ bos_token }}]{% endset %}{{ blk }}{{ blk }}"), "[<s>][<s>]");
}

TEST(JinjaEngineTest, ExpressionsAndValues) {
  EXPECT_EQ(Ok("{{ none }}|{{ true }}|{{ 1.0 }}|{{ 7 // 2 }}|{{ 7 / 2 }}|{{ -7 % 3 }}"),
            "|true|1.0|3|3.5|-1");
  EXPECT_EQ(Ok("{{ [1, 'a', none] }}|{{ {'k': 'v'} }}"), "[1, \"a\", null]|{\"k\": \"v\"}");
  EXPECT_EQ(Ok("{{ 'a' ~ 1 ~ 2.0 }}|{{ 'x' + 'y' }}|{{ 'y' if false else 'n' }}"), "a12|xy|n");
  EXPECT_EQ(Ok("{{ 'hello'[::-1] }}|{{ messages[1:]|length }}|{{ messages[-1].role }}"),
            "olleh|1|user");
  EXPECT_EQ(Ok("{{ 'a' in 'cat' }}{{ 'z' not in ['z'] }}{{ 'k' in {'k': 1} }}"), "truefalsetrue");
  EXPECT_EQ(Ok("{{ x is defined }}{{ none is none }}{{ 'a' is string }}{{ {} is mapping }}"),
            "falsetruetruetrue");
  EXPECT_EQ(Ok("[{{ missing }}][{{ missing.attr }}][{{ messages[7] }}]"), "[][][]");
}

TEST(JinjaEngineTest, FiltersAndMethods) {
  EXPECT_EQ(Ok("{{ messages[1].content|trim }}|{{ 'ab'|upper }}|{{ 'a b-c'|title }}|"
               "{{ 'hELLO'|capitalize }}|{{ ['a', 'b']|join(', ') }}|{{ [3, 1, 2]|sort|first }}"),
            "Hi|AB|A B-C|HELLO|a, b|1");
  EXPECT_EQ(Ok("{{ missing|default('d') }}|{{ ''|default('e', true) }}|{{ '42x'|int + 1 }}"),
            "d|e|43");
  EXPECT_EQ(Ok("{{ {'a': [1, 2]}|tojson }}|{{ {'a': [1]}|tojson(indent=2) }}"),
            "{\"a\": [1, 2]}|{\n  \"a\": [\n    1\n  ]\n}");
  EXPECT_EQ(Ok("{{ ' x '.strip() }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'abc'.startswith('ab') }}|"
               "{{ 'aXa'.replace('a', 'b') }}|{{ {'k': 1}.get('z', 'zz') }}"),
            "x|[\"a\", \"b,c\"]|true|bXb|zz");
  EXPECT_EQ(Ok("{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|"
               "join }}"),
            " Hi ");
}

// Extensions over the reference (which rejects these filters when they run): Python Jinja's
// select/reject/count, so that templates carrying them in rarely taken branches (Llama 3.1's
// builtin_tools) load.
TEST(JinjaEngineTest, SelectRejectCountExtensions) {
  EXPECT_EQ(Ok("{{ [0, 1, 2, 'a', none]|select|list }}|{{ [1, 2, 3]|reject('odd')|list }}|"
               "{{ ['x', 'y']|reject('equalto', 'x')|list }}|{{ messages|count }}"),
            "[1, 2, \"a\"]|[2]|[\"y\"]|2");
}

TEST(JinjaEngineTest, MacrosAndFilterBlocks) {
  EXPECT_EQ(Ok("{% macro tag(name, end='>') %}<{{ name }}{{ end }}{% endmacro %}"
               "{{ tag('a') }}{{ tag('b', end='/>') }}"),
            "<a><b/>");
  EXPECT_EQ(Ok("{% filter upper %}shout {{ bos_token }}{% endfilter %}"), "SHOUT <S>");
}

TEST(JinjaEngineTest, RecursiveMacroIsBounded) {
  EXPECT_EQ(Ok("{% macro count(n) %}{{ n }}{% if n > 0 %}{{ count(n - 1) }}{% endif %}"
               "{% endmacro %}{{ count(3) }}"),
            "3210");
  auto r = Render("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "chat template error at line 1, column 19: macro calls nested deeper than 100");
}

TEST(JinjaEngineTest, StrftimeNowUsesInjectedClock) {
  EXPECT_EQ(Ok("{{ strftime_now('%d %b %Y %H:%M') }}|{{ strftime_now('%B %m %%d %j') }}"),
            "04 Jul 2024 09:05|July 07 %d %j");
}

TEST(JinjaEngineTest, RaiseExceptionGivesItsMessage) {
  auto r = Render(
      "{% if messages[0].role == 'system' %}{{ raise_exception('System role not "
      "supported') }}{% endif %}");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "System role not supported");
}

TEST(JinjaEngineTest, RuntimeErrorsNamePosition) {
  auto r = Render("ok\n{{ 1 + missing }}");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            "chat template error at line 2, column 6: cannot perform operation + on undefined "
            "values");
  auto loop = Render("{% for x in missing %}{% endfor %}");
  ASSERT_FALSE(loop.ok());
  EXPECT_EQ(loop.status().message(),
            "chat template error at line 1, column 13: expected iterable or object type in for "
            "loop: got UndefinedValue");
}

TEST(JinjaEngineTest, ParseErrorsNamePosition) {
  auto unclosed = Template::Parse("a\n  {% if x %}b");
  ASSERT_FALSE(unclosed.ok());
  EXPECT_EQ(unclosed.status().message(),
            "chat template syntax error at line 2, column 3: {% if %} is never closed (missing "
            "{% endif %})");
  auto bad_char = Template::Parse("{{ 1 $ 2 }}");
  ASSERT_FALSE(bad_char.ok());
  EXPECT_EQ(bad_char.status().message(),
            "chat template syntax error at line 1, column 6: unexpected character '$'");
  auto stray = Template::Parse("x{% endfor %}");
  ASSERT_FALSE(stray.ok());
  EXPECT_EQ(stray.status().message(),
            "chat template syntax error at line 1, column 5: unexpected {% endfor %}");
}

TEST(JinjaEngineTest, UnsupportedConstructsFailAtParse) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{% include 'x.jinja' %}",
       "chat template uses an unsupported construct at line 1, column 4: {% include %} is not "
       "supported by llmux's Jinja subset"},
      {"text\n{% extends 'base' %}",
       "chat template uses an unsupported construct at line 2, column 4: {% extends %} is not "
       "supported by llmux's Jinja subset"},
      {"{% macro m() %}{{ caller() }}{% endmacro %}{% call m() %}x{% endcall %}",
       "chat template uses an unsupported construct at line 1, column 47: {% call %} is not "
       "supported by llmux's Jinja subset"},
      {"{% macro m() %}{{ caller() }}{% endmacro %}{{ m() }}",
       "chat template uses an unsupported construct at line 1, column 19: function 'caller()' "
       "is not supported"},
      {"{{ messages|batch(2) }}",
       "chat template uses an unsupported construct at line 1, column 13: filter 'batch' is "
       "not supported"},
      {"{{ x is divisibleby }}",
       "chat template uses an unsupported construct at line 1, column 6: test 'is divisibleby' "
       "is not supported"},
      {"{% for m in messages %}{{ loop.cycle('a', 'b') }}{% endfor %}",
       "chat template uses an unsupported construct at line 1, column 31: method '.cycle()' is "
       "not supported"},
      {"{{ lipsum() }}",
       "chat template uses an unsupported construct at line 1, column 4: function 'lipsum()' "
       "is not supported"},
  };
  for (const auto& [source, message] : cases) {
    auto t = Template::Parse(source);
    ASSERT_FALSE(t.ok()) << source;
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(t.status().message(), message) << source;
  }
}

// Every prefix of a template exercising most of the grammar either parses or fails with
// InvalidArgument (never crashes); the full text renders. Run under ASan in CI.
TEST(JinjaEngineTest, EveryPrefixParsesOrFailsCleanly) {
  const std::string source =
      "{%- set ns = namespace(a=[1, 2.5, 'x'], d={'k': {'n': none}}) -%}\n"
      "{# comment #}{% for m in messages[::-1] if m.role is not none %}"
      "{{- m['content']|trim|replace('a', \"b\") ~ (loop.index0 // 2) -}}"
      "{% if not loop.last and 'x' in ns.a %}, {% elif m.role == 'user' %}u{% else %}"
      "{% set ns.a = ns.a + [-1] %}{% endif %}{% else %}{{ raise_exception('none') }}"
      "{% endfor %}{% macro f(a, b=2) %}{{ a * b }}{% endmacro %}{{ f(3) }}"
      "{{ {'t': (1, 2)}['t'][0] if ns.d.k.n is none else 'z' }}{{ '\\u00e9\\n' }}";
  ASSERT_EQ(Ok(source), "Hi0, Sys061é\n");  // as @huggingface/jinja renders it
  for (size_t n = 0; n < source.size(); ++n) {
    auto t = Template::Parse(source.substr(0, n));
    if (!t.ok()) {
      EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument) << n;
    }
  }
}

TEST(JinjaValueTest, JsNumberFormatting) {
  EXPECT_EQ(JsNumberToString(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(JsNumberToString(1e21), "1e+21");
  EXPECT_EQ(JsNumberToString(1e-7), "1e-7");
  EXPECT_EQ(JsNumberToString(123456.5), "123456.5");
  EXPECT_EQ(JsNumberToString(-0.000001), "-0.000001");
  EXPECT_EQ(JsNumberToString(100), "100");
}

TEST(JinjaValueTest, JsonQuoting) {
  EXPECT_EQ(JsonQuote("a\"b\\c\n\x01é", false), "\"a\\\"b\\\\c\\n\\u0001é\"");
  EXPECT_EQ(JsonQuote("é🚀", true), "\"\\u00e9\\ud83d\\ude80\"");
}

}  // namespace
}  // namespace llmux::jinja
