#include "llmux/file_util.h"

#include <fstream>
#include <sstream>

namespace llmux {

StatusOr<std::string> ReadFileToString(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path.string() + ": cannot open (missing or unreadable)");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return DataLoss(path.string() + ": read failed");
  return ss.str();
}

}  // namespace llmux
