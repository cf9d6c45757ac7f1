/* What the fuzz harnesses share: the libFuzzer entry point each defines, and the verdict a
 * harness reports so that the corpus replay (replay.c) can hold a regression input to the
 * outcome its file name promises: "accept-*" must be taken, "reject-*" refused. */
#ifndef FUZZ_FUZZ_H
#define FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

enum fuzz_verdict {
    FUZZ_NONE = 0,     /* the harness said nothing about this input */
    FUZZ_ACCEPTED = 1, /* the parser under test took the whole input */
    FUZZ_REFUSED = 2,  /* the parser (or a guard in front of it) refused it */
};

/* Set by a harness for each input (reset to FUZZ_NONE by the replay before each call). */
extern enum fuzz_verdict fuzz_verdict;

/* An invariant of the code under test is broken: prints what and aborts, so libFuzzer
 * keeps the input as a crash and the replay fails. */
#define FUZZ_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__FILE__, __LINE__, #cond);                                                  \
    } while (0)
void fuzz_fail(const char *file, int line, const char *what) __attribute__((noreturn));

#endif
