// llmux-bench sweep (sweep.cpp): the subcommand's entry point.
#pragma once

namespace llmux::bench {

// argv[0] is "sweep". Returns the process exit status (2 = usage).
int SweepMain(int argc, char** argv);

}  // namespace llmux::bench
