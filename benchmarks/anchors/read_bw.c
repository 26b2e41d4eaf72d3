// STREAM-like read-bandwidth probe: T threads each sum their share of one large float buffer
// (default 1 GiB, far above the L3), best of N passes. Decode is weight-read bound, so its
// GB/s is reported as a percentage of this figure. Built by benchmarks/anchors/run.py:
//   cc -O3 -march=native -fopenmp read_bw.c -o read_bw && ./read_bw THREADS [MIB] [PASSES]
// Prints one line: "read_bw threads=T mib=M best_gbps=X median_gbps=Y".
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double Now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int Cmp(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 2;
  const size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 1024;
  const int passes = argc > 3 ? atoi(argv[3]) : 15;
  if (threads < 1 || mib < 1 || passes < 1 || passes > 1000) {
    fprintf(stderr, "usage: read_bw THREADS [MIB] [PASSES]\n");
    return 2;
  }
  const size_t n = mib * 1024 * 1024 / sizeof(float);
  float* a = aligned_alloc(64, n * sizeof(float));
  if (!a) {
    fprintf(stderr, "read_bw: cannot allocate %zu MiB\n", mib);
    return 1;
  }
  omp_set_num_threads(threads);
  // First touch by the threads that read it (pages on their node), values that do not cancel.
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) a[i] = (float)(i & 1023) * 1e-3f;
  double gbps[1000];
  double sink = 0;
  for (int p = 0; p < passes; ++p) {
    const double t0 = Now();
    uint32_t total = 0;
    // The words are summed as integers: integer addition is associative, so -O3 -march=native
    // vectorises the loop to full-width loads without -ffast-math (a float sum would be bound
    // by the add latency, not by memory); the reduction keeps the loop from being optimised
    // away.
    const uint32_t* w = (const uint32_t*)a;
#pragma omp parallel for schedule(static) reduction(+ : total)
    for (size_t i = 0; i < n; ++i) total += w[i];
    const double dt = Now() - t0;
    sink += total;
    gbps[p] = (double)(n * sizeof(float)) / dt / 1e9;
  }
  qsort(gbps, (size_t)passes, sizeof(double), Cmp);
  printf("read_bw threads=%d mib=%zu best_gbps=%.2f median_gbps=%.2f (checksum %llu)\n", threads,
         mib, gbps[passes - 1], gbps[passes / 2], (unsigned long long)sink);
  free(a);
  return 0;
}
