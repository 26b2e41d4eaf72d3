// JSON Schema -> grammar: every supported keyword accepts what it should and rejects what it
// should (whole strings through the matcher), refusals name the keyword, limits hold.
#include <gtest/gtest.h>

#include "grammar_test_util.h"

namespace llmux {
namespace {

using grammar_test::Accepts;
using grammar_test::AcceptsPrefix;
using grammar_test::ByteVocab;
using grammar_test::MustCompile;

Status CompileError(const std::string& schema, GrammarLimits limits = {}) {
  GrammarSpec spec;
  spec.schema = schema;
  auto g = CompileGrammar(spec, ByteVocab(), limits);
  return g.ok() ? Status::Ok() : g.status();
}

TEST(JsonSchemaTest, Primitives) {
  auto s = MustCompile(R"({"type":"string"})");
  EXPECT_TRUE(Accepts(s, R"("")"));
  EXPECT_TRUE(Accepts(s, R"("héllo \"x\" \\ \n \u00e9")"));
  EXPECT_FALSE(Accepts(s, R"("a)"));
  EXPECT_FALSE(Accepts(s, "\"a\nb\""));  // raw control character
  EXPECT_FALSE(Accepts(s, R"("\x")"));
  EXPECT_FALSE(Accepts(s, "\"\xff\""));  // invalid UTF-8
  EXPECT_FALSE(Accepts(s, "\"\xed\xa0\x80\""));  // a surrogate
  auto n = MustCompile(R"({"type":"number"})");
  for (const char* ok : {"0", "-0", "12", "-3.25", "1e5", "1.5E-7", "0.0"}) EXPECT_TRUE(Accepts(n, ok)) << ok;
  for (const char* bad : {"01", "1.", ".5", "+1", "1e", "--1", "NaN"}) EXPECT_FALSE(Accepts(n, bad)) << bad;
  auto i = MustCompile(R"({"type":"integer"})");
  EXPECT_TRUE(Accepts(i, "-42"));
  EXPECT_FALSE(Accepts(i, "4.0"));
  EXPECT_FALSE(Accepts(i, "-0"));
  auto b = MustCompile(R"({"type":"boolean"})");
  EXPECT_TRUE(Accepts(b, "true"));
  EXPECT_TRUE(Accepts(b, "false"));
  EXPECT_FALSE(Accepts(b, "True"));
  auto z = MustCompile(R"({"type":"null"})");
  EXPECT_TRUE(Accepts(z, "null"));
  auto ta = MustCompile(R"({"type":["string","null"]})");
  EXPECT_TRUE(Accepts(ta, "null"));
  EXPECT_TRUE(Accepts(ta, R"("x")"));
  EXPECT_FALSE(Accepts(ta, "1"));
}

TEST(JsonSchemaTest, ObjectPropertiesInSchemaOrder) {
  auto g = MustCompile(
      R"({"type":"object","properties":{"b":{"type":"integer"},"a":{"type":"string"},"c":{"type":"boolean"}},"required":["b","c"]})");
  EXPECT_TRUE(Accepts(g, R"({"b":1,"a":"x","c":true})"));
  EXPECT_TRUE(Accepts(g, R"({"b":1,"c":true})"));                // optional 'a' left out
  EXPECT_TRUE(Accepts(g, R"({"b": 1, "c": false})"));             // one optional space
  EXPECT_FALSE(Accepts(g, R"({"a":"x","b":1,"c":true})"));        // schema order
  EXPECT_FALSE(Accepts(g, R"({"b":1})"));                         // required 'c' missing
  EXPECT_FALSE(Accepts(g, R"({"b":1,"c":true,"d":1})"));          // no additional properties
  EXPECT_FALSE(Accepts(g, R"({ "b":1,"c":true})"));               // no free whitespace
  EXPECT_FALSE(Accepts(g, R"({"b":1,  "c":true})"));
  auto all_optional = MustCompile(R"({"type":"object","properties":{"x":{"type":"integer"},"y":{"type":"integer"}}})");
  EXPECT_TRUE(Accepts(all_optional, "{}"));
  EXPECT_TRUE(Accepts(all_optional, R"({"y":2})"));
  EXPECT_TRUE(Accepts(all_optional, R"({"x":1,"y":2})"));
  EXPECT_FALSE(Accepts(all_optional, R"({,"y":2})"));
  EXPECT_FALSE(Accepts(all_optional, R"({"x":1,})"));
}

TEST(JsonSchemaTest, AdditionalProperties) {
  auto any = MustCompile(R"({"type":"object"})");
  EXPECT_TRUE(Accepts(any, R"({"k":[1,{"z":null}],"q":"s"})"));
  auto extra_true = MustCompile(R"({"type":"object","properties":{"a":{"type":"integer"}},"required":["a"],"additionalProperties":true})");
  EXPECT_TRUE(Accepts(extra_true, R"({"a":1,"zz":[true]})"));
  auto extra_schema = MustCompile(R"({"type":"object","additionalProperties":{"type":"integer"}})");
  EXPECT_TRUE(Accepts(extra_schema, R"({"p":1,"q":2})"));
  EXPECT_FALSE(Accepts(extra_schema, R"({"p":"s"})"));
  auto extra_false = MustCompile(R"({"type":"object","additionalProperties":false})");
  EXPECT_TRUE(Accepts(extra_false, "{}"));
  EXPECT_FALSE(Accepts(extra_false, R"({"a":1})"));
}

TEST(JsonSchemaTest, EnumConstAnyOfOneOf) {
  auto e = MustCompile(R"({"enum":["red","green",3,null,{"a":[1]}]})");
  for (const char* ok : {R"("red")", R"("green")", "3", "null", R"({"a":[1]})"}) EXPECT_TRUE(Accepts(e, ok)) << ok;
  EXPECT_FALSE(Accepts(e, R"("blue")"));
  auto c = MustCompile(R"({"const":"fixed"})");
  EXPECT_TRUE(Accepts(c, R"("fixed")"));
  EXPECT_FALSE(Accepts(c, R"("fixe")"));
  auto a = MustCompile(R"({"anyOf":[{"type":"integer","minimum":10},{"type":"string","maxLength":2}]})");
  EXPECT_TRUE(Accepts(a, "12"));
  EXPECT_TRUE(Accepts(a, R"("ab")"));
  EXPECT_FALSE(Accepts(a, "9"));
  EXPECT_FALSE(Accepts(a, R"("abc")"));
  auto o = MustCompile(R"({"oneOf":[{"type":"boolean"},{"type":"null"}]})");
  EXPECT_TRUE(Accepts(o, "null"));
  auto all = MustCompile(R"({"allOf":[{"type":"boolean"}]})");
  EXPECT_TRUE(Accepts(all, "true"));
}

TEST(JsonSchemaTest, Arrays) {
  auto a = MustCompile(R"({"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":3})");
  EXPECT_FALSE(Accepts(a, "[1]"));
  EXPECT_TRUE(Accepts(a, "[1,2]"));
  EXPECT_TRUE(Accepts(a, "[1, 2, 3]"));
  EXPECT_FALSE(Accepts(a, "[1,2,3,4]"));
  EXPECT_FALSE(Accepts(a, "[1,\"x\"]"));
  auto empty_ok = MustCompile(R"({"type":"array","items":{"type":"string"}})");
  EXPECT_TRUE(Accepts(empty_ok, "[]"));
  EXPECT_TRUE(Accepts(empty_ok, R"(["a","b","c","d"])"));
  EXPECT_FALSE(Accepts(empty_ok, "[,]"));
  auto tuple = MustCompile(R"({"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false})");
  EXPECT_TRUE(Accepts(tuple, R"(["a",1])"));
  EXPECT_FALSE(Accepts(tuple, R"(["a",1,2])"));
  EXPECT_FALSE(Accepts(tuple, R"([1,"a"])"));
  auto any = MustCompile(R"({"type":"array"})");
  EXPECT_TRUE(Accepts(any, R"([1,"a",{"b":[]},null])"));
}

TEST(JsonSchemaTest, RefsAndRecursion) {
  auto g = MustCompile(R"({
    "$defs": {"node": {"type":"object","properties":{"v":{"type":"integer"},
              "kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["v","kids"]}},
    "$ref": "#/$defs/node"})");
  EXPECT_TRUE(Accepts(g, R"({"v":1,"kids":[]})"));
  EXPECT_TRUE(Accepts(g, R"({"v":1,"kids":[{"v":2,"kids":[{"v":3,"kids":[]}]},{"v":4,"kids":[]}]})"));
  EXPECT_FALSE(Accepts(g, R"({"v":1,"kids":[{"v":2}]})"));
  auto root = MustCompile(R"({"type":"object","properties":{"next":{"anyOf":[{"$ref":"#"},{"type":"null"}]}},"required":["next"]})");
  EXPECT_TRUE(Accepts(root, R"({"next":{"next":null}})"));
  auto defs = MustCompile(R"({"definitions":{"x":{"type":"boolean"}},"type":"array","items":{"$ref":"#/definitions/x"}})");
  EXPECT_TRUE(Accepts(defs, "[true,false]"));
}

TEST(JsonSchemaTest, StringLengthPatternFormat) {
  auto len = MustCompile(R"({"type":"string","minLength":2,"maxLength":4})");
  EXPECT_FALSE(Accepts(len, R"("a")"));
  EXPECT_TRUE(Accepts(len, R"("ab")"));
  EXPECT_TRUE(Accepts(len, R"("a\nç")"));  // characters, not bytes
  EXPECT_FALSE(Accepts(len, R"("abcde")"));
  auto p = MustCompile(R"({"type":"string","pattern":"^[A-Z]{2}-\\d{3}(x|yz)?$"})");
  EXPECT_TRUE(Accepts(p, R"("AB-123")"));
  EXPECT_TRUE(Accepts(p, R"("AB-123yz")"));
  EXPECT_FALSE(Accepts(p, R"("AB-12")"));
  EXPECT_FALSE(Accepts(p, R"("ab-123")"));
  auto unanchored = MustCompile(R"({"type":"string","pattern":"ab+"})");
  EXPECT_TRUE(Accepts(unanchored, R"("xxabbby")"));
  EXPECT_FALSE(Accepts(unanchored, R"("xxa")"));
  auto cls = MustCompile(R"({"type":"string","pattern":"^[^a-c\"]+$"})");
  EXPECT_TRUE(Accepts(cls, R"("xyz")"));
  EXPECT_FALSE(Accepts(cls, R"("xaz")"));
  EXPECT_FALSE(Accepts(cls, R"("x\"")"));
  auto date = MustCompile(R"({"type":"string","format":"date"})");
  EXPECT_TRUE(Accepts(date, R"("2024-02-29")"));
  EXPECT_FALSE(Accepts(date, R"("2024-13-01")"));
  auto dt = MustCompile(R"({"type":"string","format":"date-time"})");
  EXPECT_TRUE(Accepts(dt, R"("2024-02-29T23:59:60.5+05:30")"));
  EXPECT_TRUE(Accepts(dt, R"("2024-02-29T00:00:00Z")"));
  EXPECT_FALSE(Accepts(dt, R"("2024-02-29 00:00:00Z")"));
  auto time = MustCompile(R"({"type":"string","format":"time"})");
  EXPECT_TRUE(Accepts(time, R"("12:30:00Z")"));
  auto uuid = MustCompile(R"({"type":"string","format":"uuid"})");
  EXPECT_TRUE(Accepts(uuid, R"("123e4567-e89b-12d3-a456-426614174000")"));
  EXPECT_FALSE(Accepts(uuid, R"("123e4567-e89b-12d3-a456-42661417400")"));
  auto email = MustCompile(R"({"type":"string","format":"email"})");
  EXPECT_TRUE(Accepts(email, R"("a.b+c@example.co.uk")"));
  EXPECT_FALSE(Accepts(email, R"("a@b")"));
  EXPECT_FALSE(Accepts(email, R"("@b.com")"));
}

TEST(JsonSchemaTest, IntegerBoundsAreExact) {
  struct Case {
    const char* schema;
    int64_t lo, hi;
  } cases[] = {
      {R"({"type":"integer","minimum":-37,"maximum":1234})", -37, 1234},
      {R"({"type":"integer","minimum":7,"maximum":7})", 7, 7},
      {R"({"type":"integer","exclusiveMinimum":-5,"exclusiveMaximum":99})", -4, 98},
      {R"({"type":"integer","minimum":-1000,"maximum":-10})", -1000, -10},
      {R"({"type":"integer","minimum":0.5,"maximum":20.9})", 1, 20},
  };
  for (const Case& c : cases) {
    auto g = MustCompile(c.schema);
    for (int64_t v = -1100; v <= 1300; ++v) {
      EXPECT_EQ(Accepts(g, std::to_string(v)), v >= c.lo && v <= c.hi) << c.schema << " value " << v;
    }
  }
  auto lower_only = MustCompile(R"({"type":"integer","minimum":95})");
  EXPECT_FALSE(Accepts(lower_only, "94"));
  EXPECT_TRUE(Accepts(lower_only, "95"));
  EXPECT_TRUE(Accepts(lower_only, "100000000000"));
  auto upper_only = MustCompile(R"({"type":"integer","maximum":-3})");
  EXPECT_TRUE(Accepts(upper_only, "-3"));
  EXPECT_TRUE(Accepts(upper_only, "-123456789"));
  EXPECT_FALSE(Accepts(upper_only, "-2"));
  EXPECT_FALSE(Accepts(upper_only, "0"));
}

TEST(JsonSchemaTest, NumberBounds) {
  auto g = MustCompile(R"({"type":"number","minimum":-2,"maximum":3})");
  for (const char* ok : {"-2", "-2.0", "-1.999", "0", "0.5", "2.75", "3", "3.000", "-0.5"}) {
    EXPECT_TRUE(Accepts(g, ok)) << ok;
  }
  for (const char* bad : {"-2.01", "3.01", "4", "-3", "1e2", "10"}) EXPECT_FALSE(Accepts(g, bad)) << bad;
  EXPECT_NE(CompileError(R"({"type":"number","minimum":0.5})").message().find("'minimum'"), std::string::npos);
  EXPECT_NE(CompileError(R"({"type":"number","exclusiveMinimum":0})").message().find("'exclusiveMinimum'"),
            std::string::npos);
}

TEST(JsonSchemaTest, RefusalsNameTheKeyword) {
  struct Case {
    const char* schema;
    const char* needle;
  } cases[] = {
      {R"({"type":"object","patternProperties":{"^a":{}}})", "'patternProperties' at #"},
      {R"({"type":"object","properties":{"a":{"type":"string","contentEncoding":"base64"}}})",
       "'contentEncoding' at #/properties/a"},
      {R"({"type":"array","uniqueItems":true})", "'uniqueItems'"},
      {R"({"type":"number","multipleOf":3})", "'multipleOf'"},
      {R"({"not":{"type":"string"}})", "'not'"},
      {R"({"if":{},"then":{}})", "'if'"},
      {R"({"type":"string","format":"hostname"})", "'format' 'hostname'"},
      {R"({"type":"string","pattern":"(?=a)b"})", "pattern: lookaround"},
      {R"({"type":"string","pattern":"(a)\\1"})", "unsupported escape"},
      {R"({"$ref":"http://example.com/s.json"})", "'$ref'"},
      {R"({"$ref":"#/$defs/missing"})", "does not resolve"},
      {R"({"type":"integer","minimum":5,"maximum":4})", "minimum 5 is above maximum 4"},
      {R"({"type":"object","properties":{},"required":["x"]})", "required property 'x'"},
      {R"({"enum":[]})", "'enum'"},
      {R"({"type":"frob"})", "unknown 'type' 'frob'"},
      {R"({"allOf":[{"type":"string"},{"minLength":1}]})", "'allOf'"},
      {R"({"$defs":{"a":{"anyOf":[{"$ref":"#/$defs/a"},{"type":"null"}]}},"$ref":"#/$defs/a"})",
       "without consuming"},
      {R"({"type":"array","items":false,"minItems":1})", "'minItems'"},
      {"{not json", "not valid JSON"},
  };
  for (const Case& c : cases) {
    Status s = CompileError(c.schema);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.schema;
    EXPECT_NE(s.message().find(c.needle), std::string::npos) << c.schema << " -> " << s.message();
  }
}

TEST(JsonSchemaTest, Limits) {
  GrammarLimits small;
  small.max_schema_bytes = 64;
  EXPECT_NE(CompileError(R"({"type":"object","properties":{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa":{}}})", small)
                .message()
                .find("above the limit of 64"),
            std::string::npos);
  std::string deep = R"({"type":"string"})";
  for (int i = 0; i < 80; ++i) deep = R"({"type":"array","items":)" + deep + "}";
  EXPECT_NE(CompileError(deep).message().find("deeper than 64"), std::string::npos);
  EXPECT_NE(CompileError(R"({"type":"string","maxLength":100000})").message().find("'maxLength' 100000"),
            std::string::npos);
  GrammarLimits few_states;
  few_states.max_states = 500;
  EXPECT_NE(CompileError(R"({"type":"string","maxLength":400})", few_states).message().find("grammar states"),
            std::string::npos);
}

TEST(JsonSchemaTest, JsonObjectAndPrefixSuffix) {
  GrammarSpec spec;
  spec.kind = GrammarSpec::Kind::kJsonObject;
  auto g = CompileGrammar(spec, ByteVocab());
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(Accepts(*g, R"({"a":{"b":[1,2.5,-3e2,"x",true,false,null]}})"));
  EXPECT_FALSE(Accepts(*g, "[1]"));
  EXPECT_FALSE(Accepts(*g, R"("s")"));

  auto tools = ToolCallGrammarSpec({{"get_weather", R"({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]})"},
                                    {"noop", ""}},
                                   "<tool_call>", "</tool_call>");
  ASSERT_TRUE(tools.ok());
  auto t = CompileGrammar(*tools, ByteVocab());
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_TRUE(Accepts(*t, R"(<tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call>)"));
  EXPECT_TRUE(Accepts(*t, R"(<tool_call>{"name":"noop","arguments":{}}</tool_call>)"));
  EXPECT_FALSE(Accepts(*t, R"(<tool_call>{"name":"get_weather","arguments":{}}</tool_call>)"));
  EXPECT_FALSE(Accepts(*t, R"({"name":"noop","arguments":{}})"));
  EXPECT_TRUE(AcceptsPrefix(*t, "<tool_call>{\"name\":\"get_"));
}

}  // namespace
}  // namespace llmux
