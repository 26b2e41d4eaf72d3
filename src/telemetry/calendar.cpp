// UTC calendar arithmetic (days <-> civil dates, H. Hinnant's algorithms) and the time syntaxes
// the usage API and tools accept. No time zone database: everything is UTC or an explicit
// numeric offset.
#include <cctype>
#include <cstdio>

#include "llmux/usage_ledger.h"

namespace llmux {
namespace {

constexpr int64_t kMsPerDay = 86400000;

struct Civil {
  int64_t y;
  int m;  // 1..12
  int d;  // 1..31
};

int64_t DaysFromCivil(int64_t y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

Civil CivilFromDays(int64_t z) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int d = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  const int m = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  return {yoe + era * 400 + (m <= 2), m, d};
}

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

int DaysInMonth(int64_t y, int m) {
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDays[m - 1];
}

// Reads exactly `n` digits at `*pos`.
bool Digits(std::string_view s, size_t* pos, size_t n, int64_t* out) {
  if (*pos + n > s.size()) return false;
  int64_t v = 0;
  for (size_t i = 0; i < n; ++i) {
    const char c = s[*pos + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *pos += n;
  *out = v;
  return true;
}

bool Expect(std::string_view s, size_t* pos, char c) {
  if (*pos >= s.size() || std::toupper(static_cast<unsigned char>(s[*pos])) != c) return false;
  ++*pos;
  return true;
}

}  // namespace

StatusOr<int64_t> ParseTimeArg(std::string_view text) {
  const Status bad = InvalidArgument("invalid time '" + std::string(text) +
                                     "': use RFC 3339 (2024-05-01T00:00:00Z), a date "
                                     "(2024-05-01) or Unix seconds");
  if (text.empty()) return bad;
  bool all_digits = text.size() <= 12;
  for (char c : text) all_digits = all_digits && c >= '0' && c <= '9';
  if (all_digits) {
    int64_t v = 0;
    for (char c : text) v = v * 10 + (c - '0');
    return v * 1000;
  }
  size_t pos = 0;
  int64_t y, mo, d, h = 0, mi = 0, se = 0, ms = 0;
  if (!Digits(text, &pos, 4, &y) || !Expect(text, &pos, '-') || !Digits(text, &pos, 2, &mo) ||
      !Expect(text, &pos, '-') || !Digits(text, &pos, 2, &d)) {
    return bad;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > DaysInMonth(y, static_cast<int>(mo))) return bad;
  int64_t offset_min = 0;
  if (pos < text.size()) {
    if (!Expect(text, &pos, 'T') || !Digits(text, &pos, 2, &h) || !Expect(text, &pos, ':') ||
        !Digits(text, &pos, 2, &mi) || !Expect(text, &pos, ':') || !Digits(text, &pos, 2, &se)) {
      return bad;
    }
    if (h > 23 || mi > 59 || se > 60) return bad;
    if (pos < text.size() && text[pos] == '.') {
      ++pos;
      size_t n = 0;
      int64_t frac = 0;
      while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) {
        if (n < 3) frac = frac * 10 + (text[pos] - '0');
        ++n;
        ++pos;
      }
      if (n == 0) return bad;
      for (size_t k = n; k < 3; ++k) frac *= 10;
      ms = frac;
    }
    if (pos >= text.size()) return bad;  // RFC 3339 requires an offset
    if (text[pos] == 'Z' || text[pos] == 'z') {
      ++pos;
    } else if (text[pos] == '+' || text[pos] == '-') {
      const int sign = text[pos] == '-' ? -1 : 1;
      ++pos;
      int64_t oh, om;
      if (!Digits(text, &pos, 2, &oh) || !Expect(text, &pos, ':') || !Digits(text, &pos, 2, &om) ||
          oh > 23 || om > 59) {
        return bad;
      }
      offset_min = sign * (oh * 60 + om);
    } else {
      return bad;
    }
    if (pos != text.size()) return bad;
  }
  const int64_t days = DaysFromCivil(y, static_cast<int>(mo), static_cast<int>(d));
  return days * kMsPerDay + ((h * 60 + mi - offset_min) * 60 + se) * 1000 + ms;
}

std::string FormatRfc3339(int64_t unix_ms) {
  const int64_t days = FloorDiv(unix_ms, kMsPerDay);
  const int64_t in_day = unix_ms - days * kMsPerDay;
  const Civil c = CivilFromDays(days);
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%04lld-%02d-%02dT%02lld:%02lld:%02lld.%03lldZ",
                static_cast<long long>(c.y), c.m, c.d, static_cast<long long>(in_day / 3600000),
                static_cast<long long>(in_day / 60000 % 60),
                static_cast<long long>(in_day / 1000 % 60), static_cast<long long>(in_day % 1000));
  return buf;
}

std::string FormatDate(int64_t unix_ms) { return FormatRfc3339(unix_ms).substr(0, 10); }

int64_t StartOfDayMs(int64_t unix_ms) { return FloorDiv(unix_ms, kMsPerDay) * kMsPerDay; }

int64_t StartOfMonthMs(int64_t unix_ms) {
  const Civil c = CivilFromDays(FloorDiv(unix_ms, kMsPerDay));
  return DaysFromCivil(c.y, c.m, 1) * kMsPerDay;
}

int64_t StartOfNextMonthMs(int64_t unix_ms) {
  const Civil c = CivilFromDays(FloorDiv(unix_ms, kMsPerDay));
  return (c.m == 12 ? DaysFromCivil(c.y + 1, 1, 1) : DaysFromCivil(c.y, c.m + 1, 1)) * kMsPerDay;
}

std::string FormatNano(int64_t nano) {
  const bool neg = nano < 0;
  const unsigned long long v =
      neg ? 0ULL - static_cast<unsigned long long>(nano) : static_cast<unsigned long long>(nano);
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%s%llu.%09llu", neg ? "-" : "", v / 1000000000ULL,
                v % 1000000000ULL);
  return buf;
}

}  // namespace llmux
