/* Stream a greedy completion of a prompt through the edgeinfer C API.
 *
 *   generate MODEL.gguf ["PROMPT"] [MAX_TOKENS]
 *
 * Prints the prompt and the completion to stdout, the speed to stderr; exits 1 with
 * ei_last_error() on any error. Built and run by scripts/test-capi.sh. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "edgeinfer.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Called with each piece of text (complete UTF-8 characters, NUL-terminated). */
static int print_piece(const char *piece, void *user_data) {
    size_t *bytes = user_data;
    for (const char *p = piece; *p; p++) {
        (*bytes)++;
    }
    fputs(piece, stdout);
    fflush(stdout);
    return 0; /* nonzero would stop the generation */
}

static int fail(const char *what) {
    fprintf(stderr, "\n%s: %s\n", what, ei_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [PROMPT] [MAX_TOKENS]\n", argv[0]);
        return 2;
    }
    const char *prompt = argc > 2 ? argv[2] : "The capital of France is";
    EiGenerateParams gp = ei_generate_params_default();
    gp.temperature = 0.0f; /* greedy */
    gp.max_tokens = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 10) : 32;

    EiModel *model = NULL;
    if (ei_model_load(argv[1], ei_model_params_default(), &model) != EI_OK) {
        return fail("loading the model");
    }
    EiSessionParams sp = ei_session_params_default();
    sp.n_ctx = 512;
    EiSession *session = NULL;
    if (ei_session_new(model, sp, &session) != EI_OK) {
        ei_model_free(model);
        return fail("creating a session");
    }

    fputs(prompt, stdout);
    size_t bytes = 0;
    uint32_t n = 0;
    double t0 = now();
    int rc = ei_generate(session, prompt, gp, print_piece, &bytes, &n);
    double dt = now() - t0;
    putchar('\n');
    if (rc != EI_OK) {
        ei_session_free(session);
        ei_model_free(model);
        return fail("generating");
    }
    fprintf(stderr, "[edgeinfer %s: %u tokens (%zu bytes) in %.3f s, %.1f tokens/s incl. prompt]\n",
            ei_version(), n, bytes, dt, dt > 0 ? n / dt : 0.0);
    ei_session_free(session);
    ei_model_free(model);
    return n > 0 && bytes > 0 ? 0 : 1;
}
