/* What it costs a core to write cache lines that the other core has just read, and to
   read lines that the other core has just written.

   The W1 epoch's update tasks write weights (SGD) and their transposed copies, lines
   that both cores read in the batch's forward and backward passes.  This probe times
   that pattern alone, in TSC cycles per 64-byte line, on cores 0 and 1:

     phase 1: every thread reads the whole buffer (26 K floats, W1's parameters);
     barrier;
     phase 2 (timed): each thread updates its half, w -= 0.001 * g (or only reads it);
     barrier; 20 000 times.

   And the other way round, the pattern of a batch's passes after the update tasks:
   phase 1: each thread writes its half (w = g), barrier; phase 2 (timed): each thread
   reads the other thread's half (with 1 thread: its own).

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
/* Phase 2 of a measurement: update or read the own half, or read the other's half. */
enum mode { UPDATE, READ_OWN, READ_OTHERS };
static const char *mode_names[] = {"update own half          ", "read own half            ",
                                   "read the half other wrote"};
static int n_threads;
static enum mode mode;
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
    long other = (t + 1) % n_threads;
    long other_lo = other * N_PARAMS / n_threads, other_hi = (other + 1) * N_PARAMS / n_threads;
    float sum = 0;
    long long spent = 0;
    pin((int)t);
    for (int r = 0; r < ROUNDS; r++) {
        if (mode == READ_OTHERS)
            for (long i = lo; i < hi; i++) w[i] = g[i];
        else
            for (long i = 0; i < N_PARAMS; i++) sum += w[i];
        barrier();
        long long start = __rdtsc();
        if (mode == UPDATE)
            for (long i = lo; i < hi; i++) w[i] -= 0.001f * g[i];
        else if (mode == READ_OWN)
            for (long i = lo; i < hi; i++) sum += w[i] * g[i];
        else
            for (long i = other_lo; i < other_hi; i++) sum += w[i] * g[i];
        spent += __rdtsc() - start;
        barrier();
    }
    cycles[t] = spent;
    sink = sum;
    return NULL;
}

static void measure(int threads, enum mode how) {
    pthread_t ids[2];
    n_threads = threads;
    mode = how;
    for (long t = 0; t < threads; t++) pthread_create(&ids[t], NULL, run, (void *)t);
    for (int t = 0; t < threads; t++) pthread_join(ids[t], NULL);
    double lines = (double)N_PARAMS / threads / 16;
    printf("%d thread(s), %s: %6.1f TSC cycles per line\n", threads, mode_names[how],
           (double)cycles[0] / ROUNDS / lines);
}

int main(void) {
    w = aligned_alloc(64, N_PARAMS * sizeof(float));
    g = aligned_alloc(64, N_PARAMS * sizeof(float));
    for (int i = 0; i < N_PARAMS; i++) w[i] = g[i] = 1.0f;
    measure(1, UPDATE);
    measure(2, UPDATE);
    measure(2, READ_OWN);
    measure(1, READ_OTHERS);
    measure(2, READ_OTHERS);
    return 0;
}
