/* What it costs a core to write cache lines that the other core has just read.

   The W1 epoch's update tasks write weights (SGD) and their transposed copies, lines
   that both cores read in the batch's forward and backward passes.  This probe times
   that pattern alone, in TSC cycles per 64-byte line, on cores 0 and 1:

     phase 1: every thread reads the whole buffer (26 K floats, W1's parameters);
     barrier;
     phase 2 (timed): each thread updates its half, w -= 0.001 * g (or only reads it);
     barrier; 20 000 times.

   With 1 thread phase 2 runs on lines held by no other core.  Build and run:

     gcc -O3 -ffast-math -march=native -pthread -o /tmp/coherence_probe \
         scripts/coherence_probe.c && /tmp/coherence_probe

   Results are in docs/benchmarks.md (Engine II, fifteenth session).  Nothing in the
   package or the tests uses this file.
*/
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <x86intrin.h>

#define N_PARAMS (26 * 1024)
#define ROUNDS 20000

static float *w, *g;
static int n_threads, write_half;
static long long cycles[2];
static volatile float sink;
static _Alignas(64) atomic_int arrived;
static _Alignas(64) atomic_int generation;

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void barrier(void) {
    int seen = atomic_load(&generation);
    if (atomic_fetch_add(&arrived, 1) == n_threads - 1) {
        atomic_store(&arrived, 0);
        atomic_fetch_add(&generation, 1);
    } else {
        while (atomic_load(&generation) == seen) {}
    }
}

static void *run(void *arg) {
    long t = (long)arg, lo = t * N_PARAMS / n_threads, hi = (t + 1) * N_PARAMS / n_threads;
    float sum = 0;
    long long spent = 0;
    pin((int)t);
    for (int r = 0; r < ROUNDS; r++) {
        for (long i = 0; i < N_PARAMS; i++) sum += w[i];
        barrier();
        long long start = __rdtsc();
        if (write_half)
            for (long i = lo; i < hi; i++) w[i] -= 0.001f * g[i];
        else
            for (long i = lo; i < hi; i++) sum += w[i] * g[i];
        spent += __rdtsc() - start;
        barrier();
    }
    cycles[t] = spent;
    sink = sum;
    return NULL;
}

static void measure(int threads, int write) {
    pthread_t ids[2];
    n_threads = threads;
    write_half = write;
    for (long t = 0; t < threads; t++) pthread_create(&ids[t], NULL, run, (void *)t);
    for (int t = 0; t < threads; t++) pthread_join(ids[t], NULL);
    double lines = (double)N_PARAMS / threads / 16;
    printf("%d thread(s), %s own half: %6.1f TSC cycles per line\n", threads,
           write ? "update" : "read  ", (double)cycles[0] / ROUNDS / lines);
}

int main(void) {
    w = aligned_alloc(64, N_PARAMS * sizeof(float));
    g = aligned_alloc(64, N_PARAMS * sizeof(float));
    for (int i = 0; i < N_PARAMS; i++) w[i] = g[i] = 1.0f;
    measure(1, 1);
    measure(2, 1);
    measure(2, 0);
    return 0;
}
