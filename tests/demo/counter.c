/* The demo workload: prints a counter once a second to stdout (a file), with
 * the counter kept in a heap, a global and a stack variable at once. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

long global_count;

int main(void) {
  long *heap_count = calloc(1, sizeof *heap_count);
  long stack_count = 0;
  for (;;) {
    printf("%ld%s\n", global_count,
           (global_count == *heap_count && *heap_count == stack_count) ? "" : " MISMATCH");
    fflush(stdout);
    global_count++, (*heap_count)++, stack_count++;
    struct timespec ts = {1, 0};
    nanosleep(&ts, NULL);
  }
}
